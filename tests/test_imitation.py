"""Video in-context imitation: sequences of several segments, WorldModel.imitate, the behaviour data and its
classifier, and the `imitate` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import conftest
from ivideogpt.envs import make, make_expert
from ivideogpt.envs.behaviours import PLACE_HI, PLACE_LO, behaviour_directions, contrastive
from ivideogpt.eval.behaviour import BehaviourClassifier
from ivideogpt.train.transformer_task import future_slice, tokenize_clips
from ivideogpt.transformer import SequenceLayout

pytestmark = pytest.mark.usefixtures("one_thread")

SEG = 4  # frames per segment of the micro model


def _wm(**kw):
    # max_frames = 1 + max_steps = 2 * SEG
    over = dict(conftest.CPU_TRANSFORMER, segment_frames=SEG, frame_embedding=True)
    over.update(kw)
    return conftest.micro_world_model(context_frames=1, max_steps=2 * SEG - 1, action_dim=0, use_reward=False,
                                      tokenizer_overrides=conftest.CPU_VARIANT, transformer_overrides=over)


def _frames(b, t, seed=0, res=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, res, res, 3), generator=g, dtype=torch.uint8)


def _tokens(lay, plan, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    parts = []
    for f in plan:
        ctx = torch.randint(0, lay.context_vocab, (b, lay.context_frames, lay.context_tokens), generator=g)
        fut = torch.randint(0, lay.future_vocab, (b, f - lay.context_frames, lay.future_tokens), generator=g)
        parts.append(lay.build(ctx, fut))
    return torch.cat(parts, 1)


# ---------------------------------------------------------------------------------------------- layout
def test_layout_of_several_segments():
    lay = SequenceLayout(4, 2, 1, 10, 12)
    assert lay.plan(16, 8) == [8, 8] and lay.plan(11, 8) == [8, 3] and lay.plan(5, 0) == [5]
    with pytest.raises(ValueError, match="fewer than"):
        SequenceLayout(4, 2, 2, 10, 12).plan(9, 8)  # a last segment of 1 frame has no room for 2 context frames
    local = lay.local_positions([8, 3])
    assert torch.equal(lay.local_positions_of_length(len(local), 8), local)
    assert torch.equal(local, torch.cat([torch.arange(lay.length(8)), torch.arange(lay.length(3))]))
    # Each segment is laid out exactly as a clip of its own.
    ctx, fut = torch.randint(0, 10, (2, 2, 1, 4)), torch.randint(0, 12, (2, 2, 7, 2))
    assert torch.equal(lay.build(ctx, fut), torch.cat([lay.build(ctx[:, 0], fut[:, 0]),
                                                       lay.build(ctx[:, 1], fut[:, 1])], 1))
    mask = lay.target_mask_at(lay.local_positions([8, 8]))
    assert torch.equal(mask, torch.cat([lay.target_mask(8), lay.target_mask(8)]))
    # The second segment's [S1] and context codes are given, never targets.
    second = lay.length(8)
    assert not mask[second - 1: second + lay.context_length - 1].any()
    assert lay.is_slot(local).sum() == 7 + 2 and lay.is_frame_end(local).sum() == 7 + 2
    # Frame index within the segment: [S1] + 4 context codes are frame 0, then 3 tokens per future frame.
    idx = lay.frame_index(local)
    assert idx[:5].tolist() == [0] * 5 and idx[5:8].tolist() == [1] * 3 and idx[-3:].tolist() == [2] * 3
    assert idx[lay.length(8)] == 0 and idx[lay.length(8) - 1] == 7


def test_segmented_config_validation():
    wm = _wm()
    c = wm.transformer.config
    assert c.max_len == 2 * c.layout.length(SEG)
    assert wm.max_steps == SEG - 1  # a rollout stays in one segment, then re-anchors
    from ivideogpt.transformer import TransformerConfig

    with pytest.raises(ValueError, match="segment_frames"):
        TransformerConfig(**{**vars(c), "segment_frames": 1})
    with pytest.raises(ValueError, match="first_slot"):
        TransformerConfig(**{**vars(c), "first_slot": False})


# --------------------------------------------------------------------------- transformer across segments
def test_kv_cache_matches_teacher_forcing_across_segments():
    tr = _wm().transformer
    lay = tr.layout
    tokens = _tokens(lay, [SEG, SEG])
    with torch.no_grad():
        full, _ = tr(tokens)
        # The first segment and the second's context and first frame in one prefill, then token by token.
        p = lay.length(SEG) + lay.length(2)
        cache = tr.new_cache(2)
        last, _ = tr.prefill(tokens[:, :p], cache, plan=[SEG, 2])
        assert cache.segment_start == lay.length(SEG)
        got = [last[:, None]]
        for i in range(p, tokens.shape[1]):
            logits, _ = tr.forward_with_cache(tokens[:, i:i + 1], cache)
            got.append(logits)
        assert (torch.cat(got, 1) - full[:, p - 1:]).abs().max() < 1e-4
        # Or segment by segment: a chunk that starts a new segment says so with its plan.
        cache2 = tr.new_cache(2)
        tr.prefill(tokens[:, :lay.length(SEG)], cache2, plan=[SEG])
        second, _ = tr.forward_with_cache(tokens[:, lay.length(SEG):], cache2, plan=[SEG])
        assert (second - full[:, lay.length(SEG):]).abs().max() < 1e-4


def test_segments_are_causal_and_the_second_reads_the_first():
    tr = _wm().transformer
    lay = tr.layout
    a = _tokens(lay, [SEG, SEG], seed=1)
    b = a.clone()
    n = lay.length(SEG)
    b[:, n + lay.context_length + 1:] = _tokens(lay, [SEG, SEG], seed=2)[:, n + lay.context_length + 1:]
    c = a.clone()
    c[:, lay.context_length + 1:n] = _tokens(lay, [SEG, SEG], seed=3)[:, lay.context_length + 1:n]
    with torch.no_grad():
        la, lb, lc = tr(a)[0], tr(b)[0], tr(c)[0]
    # Later tokens never change earlier logits ...
    assert torch.equal(la[:, :n + lay.context_length + 1], lb[:, :n + lay.context_length + 1])
    # ... and the first segment's frames change the second's predictions (it can read the demonstration).
    assert (la[:, n:] - lc[:, n:]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------- WorldModel.imitate
def _greedy_reference(wm, demo, query, horizon):
    """Greedy imitation the slow way: a full teacher-forced forward per token, no cache, no plan arguments."""
    tok, tr = wm.tokenizer, wm.transformer
    lay = tr.layout
    from ivideogpt.frames import to_model

    def segment(frames):
        x = to_model(frames)
        ids, fut = tok.tokenize(x, 1)
        return lay.build(ids, fut)

    tokens = torch.cat([segment(demo), segment(query)], 1)
    lo, hi = lay.future_code_range
    gen = []
    for _ in range(horizon):
        tokens = torch.cat([tokens, tokens.new_full((len(tokens), 1), lay.slot_future)], 1)
        ids = []
        for _ in range(lay.future_tokens):
            logits, _ = tr(tokens)
            nxt = logits[:, -1, lo:hi].argmax(-1)
            ids.append(nxt)
            tokens = torch.cat([tokens, (nxt + lo)[:, None]], 1)
        gen.append(torch.stack(ids, 1))
    state = tok.encode_context_state(to_model(query[:, :1]))
    return torch.stack([tok.decode_future(g[:, None], state)[:, 0] for g in gen], 1)


def test_imitate_equals_greedy_decoding_without_cache():
    wm = _wm()
    demo, query = _frames(2, SEG, seed=4), _frames(2, 2, seed=5)
    with torch.no_grad():
        got = wm.imitate(demo, query, SEG - 2, temperature=0.0)
        want = _greedy_reference(wm, demo, query, SEG - 2)
    from ivideogpt.frames import to_uint8

    assert got.shape == (2, SEG - 2, 32, 32, 3) and got.dtype == torch.uint8
    assert (got.int() - to_uint8(want).int()).abs().max() <= 1
    # numpy in, numpy out; a seed makes sampling reproducible; no demo is allowed.
    a = wm.imitate(demo.numpy(), query.numpy(), 2, seed=3)
    assert isinstance(a, np.ndarray) and np.array_equal(a, wm.imitate(demo.numpy(), query.numpy(), 2, seed=3))
    assert wm.imitate(None, query, 2, seed=0).shape == (2, 2, 32, 32, 3)


def test_imitate_rejects_bad_demos_and_queries():
    wm = _wm()
    demo, query = _frames(2, SEG), _frames(2, 2)
    cases = [
        (dict(demo_frames=_frames(2, SEG, res=16)), "demo_frames: expected uint8"),
        (dict(query_frames=_frames(2, 2)[..., :2]), "query_frames: expected uint8"),
        (dict(demo_frames=demo.float()), "dtype uint8"),
        (dict(demo_frames=_frames(3, SEG)), "batch 3 != query_frames batch 2"),
        (dict(query_frames=_frames(2, SEG)), "must fit in one segment"),
        (dict(query_frames=_frames(2, 0)), "must fit in one segment"),
        (dict(demo_frames=_frames(2, 0)), "at least 1 frame"),
        (dict(demo_frames=_frames(2, 2 * SEG)), "trained on sequences of at most"),
        (dict(horizon=0), "horizon"),
    ]
    for change, match in cases:
        kw = {**dict(demo_frames=demo, query_frames=query, horizon=2), **change}
        with pytest.raises((ValueError, TypeError), match=match):
            wm.imitate(**kw)
    acting = conftest.micro_world_model(context_frames=1, max_steps=3, action_dim=2)
    with pytest.raises(ValueError, match="action-free"):
        acting.imitate(_frames(1, 2), _frames(1, 1), 1)


# ------------------------------------------------------------------------------------------ training data
def test_segmented_clips_are_tokenized_per_segment():
    wm = _wm()
    from ivideogpt.frames import to_model

    frames = to_model(_frames(2, 2 * SEG, seed=6))
    ctx, fut = tokenize_clips(wm.tokenizer, frames, segment_frames=SEG)
    assert ctx.shape[:2] == (2, 2) and fut.shape[:3] == (2, 2, SEG - 1)
    for s in range(2):
        c, f = tokenize_clips(wm.tokenizer, frames[:, s * SEG:(s + 1) * SEG])
        assert torch.equal(ctx[:, s], c) and torch.equal(fut[:, s], f)
    # The actions/rewards that lead to future frames: not those into a segment's context frame.
    assert future_slice(1, 2 * SEG, False, SEG).tolist() == [0, 1, 2, 4, 5, 6]
    loss, logs = wm.transformer.loss(wm.transformer.layout.build(ctx, fut))
    assert torch.isfinite(loss) and logs["ce"] > 0


# ------------------------------------------------------------------------------------- behaviour data
def _behaviour_episode(seed, z=None, steps=24):
    env, expert = make("pusher-behaviours", size=64), make_expert("pusher-behaviours", noise=0.1)
    obs, info = env.reset(seed=seed, options=None if z is None else {"behaviour": z})
    expert.reset(seed)
    frames, effectors, infos = [obs], [info["state"][:2]], [info]
    for _ in range(steps - 1):
        obs, _, _, _, info = env.step(expert.act(obs, info))
        frames.append(obs)
        effectors.append(info["state"][:2])
        infos.append(info)
    return np.stack(frames), np.stack(effectors), infos


def test_behaviour_episodes_hold_then_sweep_in_their_direction():
    k, trial, hold = 4, 8, 3
    for z in range(k):
        frames, eff, infos = _behaviour_episode(seed=10 + z, z=z)
        assert all(i["behaviour"] == z and i["labels"]["behaviour"] == z for i in infos)
        for start in range(0, len(frames), trial):
            e = eff[start:start + trial]
            assert ((e[0] >= PLACE_LO) & (e[0] <= PLACE_HI)).all()  # placed anew, whatever z is
            assert np.abs(e[hold] - e[0]).max() < 0.03  # held still (jitter only)
            move = e[-1] - e[hold]
            assert move @ behaviour_directions(k)[z] > 0.1  # then swept in direction z
    assert contrastive(0, 4) == 2 and contrastive(3, 4) == 1


def test_trials_start_from_home_clear_of_the_blocks():
    for spread in (0.0, 0.05, 0.2):
        env = make("pusher-behaviours", start_spread=spread)
        for seed in range(10):
            _, info = env.reset(seed=seed)
            e = info["state"][:2]
            assert np.abs(e - 0.5).max() <= spread + 1e-6
            if spread <= 0.1:  # the home area is kept clear: the effector never starts inside a block
                blocks = info["state"][2:-2].reshape(-1, 2)
                assert (np.linalg.norm(blocks - e, axis=1) > info["block_radii"] + info["effector_radius"]).all()
    with pytest.raises(Exception, match="start_spread"):
        make("pusher-behaviours", start_spread=0.3)


def test_behaviour_is_drawn_per_episode_and_hidden_from_the_start():
    zs, starts = [], []
    for seed in range(40):
        _, eff, infos = _behaviour_episode(seed, steps=2)
        zs.append(infos[0]["behaviour"])
        starts.append(eff[0])
    zs, starts = np.array(zs), np.array(starts)
    assert set(zs.tolist()) == {0, 1, 2, 3}
    # The start position does not give the behaviour away: the classifier reads nothing from still frames.
    assert ((starts >= PLACE_LO) & (starts <= PLACE_HI)).all()


def test_classifier_reads_behaviours_off_real_frames():
    clf = BehaviourClassifier(4)
    got, want = [], []
    for seed in range(8):
        frames, _, infos = _behaviour_episode(seed, steps=16)
        for start in (0, 8):
            got.append(int(clf(frames[start + 3], frames[start + 4:start + 8])))
            want.append(infos[0]["behaviour"])
            # Held frames show no behaviour.
            assert clf.is_still(clf.displacement(frames[start], frames[start + 1:start + 4]))
    assert got == want


# --------------------------------------------------------------------------------------- the command
def _run(*args):
    return subprocess.run([sys.executable, "-m", "ivideogpt.cli", *args], capture_output=True, text=True, timeout=300)


def test_imitate_command_writes_a_gif_and_refuses_bad_input(tmp_path):
    data = tmp_path / "data"
    r = _run("collect", "--env", "pusher-behaviours", "--episodes", "3", "--steps", "16", "--size", "32",
             "--out", str(data), "--no-progress")
    assert r.returncode == 0, r.stderr
    from ivideogpt.data import EpisodeDataset

    ds = EpisodeDataset(data)
    assert {"behaviour", "behaviours", "trial_steps", "hold_steps"} <= set(ds.episode_info(0))
    model = tmp_path / "model"
    _wm().save_pretrained(model)
    out = tmp_path / "imitate.gif"
    r = _run("imitate", "--model", str(model), "--demo", f"{data}:0", "--demo", f"{data}:1:8", "--query",
             f"{data}:2:8", "--query-frames", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert [d["demo_behaviour"] for d in report["demos"]] == [ds.episode_info(0)["behaviour"],
                                                              ds.episode_info(1)["behaviour"]]
    import imageio.v2 as imageio

    gif = imageio.mimread(out)
    assert len(gif) == SEG  # query (2) + generated (2) frames
    # The replay column is the simulator restored at the query's start, then stepped with the demo's actions.
    from ivideogpt.eval.imitation import EpisodeSpan, replay_from

    actions = ds.episode(1)["actions"][8:11]
    replay, why = replay_from(EpisodeSpan(str(data), 2, 8), actions)
    assert why is None and replay.shape == (4, 32, 32, 3) and np.array_equal(replay[0], ds.frames(2, 8, 9)[0])
    before = out.read_bytes()
    r = _run("imitate", "--model", str(model), "--demo", f"{data}:0", "--query", f"{data}:2:15", "--query-frames",
             "2", "--out", str(out))
    assert r.returncode == 2 and "frames 15 .. 16 were asked for" in r.stderr
    assert out.read_bytes() == before  # nothing written
    r = _run("imitate", "--model", str(model), "--demo", f"{data}:9", "--query", f"{data}:2", "--out", str(out))
    assert r.returncode == 2 and "has 3 episodes" in r.stderr
    # Wrong resolution, and a demo longer than the model was trained on: one line each, exit 2.
    small = tmp_path / "small"
    assert _run("collect", "--env", "pusher-behaviours", "--episodes", "1", "--steps", "16", "--size", "16",
                "--out", str(small), "--no-progress").returncode == 0
    r = _run("imitate", "--model", str(model), "--demo", f"{small}:0", "--query", f"{data}:2", "--out", str(out))
    assert r.returncode == 2 and "demo_frames: expected uint8 [B, T, H, W, 3] with H = W = 32" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run("imitate", "--model", str(model), "--demo", f"{data}:0", "--demo-frames", "12", "--query", f"{data}:2",
             "--query-frames", "2", "--out", str(out))
    assert r.returncode == 2 and "trained on sequences of at most" in r.stderr
    assert out.read_bytes() == before
