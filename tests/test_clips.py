"""Clip sampling: determinism, splits, frame steps, mixtures, padding, dataset statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivideogpt.data import (
    AugmentConfig,
    ClipDataset,
    EpisodeDataset,
    EpisodeWriter,
    MixtureSource,
    dataset_stats,
)
from ivideogpt.errors import DataError
from ivideogpt.frames import to_model


def make(path, n=10, lengths=(8, 12, 20), action_dim=2, size=16, seed=0, val_fraction=0.2):
    rng = np.random.default_rng(seed)
    eps = []
    with EpisodeWriter(path, image_size=(size, size), action_dim=action_dim, val_fraction=val_fraction) as w:
        for i in range(n):
            t = lengths[i % len(lengths)]
            # frame t of episode i has a recognisable value so clips can be traced back
            frames = rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8)
            e = {"frames": frames, "actions": rng.normal(size=(t - 1, action_dim)) + 10 * seed,
                 "rewards": rng.normal(size=t - 1)}
            w.add_episode(**e)
            eps.append(e)
    return eps


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    eps = make(root / "a")
    make(root / "b", n=6, lengths=(10,), action_dim=4, seed=1)
    return root, eps


def test_item_matches_episode_data(data):
    root, eps = data
    cd = ClipDataset(root / "a", clip_len=5, seed=0)
    assert len(cd) == 10**9
    for k in range(20):
        item = cd[k]
        e, s = eps[item["episode"]], item["start"]
        assert item["source"] == 0 and item["episode"] in EpisodeDataset(root / "a").split("train")
        torch.testing.assert_close(item["frames"], to_model(e["frames"][s:s + 5]))
        torch.testing.assert_close(item["actions"], torch.tensor(e["actions"][s:s + 4], dtype=torch.float32))
        torch.testing.assert_close(item["rewards"], torch.tensor(e["rewards"][s:s + 4], dtype=torch.float32))
        assert item["frames"].dtype == torch.float32 and item["frames"].shape == (5, 3, 16, 16)


def test_deterministic_in_seed_and_k(data):
    root, _ = data
    aug = AugmentConfig()
    a = ClipDataset(root / "a", clip_len=4, seed=3, augment=aug)
    b = ClipDataset(root / "a", clip_len=4, seed=3, augment=aug)
    for k in (0, 1, 17, 999_999):
        x, y = a[k], b[k]
        assert torch.equal(x["frames"], y["frames"])
        assert (x["episode"], x["start"]) == (y["episode"], y["start"])
    other = ClipDataset(root / "a", clip_len=4, seed=4, augment=aug)
    assert [a.locate(k)[:3] for k in range(20)] != [other.locate(k)[:3] for k in range(20)]
    # augmentation draws come after the clip choice: same clip with and without augmentation
    plain = ClipDataset(root / "a", clip_len=4, seed=3)
    assert [plain.locate(k)[:3] for k in range(20)] == [a.locate(k)[:3] for k in range(20)]
    assert not torch.equal(plain[0]["frames"], a[0]["frames"])


def test_dataloader_workers_match_single_process(data):
    root, _ = data
    cd = ClipDataset(root / "a", clip_len=4, seed=1, num_samples=12, augment=AugmentConfig())
    batches0 = list(torch.utils.data.DataLoader(cd, batch_size=4, num_workers=0))
    batches2 = list(torch.utils.data.DataLoader(cd, batch_size=4, num_workers=2))
    assert len(batches0) == len(batches2) == 3
    for x, y in zip(batches0, batches2):
        for key in x:
            assert torch.equal(x[key], y[key]), key


def test_val_split_fixed_and_disjoint_from_train(data):
    root, eps = data
    ds = EpisodeDataset(root / "a")
    train, val = set(ds.split("train")), set(ds.split("val"))
    assert val and not train & val
    v = ClipDataset(root / "a", clip_len=6, split="val", val_clips_per_episode=3, augment=AugmentConfig())
    assert {v[k]["episode"] for k in range(len(v))} == {i for i in val if len(eps[i]["frames"]) >= 6}
    assert [v[k]["start"] for k in range(len(v))] == [v[k]["start"] for k in range(len(v))]
    for k in range(len(v)):  # evenly spaced starts, first and last included, never augmented
        i, s = v[k]["episode"], v[k]["start"]
        torch.testing.assert_close(v[k]["frames"], to_model(eps[i]["frames"][s:s + 6]))
    starts = [v.locate(k)[2] for k in range(len(v)) if v.locate(k)[1] == v.locate(0)[1]]
    assert starts[0] == 0 and starts[-1] == len(eps[v.locate(0)[1]]["frames"]) - 6
    t = ClipDataset(root / "a", clip_len=6, seed=0)
    assert {t.locate(k)[1] for k in range(500)} <= train


def test_frame_step_and_short_episodes(data):
    root, eps = data
    cd = ClipDataset([MixtureSource(root / "a", frame_step=3)], clip_len=5, seed=0)
    seen = set()
    for k in range(40):
        item = cd[k]
        e, s = eps[item["episode"]], item["start"]
        seen.add(item["episode"])
        assert len(e["frames"]) >= 13  # (5 - 1) * 3 + 1 frames: the 8-frame episodes are skipped
        torch.testing.assert_close(item["frames"], to_model(e["frames"][s:s + 13:3]))
        torch.testing.assert_close(item["actions"][1], torch.tensor(e["actions"][s + 3:s + 6].sum(0),
                                                                    dtype=torch.float32))
    assert seen and all(len(eps[i]["frames"]) >= 13 for i in seen)
    with pytest.raises(DataError, match="no train episode has the 41 frames"):
        ClipDataset([MixtureSource(root / "a", frame_step=2)], clip_len=21)


def test_mixture_weights(data):
    root, _ = data
    cd = ClipDataset([MixtureSource(root / "a", weight=3.0), MixtureSource(root / "b", weight=1.0)],
                     clip_len=4, seed=0)
    n = 4000
    freq_b = np.mean([cd.locate(k)[0] for k in range(n)])
    assert abs(freq_b - 0.25) < 0.03  # binomial std is 0.007
    # within a source, episodes are uniform over its long-enough train episodes
    eps_a = [cd.locate(k)[1] for k in range(n) if cd.locate(k)[0] == 0]
    counts = np.bincount(eps_a, minlength=10)
    train_a = EpisodeDataset(root / "a").split("train")
    assert set(np.nonzero(counts)[0]) == set(train_a)
    assert counts[train_a].min() > 0.5 * counts[train_a].mean()


def test_mixed_action_dims_zero_padded(data):
    root, _ = data
    cd = ClipDataset([MixtureSource(root / "a"), MixtureSource(root / "b")], clip_len=4, seed=0)
    assert cd.action_dim == 4
    ds = [EpisodeDataset(root / "a"), EpisodeDataset(root / "b")]
    sources = set()
    for k in range(30):
        item = cd[k]
        sources.add(item["source"])
        assert item["actions"].shape == (3, 4)
        raw = ds[item["source"]].clip(item["episode"], item["start"], 4)["actions"]
        assert torch.equal(item["actions"][:, : raw.shape[1]], torch.from_numpy(raw))
        assert torch.all(item["actions"][:, raw.shape[1]:] == 0)
    assert sources == {0, 1}
    with pytest.raises(Exception, match="larger than the model's action_dim"):
        ClipDataset([MixtureSource(root / "a"), MixtureSource(root / "b")], clip_len=4, action_dim=3)


def test_resolution(data):
    root, _ = data
    cd = ClipDataset(root / "a", clip_len=3, resolution=8, augment=AugmentConfig())
    assert cd[0]["frames"].shape == (3, 3, 8, 8)
    assert ClipDataset(root / "a", clip_len=3, resolution=8)[0]["frames"].shape == (3, 3, 8, 8)


def test_dataset_stats_exact(data):
    root, eps_a = data
    a = EpisodeDataset(root / "a")
    b = EpisodeDataset(root / "b")
    acts_a = np.concatenate([a.episode(i)["actions"] for i in range(len(a))]).astype(np.float64)
    acts_b = np.concatenate([b.episode(i)["actions"] for i in range(len(b))]).astype(np.float64)
    rews = np.concatenate([d.episode(i)["rewards"] for d in (a, b) for i in range(len(d))]).astype(np.float64)
    st = dataset_stats([MixtureSource(a), MixtureSource(b)], action_dim=5)
    # dims 0-1: both sources; dims 2-3: only b; dim 4: nobody -> (0, 1)
    both = np.concatenate([acts_a, acts_b[:, :2]])
    np.testing.assert_allclose(st["action_mean"][:2], both.mean(0), rtol=1e-9)
    np.testing.assert_allclose(st["action_std"][:2], both.std(0), rtol=1e-9)
    np.testing.assert_allclose(st["action_mean"][2:4], acts_b[:, 2:].mean(0), rtol=1e-9)
    np.testing.assert_allclose(st["action_std"][2:4], acts_b[:, 2:].std(0), rtol=1e-9)
    assert st["action_mean"][4] == 0 and st["action_std"][4] == 1
    np.testing.assert_array_equal(st["action_min"][:2], both.min(0))
    np.testing.assert_allclose([st["reward_mean"], st["reward_std"]], [rews.mean(), rews.std()], rtol=1e-9)
    assert (st["reward_min"], st["reward_max"]) == (rews.min(), rews.max())
