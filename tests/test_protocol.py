"""The evaluation protocol (best-of-K, mean, shuffled actions, copy-last, FVD, reward error), its reports and
the ``ivideogpt evaluate`` CLI, on a tiny untrained 32x32 world model and a tiny pusher dataset."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import conftest
from ivideogpt import WorldModel
from ivideogpt.cli import main
from ivideogpt.commands.collect import collect
from ivideogpt.data.episodes import EpisodeDataset
from ivideogpt.errors import ConfigError, DataError
from ivideogpt.eval.protocol import PSNR_CAP, best_of_k, evaluate

i3d_mod = importlib.import_module("ivideogpt.eval.i3d")
RES, T0, MAX_STEPS = 32, 2, 7


pytestmark = pytest.mark.usefixtures("one_thread")


def micro_world_model(seed: int = 0) -> WorldModel:
    return conftest.micro_world_model(seed=seed, context_frames=T0, max_steps=MAX_STEPS,
                                      action_mean=[0.0, 0.0], action_std=[1.0, 1.0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return collect("pusher", tmp_path_factory.mktemp("eval") / "pusher", episodes=15, steps=12, size=RES,
                   progress=False)


@pytest.fixture(scope="module")
def wm():
    return micro_world_model()


def run_eval(wm, data, **kw):
    args = dict(horizon=3, samples=3, batch_size=8, fvd=False, perceptual=False, progress=False,
                clips_per_episode=3)
    args.update(kw)
    return evaluate(wm, data, **args)


def without_timings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timings"}


def test_best_of_k_beats_mean_and_k1_equals_mean(wm, data):
    r = run_eval(wm, data, samples=4, perceptual=True)
    m = r["metrics"]
    assert r["config"]["clips"] == 3 * len(EpisodeDataset(data).split("val")) >= 6  # 3 clips per val episode
    assert m["psnr"]["best_of_k"]["mean"] >= m["psnr"]["mean"]["mean"]
    assert m["ssim"]["best_of_k"]["mean"] >= m["ssim"]["mean"]["mean"]
    assert m["stlpips"]["best_of_k"]["mean"] <= m["stlpips"]["mean"]["mean"]
    # Several different samples: best-of-4 is strictly better somewhere, else sampling is not happening.
    assert m["psnr"]["best_of_k"]["mean"] > m["psnr"]["mean"]["mean"]
    assert len(m["psnr"]["best_of_k"]["per_step"]) == 3
    r1 = run_eval(wm, data, samples=1, perceptual=True)
    for name in ("psnr", "ssim", "stlpips"):
        assert r1["metrics"][name]["best_of_k"] == r1["metrics"][name]["mean"]


def test_best_of_k_picks_per_clip_and_metric():
    v = np.array([[[1.0, 3.0], [2.0, 2.5], [0.0, 0.0]]])  # 1 clip, 3 samples, 2 steps
    idx, best = best_of_k(v, higher_is_better=True)
    assert idx.tolist() == [1] and best.tolist() == [[2.0, 2.5]]
    idx, best = best_of_k(v, higher_is_better=False)
    assert idx.tolist() == [2]


def test_same_seed_same_report_other_seed_differs(wm, data):
    a, b = run_eval(wm, data, seed=3), run_eval(wm, data, seed=3)
    assert json.dumps(without_timings(a)) == json.dumps(without_timings(b))
    c = run_eval(wm, data, seed=4)
    assert c["metrics"]["psnr"]["mean"] != a["metrics"]["psnr"]["mean"]
    assert c["metrics"]["psnr"]["copy_last"] == a["metrics"]["psnr"]["copy_last"]  # no sampling there


def test_copy_last_and_reward_baseline_match_an_independent_computation(wm, data):
    r = run_eval(wm, data, clips_per_episode=1, horizon=4)
    ds = EpisodeDataset(data)
    psnrs, ssims, rews = [], [], []
    for ep in ds.split("val"):  # one clip per val episode: it starts at frame 0
        f = ds.frames(ep, 0, T0 + 4)
        psnrs.append([min(peak_signal_noise_ratio(f[t], f[T0 - 1], data_range=255), PSNR_CAP)
                      for t in range(T0, T0 + 4)])
        ssims.append([structural_similarity(f[t], f[T0 - 1], channel_axis=-1, data_range=255, gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False) for t in range(T0, T0 + 4)])
        rews.append(ds.episode(ep)["rewards"][T0 - 1:T0 - 1 + 4])
    assert r["clips"] == [[ep, 0] for ep in ds.split("val")]
    np.testing.assert_allclose(r["metrics"]["psnr"]["copy_last"]["per_step"], np.mean(psnrs, 0), atol=1e-4)
    np.testing.assert_allclose(r["metrics"]["ssim"]["copy_last"]["per_step"], np.mean(ssims, 0), atol=1e-4)
    rews = np.array(rews, np.float64)
    assert r["reward"]["mean_baseline"]["mean"] == pytest.approx(np.abs(rews - rews.mean()).mean(), abs=1e-5)
    assert r["reward"]["model"]["mean"] > 0 and len(r["reward"]["shuffled"]["per_step"]) == 4


def test_fvd_reasons_instead_of_numbers(wm, data, monkeypatch):
    short = run_eval(wm, data, fvd=True, samples=1, max_clips=2)
    assert short["fvd"]["model"] is None
    assert short["fvd"]["reason"].startswith("FVD not computed:") and "at least 9" in short["fvd"]["reason"]
    off = run_eval(wm, data, fvd=False, samples=1, max_clips=2)
    assert "disabled" in off["fvd"]["reason"]
    monkeypatch.setattr(i3d_mod, "default_weights_path", lambda: None)
    long = run_eval(wm, data, fvd=True, samples=1, max_clips=2, horizon=MAX_STEPS)  # 2 + 7 = 9 frames
    assert long["fvd"]["model"] is None and long["fvd"]["shuffled"] is None and long["fvd"]["copy_last"] is None
    assert long["fvd"]["reason"].startswith("FVD not computed:") and "i3d" in long["fvd"]["reason"].lower()


def test_reports_are_written(wm, data, tmp_path):
    r = run_eval(wm, data, samples=2, out_dir=tmp_path / "ev", model_path="micro")
    out = tmp_path / "ev"
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(r))
    md = (out / "report.md").read_text()
    assert "| metric | model best-of-2 | model mean | shuffled actions | copy-last |" in md
    for row in ("| PSNR (dB) ↑ |", "| SSIM ↑ |", "| ST-LPIPS ↓ | ST-LPIPS not computed", "| FVD ↓ | FVD not computed",
                "| reward MAE ↓ |", "Action controllability: controllability not computed"):
        assert row in md
    from PIL import Image

    png = np.asarray(Image.open(out / "samples.png"))
    # 4 shown clips x 4 rows (truth, best, typical, shuffled), frames upscaled 4x with 2 px gaps.
    assert png.shape[0] == 2 + 16 * (RES * 4 + 2)
    assert (out / "samples.gif").stat().st_size > 0


def test_bad_arguments_raise_clear_errors(wm, data, tmp_path):
    with pytest.raises(ConfigError, match="--context 1: this model takes 2 to 8"):
        run_eval(wm, data, context=1)
    with pytest.raises(ConfigError, match="--horizon 7: with 3 context frames"):
        run_eval(wm, data, context=3, horizon=MAX_STEPS)
    with pytest.raises(ConfigError, match="--horizon 8"):
        run_eval(wm, data, horizon=MAX_STEPS + 1)
    with pytest.raises(ConfigError, match="action-conditioned"):
        run_eval(wm, data, use_actions=False)
    with pytest.raises(DataError, match="no such dataset"):
        run_eval(wm, tmp_path / "nope")


@pytest.fixture(scope="module")
def saved_model(wm, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "wm"
    wm.save_pretrained(path)
    return path


@pytest.mark.parametrize("extra,expect", [(["--context", "1"], "--context 1"), (["--horizon", "0"], "--horizon 0")])
def test_cli_bad_input_exits_2_with_one_line(saved_model, data, tmp_path, capsys, extra, expect):
    rc = main(["evaluate", "--model", str(saved_model), "--data", str(data), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expect in err and err.startswith("error:")


def test_cli_missing_dataset_exits_2(saved_model, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(saved_model), "--data", str(tmp_path / "missing"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "missing" in err


def test_cli_end_to_end_and_idm_cache(saved_model, data, tmp_path, capsys):
    argv = ["evaluate", "--model", str(saved_model), "--data", str(data), "--out", str(tmp_path / "ev"),
            "--horizon", "3", "--samples", "2", "--max-clips", "2", "--no-fvd", "--no-perceptual",
            "--idm-steps", "3", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| metric | model best-of-2 |" in out and "trained into" in out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["config"]["model"] == str(saved_model) and report["config"]["clips"] == 2
    assert set(report["controllability"]) >= {"real", "predicted", "shuffled_vs_given", "shuffled_vs_own"}
    assert main(argv) == 0
    assert "reused from" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["metrics"] == report["metrics"]


def test_observed_context_frames(wm, data):
    """--context above the tokenizer's: the extra real frames are given (observed) and the horizon starts after
    them, so copy-last copies a later frame and the clips are one frame longer."""
    two = run_eval(wm, data, context=2, horizon=3)
    three = run_eval(wm, data, context=3, horizon=3)
    assert three["config"]["context"] == 3 and two["config"]["context"] == 2
    assert three["metrics"]["psnr"]["copy_last"] != two["metrics"]["psnr"]["copy_last"]
