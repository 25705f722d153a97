"""Mixture files and the paper's OXE preset for --data; per-dataset action normalisation with padding masks."""

from __future__ import annotations

import numpy as np
import pytest

from ivideogpt.data import ClipDataset, EpisodeDataset
from ivideogpt.data.shards import open_writer
from ivideogpt.errors import ConfigError
from ivideogpt.train.common import parse_sources


def write(path, action_dim, scale, n=4, t=8, shard_size=None):
    rng = np.random.default_rng(action_dim)
    with open_writer(path, image_size=(8, 8), action_dim=action_dim, source="t", shard_size=shard_size) as w:
        for _ in range(n):
            w.add_episode(rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8),
                          (rng.normal(size=(t - 1, action_dim)) * scale + scale).astype(np.float32))
    return path


def test_oxe_preset_is_the_reference_mixture(tmp_path):
    write(tmp_path / "bridge", 3, 1.0)
    write(tmp_path / "kuka", 3, 1.0, shard_size=2)
    with pytest.raises(ConfigError) as e:
        parse_sources([f"oxe,root={tmp_path}"])
    msg = str(e.value)
    assert "36 of 38 datasets missing" in msg and "fractal20220817_data" in msg and "toto" in msg
    assert ", bridge," not in msg and ", kuka," not in msg
    # The reference's select mixture: 7 named datasets + 31 small ones sharing 0.2; steps max(round(base / 3), 1).
    import yaml

    from ivideogpt.data.mixtures import PRESETS

    entries = yaml.safe_load((PRESETS / "oxe.yaml").read_text())["datasets"]
    got = {e["name"]: (e["weight"], e["step"]) for e in entries}
    assert len(got) == 38 and sum(w for w, _ in got.values()) == pytest.approx(1.0)
    assert got["fractal20220817_data"] == (0.15, 1) and got["bridge"] == (0.15, 2) and got["kuka"] == (0.1, 3)
    assert got["toto"] == (pytest.approx(0.2 / 31), 10) and got["asu_table_top_converted_externally_to_rlds"][1] == 4
    for name in got:  # with every dataset on disk the preset expands to its sources
        if not (tmp_path / name).exists():
            (tmp_path / name).mkdir()
            (tmp_path / name / "meta.json").write_text("{}")
    srcs = parse_sources([f"oxe,root={tmp_path},weight=2"])
    assert [(s.path_or_dataset, s.weight, s.frame_step) for s in srcs] == [
        (str(tmp_path / n), 2 * w, st) for n, (w, st) in got.items()]
    sth = {e["name"]: e["weight"] for e in yaml.safe_load((PRESETS / "oxe-sthsth.yaml").read_text())["datasets"]}
    assert sth["sthsth"] == 0.15 and sth["bridge"] == pytest.approx(0.15 * 0.85)


def test_mixture_file_and_errors(tmp_path):
    a, b = write(tmp_path / "a", 3, 1.0), write(tmp_path / "b", 5, 10.0, shard_size=3)
    (tmp_path / "mix.yaml").write_text("root: .\ndatasets:\n  - {name: a, weight: 2, step: 1}\n"
                                       "  - {path: " + str(b) + ", weight: 1, step: 2}\n")
    srcs = parse_sources([f"{tmp_path / 'mix.yaml'},weight=3"])
    assert [(str(s.path_or_dataset), s.weight, s.frame_step) for s in srcs] == [(str(a), 6.0, 1), (str(b), 3.0, 2)]
    with pytest.raises(ConfigError, match="root=DIR"):
        parse_sources(["oxe"])
    with pytest.raises(ConfigError, match="unknown option 'step'"):
        parse_sources([f"{tmp_path / 'mix.yaml'},step=2"])
    (tmp_path / "bad.yaml").write_text("root: .\ndatasets:\n  - {name: zzz}\n")
    with pytest.raises(ConfigError, match="1 of 1 datasets missing.*zzz"):
        parse_sources([str(tmp_path / "bad.yaml")])


def test_per_source_normalisation_and_masks(tmp_path):
    a, b = write(tmp_path / "a", 3, 1.0), write(tmp_path / "b", 5, 10.0, shard_size=3)
    srcs = parse_sources([str(a), str(b)])
    raw = ClipDataset(srcs, 4, seed=1, action_dim=6)
    norm = ClipDataset(srcs, 4, seed=1, action_dim=6, action_norm="per_source")
    stats = {}
    for k in range(40):
        ir, im = raw[k], norm[k]
        src, ds = ir["source"], [EpisodeDataset(a), EpisodeDataset(b)][ir["source"]]
        d = ds.action_dim
        assert im["action_mask"].tolist() == [1.0] * d + [0.0] * (6 - d)
        assert (im["actions"][:, d:] == 0).all() and (ir["actions"][:, d:] == 0).all()
        mean, std = np.array(ds.meta["action_stats"]["mean"]), np.array(ds.meta["action_stats"]["std"])
        np.testing.assert_allclose(im["actions"][:, :d].numpy(), (ir["actions"][:, :d].numpy() - mean) / std,
                                   rtol=1e-5, atol=1e-5)
        stats.setdefault(src, []).append(im["actions"][:, :d].numpy())
    # Normalised per dataset: both sources land near unit scale although their raw scales differ 10x.
    for src, xs in stats.items():
        assert 0.3 < np.concatenate(xs).std() < 3, src
    with pytest.raises(ConfigError, match="action_norm"):
        ClipDataset(srcs, 4, action_norm="global")
