"""RLDS import: fixtures written by this file's own TFRecord/protobuf/CRC-32C encoder (not the importer's code);
frames, nested actions, rewards and episode boundaries checked exactly; CRCs verified; clear errors."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from ivideogpt.cli import main
from ivideogpt.data import EpisodeDataset
from ivideogpt.data.rlds import RLDSImportConfig, import_rlds, parse_example

# ---- an independent minimal writer: CRC-32C (bitwise, Castagnoli), protobuf wire format, TFRecord framing ----

_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def encode_example(features: dict) -> bytes:
    body = b""
    for key, v in features.items():
        if isinstance(v, list):  # BytesList
            feature = ld(1, b"".join(ld(1, x) for x in v))
        elif np.asarray(v).dtype.kind == "f":  # FloatList, packed
            feature = ld(2, ld(1, np.asarray(v, "<f4").tobytes()))
        else:  # Int64List, unpacked (the other wire form)
            feature = ld(3, b"".join(varint(1 << 3 | 0) + varint(int(x)) for x in np.asarray(v).ravel()))
        body += ld(1, ld(1, key.encode()) + ld(2, feature))
    return ld(1, body)


def write_tfrecord(path, records: list[bytes]) -> None:
    with open(path, "wb") as f:
        for r in records:
            head = struct.pack("<Q", len(r))
            f.write(head + struct.pack("<I", masked(head)) + r + struct.pack("<I", masked(r)))


def png(frame) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(frame) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


FEATURES = {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict", "featuresDict": {
    "features": {"steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                           "sequence": {"feature": {"featuresDict": {"features": {
                               "observation": {"featuresDict": {"features": {
                                   "image": {"image": {"shape": {"dimensions": ["12", "14", "3"]},
                                                       "encodingFormat": "png"}},
                                   "wrist_image": {"image": {"encodingFormat": "jpeg"}},
                                   "state": {"tensor": {"shape": {"dimensions": ["2"]}}}}}},
                               "action": {"featuresDict": {"features": {
                                   "world_vector": {"tensor": {"shape": {"dimensions": ["3"]}}},
                                   "rotation_delta": {"tensor": {"shape": {"dimensions": ["3"]}}},
                                   "gripper": {"tensor": {"shape": {"dimensions": []}}}}}},
                               "reward": {"tensor": {}}, "is_first": {"tensor": {}}, "is_last": {"tensor": {}},
                               "language_instruction": {"text": {}}}}}, "length": "-1"}}}}}


def make_episode(rng, t):
    return {"frames": rng.integers(0, 256, (t, 12, 14, 3), dtype=np.uint8),
            "world_vector": rng.normal(size=(t, 3)).astype(np.float32),
            "rotation_delta": rng.normal(size=(t, 3)).astype(np.float32),
            "gripper": rng.integers(0, 2, t).astype(np.int64),
            "reward": rng.uniform(size=t).astype(np.float32)}


def record(ep) -> bytes:
    t = len(ep["frames"])
    return encode_example({
        "steps/observation/image": [png(f) for f in ep["frames"]],
        "steps/observation/wrist_image": [jpeg(f) for f in ep["frames"]],
        "steps/observation/state": np.zeros(2 * t, np.float32),
        "steps/action/world_vector": ep["world_vector"].ravel(), "steps/action/rotation_delta":
            ep["rotation_delta"].ravel(), "steps/action/gripper": ep["gripper"],
        "steps/reward": ep["reward"], "steps/is_first": np.eye(1, t, 0, np.int64)[0],
        "steps/is_last": np.eye(1, t, t - 1, np.int64)[0],
        "steps/language_instruction": [b"pick the block"] * t,
    })


@pytest.fixture
def rlds(tmp_path):
    rng = np.random.default_rng(0)
    eps = [make_episode(rng, t) for t in (5, 7, 4, 6, 3)]
    root = tmp_path / "fixture_ds" / "0.1.0"
    root.mkdir(parents=True)
    (root / "features.json").write_text(json.dumps(FEATURES))
    (root / "dataset_info.json").write_text(json.dumps({"name": "fixture_ds", "splits": [
        {"name": "train", "shardLengths": ["3", "2"]}]}))
    write_tfrecord(root / "fixture_ds-train.tfrecord-00000-of-00002", [record(e) for e in eps[:3]])
    write_tfrecord(root / "fixture_ds-train.tfrecord-00001-of-00002", [record(e) for e in eps[3:]])
    return root, eps


def test_parse_example_roundtrip():
    ex = parse_example(encode_example({"a": [b"x", b""], "f": np.array([1.5, -2], np.float32),
                                       "i": np.array([3, -4, 2**40])}))
    assert ex["a"] == [b"x", b""] and ex["f"].tolist() == [1.5, -2] and ex["i"].tolist() == [3, -4, 2**40]


@pytest.mark.parametrize("shard_size", [None, 2])
def test_import_exact_frames_actions_boundaries(rlds, tmp_path, shard_size):
    root, eps = rlds
    args = ["import", "--format", "rlds", str(root), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args + (["--shard-size", str(shard_size)] if shard_size else [])) == 0
    ds = EpisodeDataset(tmp_path / "out")
    assert ds.sharded == bool(shard_size)
    assert len(ds) == 5 and ds.meta["episode_lengths"] == [5, 7, 4, 6, 3]
    assert ds.action_dim == 7 and ds.meta["source"] == "rlds:fixture_ds"
    # Nested action dict: leaves in sorted key order.
    assert ds.meta["extra"]["action_layout"] == {"steps/action/gripper": 1, "steps/action/rotation_delta": 3,
                                                 "steps/action/world_vector": 3}
    for i, e in enumerate(eps):
        got = ds.episode(i)
        t = len(e["frames"])
        np.testing.assert_array_equal(got["frames"], e["frames"])
        want = np.concatenate([e["gripper"][:, None], e["rotation_delta"], e["world_vector"]], 1)[: t - 1]
        np.testing.assert_array_equal(got["actions"], want.astype(np.float32))
        np.testing.assert_array_equal(got["rewards"], e["reward"][: t - 1])
        assert ds.episode_info(i) == {"file": f"fixture_ds-train.tfrecord-0000{i // 3}-of-00002", "record": i % 3}


def test_options_order_camera_size_workers(rlds, tmp_path):
    root, eps = rlds
    cfg = RLDSImportConfig(camera="wrist_image", action_keys=["action/world_vector", "steps/action/gripper"],
                           size=8)
    import_rlds(root, tmp_path / "a", cfg, progress=False, workers=2)
    ds = EpisodeDataset(tmp_path / "a")
    assert ds.image_size == (8, 8) and ds.action_dim == 4
    e = eps[1]
    np.testing.assert_array_equal(ds.episode(1)["actions"],
                                  np.concatenate([e["world_vector"], e["gripper"][:, None]], 1)[:6])
    from ivideogpt.data.video_import import square_resize

    dec = [square_resize(np.asarray(Image.open(io.BytesIO(jpeg(f))).convert("RGB")), 8) for f in e["frames"]]
    np.testing.assert_array_equal(ds.episode(1)["frames"], np.stack(dec))
    # Resume on a complete import adds nothing; one worker gives the same dataset.
    import_rlds(root, tmp_path / "a", cfg, progress=False, resume=True)
    import_rlds(root, tmp_path / "b", cfg, progress=False, workers=1)
    assert len(EpisodeDataset(tmp_path / "a")) == 5
    for i in range(5):
        np.testing.assert_array_equal(EpisodeDataset(tmp_path / "b").episode(i)["frames"], ds.episode(i)["frames"])


def test_resume_continues_inside_a_file(rlds, tmp_path):
    root, eps = rlds
    out = tmp_path / "r"
    import_rlds(root, out, progress=False, shard_size=2)
    # Keep only the first shard (episodes 0, 1), as if the import stopped there.
    for p in (out / "shards").iterdir():
        if not p.name.startswith("000000"):
            p.unlink()
    assert len(EpisodeDataset(out)) == 2
    import_rlds(root, out, progress=False, resume=True)
    ds = EpisodeDataset(out)
    assert ds.meta["episode_lengths"] == [5, 7, 4, 6, 3]
    np.testing.assert_array_equal(ds.episode(2)["frames"], eps[2]["frames"])


def test_wrong_keys_list_the_datasets_keys(rlds, tmp_path, capsys):
    root, _ = rlds
    for extra, words in ((["--camera", "front"], ["steps/observation/image", "steps/observation/wrist_image"]),
                         (["--action-key", "act"], ["steps/action/gripper", "steps/reward"]),
                         (["--reward-key", "rew"], ["steps/is_last"]),
                         (["--split", "test"], ["splits here: ['train']"])):
        capsys.readouterr()
        assert main(["import", "--format", "rlds", str(root), "--out", str(tmp_path / "x"), "--no-progress",
                     *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and all(w in err for w in words), err


@pytest.mark.parametrize("damage", ["data_crc", "length_crc", "truncated", "wrong_shape"])
def test_bad_records_one_error_naming_file_nothing_lost(rlds, tmp_path, capsys, damage):
    root, eps = rlds
    bad = root / "fixture_ds-train.tfrecord-00001-of-00002"
    raw = bytearray(bad.read_bytes())
    if damage == "data_crc":
        raw[40] ^= 1
    elif damage == "length_crc":
        raw[9] ^= 1
    elif damage == "truncated":
        raw = raw[:-10]
    else:
        e = dict(eps[3])
        e["world_vector"] = e["world_vector"][:-1]  # 5 rows for 6 steps
        write_tfrecord(bad, [record(e)])
        raw = bytearray(bad.read_bytes())
    bad.write_bytes(bytes(raw))
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["import", "--format", "rlds", str(root), "--out", str(out), "--shard-size", "2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(bad) in err, err
    assert {"data_crc": "data CRC", "length_crc": "length CRC", "truncated": "truncated",
            "wrong_shape": "wrong-shape"}[damage] in err
    ds = EpisodeDataset(out)  # the first file's episodes were written and kept
    assert ds.meta["episode_lengths"] == [5, 7, 4]
