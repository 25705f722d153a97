"""`ivideogpt convert reference`: a release becomes a world-model directory that the other commands use; bad
input gets one clear error naming the file, exit 2, and nothing written at --out."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ivideogpt.cli import main
from ivideogpt.convert.reference import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS, TRANSFORMER_CONFIG, TRANSFORMER_WEIGHTS
from ivideogpt.world_model import WorldModel

FIX = Path(__file__).parent / "fixtures" / "reference"


def _release(tmp_path, name="ctx2-act-cond") -> Path:
    dst = tmp_path / name
    shutil.copytree(FIX / name, dst)
    return dst


def test_convert_then_predict(tmp_path, capsys):
    out = tmp_path / "wm"
    assert main(["convert", "reference", str(FIX / "ctx2-act-cond"), "--out", str(out), "--segment-length", "6"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["action_dim"] == 3 and info["context_frames"] == 2 and info["segment_length"] == 6
    wm = WorldModel.from_pretrained(out)
    assert wm.transformer.config.action_mean == [0.0] * 3 and wm.transformer.config.action_std == [1.0] * 3
    assert not list(tmp_path.glob(".*"))  # no temporary left beside the output
    data = tmp_path / "data"
    assert main(["collect", "--env", "pusher", "--episodes", "4", "--steps", "8", "--size", "64", "--out", str(data),
                 "--no-progress"]) == 0
    gif = tmp_path / "p.gif"
    assert main(["predict", "--model", str(out), "--data", str(data), "--episodes", "1", "--out", str(gif)]) == 0
    assert gif.stat().st_size > 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["horizon"] == 4


def test_from_pretrained_on_a_release_converts_in_memory_and_says_so_once(capsys):
    wm = WorldModel.from_pretrained(FIX / "ctx1-act-free")
    err = capsys.readouterr().err
    assert err.count("converting it in memory") == 1
    assert wm.context_frames == 1 and wm.action_dim == 0 and wm.transformer.config.first_slot is False


def _break_not_a_release(rel: Path):
    shutil.rmtree(rel / "tokenizer")
    return "not a reference release"


def _break_missing_file(rel: Path):
    (rel / TRANSFORMER_WEIGHTS).unlink()
    return TRANSFORMER_WEIGHTS


def _break_wrong_shape(rel: Path):
    f = rel / TOKENIZER_WEIGHTS
    state = load_file(str(f))
    state["quant_linear.weight"] = torch.zeros(16, 8)
    save_file(state, str(f))
    return "quant_linear.weight' has shape [16, 8], expected [16, 256]"


def _break_unknown_class(rel: Path):
    f = rel / TOKENIZER_CONFIG
    cfg = json.loads(f.read_text())
    cfg["_class_name"] = "AutoencoderKL"
    f.write_text(json.dumps(cfg))
    return "_class_name is 'AutoencoderKL'"


def _break_transformer_class(rel: Path):
    f = rel / TRANSFORMER_CONFIG
    cfg = json.loads(f.read_text())
    cfg["model_type"] = "gpt2"
    f.write_text(json.dumps(cfg))
    return "model_type is 'gpt2'; expected 'llama'"


def _break_extra_tensor(rel: Path):
    f = rel / TRANSFORMER_WEIGHTS
    state = load_file(str(f))
    state["value_head.weight"] = torch.zeros(1, 64)
    save_file(state, str(f))
    return "unexpected tensor 'value_head.weight'"


def _break_truncated(rel: Path):
    f = rel / TOKENIZER_WEIGHTS
    f.write_bytes(f.read_bytes()[:1000])
    return "not a readable safetensors file"


@pytest.mark.parametrize("breaker", [_break_not_a_release, _break_missing_file, _break_wrong_shape,
                                     _break_unknown_class, _break_transformer_class, _break_extra_tensor,
                                     _break_truncated])
@pytest.mark.parametrize("existing_out", [False, True])
def test_bad_release_one_error_exit_2_nothing_written(tmp_path, capsys, breaker, existing_out):
    rel = _release(tmp_path)
    expected = breaker(rel)
    out = tmp_path / "out" / "wm"
    if existing_out:  # an earlier conversion there is kept as it was
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("old")
    assert main(["convert", "reference", str(rel), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0], err[0]
    if breaker is not _break_not_a_release:
        assert str(rel) in err[0]  # names the file
    if existing_out:
        assert [p.name for p in out.parent.iterdir()] == ["wm"] and (out / "keep.txt").read_text() == "old"
    else:
        assert not (tmp_path / "out").exists()


def test_hub_id_offline_is_one_clear_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "wm"
    assert main(["convert", "reference", "thuml/ivideogpt-bair-64-act-cond", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "thuml/ivideogpt-bair-64-act-cond: could not download" in err[0], err
    assert not out.exists()


def test_hub_id_without_huggingface_hub(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "reference", "thuml/ivideogpt-oxe-64-act-free", "--out", str(tmp_path / "wm")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huggingface_hub is not installed" in err[0], err
