"""The benchmark scripts' measuring functions still run against the current API (tokenizer_compare's evaluation
broke silently once when ``reconstruct`` started returning a tuple)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ivideogpt.commands.collect import collect
from ivideogpt.data.clips import ClipDataset, MixtureSource

pytestmark = pytest.mark.usefixtures("one_thread")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tokenizer_compare_measures_all_three_models(tmp_path):
    tc = _load("tokenizer_compare")
    data = tmp_path / "pusher"
    collect("pusher", data, episodes=4, steps=8, size=64, seed=1, progress=False)
    val = ClipDataset([MixtureSource(str(data))], 4, split="val", resolution=64, val_clips_per_episode=1)
    for spec in tc.model_specs("tiny-cpu", []):
        model = tc.build(spec, "tiny-cpu", [], seed=0)
        out = tc.evaluate(model, val, 1, batch_size=2, n_clips=len(val))
        assert set(out) >= {"psnr_future", "ssim_future", "st_lpips_future"}
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    swap = tc.swap_test(tc.build("compressive", "tiny-cpu", [], seed=0), val, batch_size=2, n_clips=len(val))
    assert set(swap) == {"true_tokens", "other_frame_tokens", "other_clip_tokens", "copy_last_context"}


def test_transformer_embeddings_measures_ce_and_gaps():
    """Its teacher-forced per-frame CE (true vs zero actions) and rollout gaps run on a world model with the
    embedding extras; the actions matter to the CE of every predicted frame."""
    import conftest

    te = _load("transformer_embeddings")
    wm = conftest.micro_world_model(res=32, context_frames=2, max_steps=4, action_mean=[0.0, 0.0],
                                    action_std=[1.0, 1.0], tokenizer_overrides=conftest.CPU_VARIANT,
                                    transformer_overrides=conftest.CPU_TRANSFORMER)
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(3, 6, 3, 32, 32, generator=g)
    ce = te.per_frame_ce(wm, clips, torch.randn(3, 5, 2, generator=g))
    assert len(ce["true"]) == len(ce["zero"]) == 4 and all(a != b for a, b in zip(ce["true"], ce["zero"]))
    items = [{"frames": clips[i], "actions": torch.randn(5, 2, generator=g), "rewards": torch.randn(5, generator=g)}
             for i in range(3)]
    gaps = te.rollout_gaps(wm, items)
    assert set(gaps) == {"sampled", "greedy"} and all(set(v) >= {"model", "gap_second_half"} for v in gaps.values())


def test_data_scale_builds_valid_stores_and_measures(tmp_path):
    ds_mod = _load("data_scale")
    from ivideogpt.data import EpisodeDataset

    data = ds_mod.pool(4, 8, k=4)
    ds_mod.write_old_bulk(tmp_path / "old", 10, data)
    ds_mod.replicate_shards(tmp_path / "sh", 10, data, 4)
    old, sh = EpisodeDataset(tmp_path / "old"), EpisodeDataset(tmp_path / "sh")
    sh.validate()
    assert old.meta["splits"] == sh.meta["splits"] and sh.meta["num_shards"] == 3
    for i in range(10):
        for k, v in old.episode(i).items():
            assert (sh.episode(i)[k] == v).all(), (i, k)
    r = ds_mod.read_rate(tmp_path / "sh", 0, 8, 2, 4, seed=1)
    assert r["clips_per_s"] > 0 and r["peak_rss_mb"] > 0
