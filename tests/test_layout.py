import numpy as np
import pytest
import torch

from ivideogpt.transformer import SequenceLayout

# Small, deliberately unequal numbers so that a swapped argument shows up.
N, n, T0, VC, VF = 5, 3, 2, 11, 7


def _layout():
    return SequenceLayout(N, n, T0, VC, VF)


def _ids(B, T, g=0):
    gen = torch.Generator().manual_seed(g)
    ctx = torch.randint(0, VC, (B, T0, N), generator=gen)
    fut = torch.randint(0, VF, (B, T - T0, n), generator=gen)
    return ctx, fut


def test_length_formula_paper_numbers():
    # Paper: N=256, n=16, T0=2, 16 frames -> 751 tokens; we keep the leading [S1] -> 752.
    paper = SequenceLayout(256, 16, 2, 8192, 8192)
    assert paper.length(16) == 751 + 1
    assert paper.vocab_size == 16386
    assert paper.slot_context == 16384 and paper.slot_future == 16385
    assert paper.future_code_range == (8192, 16384)
    lay = _layout()
    for T in range(T0, 9):
        assert lay.length(T) == (N + 1) * T0 + (n + 1) * (T - T0)
        assert lay.num_frames(lay.length(T)) == T
    with pytest.raises(ValueError):
        lay.length(T0 - 1)
    with pytest.raises(ValueError):
        lay.num_frames(lay.length(4) + 1)


def test_build_split_round_trip_and_token_ranges():
    lay = _layout()
    ctx, fut = _ids(3, 6)
    tokens = lay.build(ctx, fut)
    assert tokens.shape == (3, lay.length(6))
    c2, f2 = lay.split(tokens)
    assert torch.equal(c2, ctx) and torch.equal(f2, fut)
    # Exactly one [S1] per context frame, one [S2] per future frame, at frame starts.
    s1 = (tokens == lay.slot_context).nonzero()[:, 1].view(3, -1)[0]
    s2 = (tokens == lay.slot_future).nonzero()[:, 1].view(3, -1)[0]
    assert s1.tolist() == [t * (N + 1) for t in range(T0)]
    assert s2.tolist() == lay.action_positions(6).tolist()
    lo, hi = lay.future_code_range
    body = tokens[:, lay.context_length :].reshape(3, -1, n + 1)[:, :, 1:]
    assert ((body >= lo) & (body < hi)).all()
    assert (tokens[:, : lay.context_length].reshape(3, T0, N + 1)[:, :, 1:] < VC).all()
    # No future frames: just the context part.
    assert lay.build(ctx, fut[:, :0]).shape == (3, lay.context_length)
    with pytest.raises(ValueError):
        lay.build(ctx[:, :1], fut)
    with pytest.raises(ValueError):
        lay.build(ctx, fut[:, :, :2])


def test_target_mask_marks_exactly_the_future_codes():
    lay = _layout()
    T = 6
    ctx, fut = _ids(2, T)
    tokens = lay.build(ctx, fut)[0]
    mask = lay.target_mask(T)
    assert mask.dtype == torch.bool and mask.shape == (lay.length(T),)
    assert int(mask.sum()) == (T - T0) * n
    lo, hi = lay.future_code_range
    is_future_code = (tokens >= lo) & (tokens < hi)
    # mask[i] <=> token i+1 is a future code; the last position never predicts anything.
    assert torch.equal(mask[:-1], is_future_code[1:])
    assert not mask[-1]


def test_action_and_reward_positions():
    lay = _layout()
    T = 7
    ctx, fut = _ids(2, T)
    tokens = lay.build(ctx, fut)
    a = lay.action_positions(T)
    r = lay.reward_positions(T)
    assert len(a) == len(r) == T - T0
    assert (tokens[:, a] == lay.slot_future).all()
    # The reward position holds the last code of its frame: the next token is the next [S2] (or the end).
    assert torch.equal(tokens[:, r] - VC, fut[:, :, -1])
    assert torch.equal(r[:-1] + 1, a[1:]) and int(r[-1]) == lay.length(T) - 1
    assert lay.slot_mask(0, lay.length(T)).nonzero().squeeze(-1).tolist() == a.tolist()
    assert [lay.future_frame_at(int(p)) for p in a] == list(range(T - T0))
    with pytest.raises(ValueError):
        lay.future_frame_at(int(a[1]) + 1)


def test_goal_reorder():
    frames = torch.arange(2 * 5 * 3).view(2, 5, 3)
    out = SequenceLayout.goal_reorder(frames)
    assert torch.equal(out[:, 0], frames[:, -1])
    assert torch.equal(out[:, 1:], frames[:, :-1])
    arr = np.arange(2 * 4 * 2 * 2 * 3).reshape(2, 4, 2, 2, 3)
    out = SequenceLayout.goal_reorder(arr)
    assert [np.array_equal(out[:, i], arr[:, j]) for i, j in [(0, 3), (1, 0), (2, 1), (3, 2)]] == [True] * 4


def test_spatial_coords_share_one_frame_across_grids():
    """An 8x8 context grid and a 4x4 future grid: a future cell's centre is the mean of the four context cells it
    covers; slots are invalid; the goal-conditioned extra context frame gets the same coordinates."""
    lay = SequenceLayout(64, 16, 2, 10, 10)
    xy, valid = lay.spatial_coords(0, lay.length(4))
    assert valid.sum() == 2 * 64 + 2 * 16 and not valid[0] and not valid[65] and not valid[lay.context_length]
    ctx = xy[1:65].reshape(8, 8, 2)
    assert torch.equal(ctx, xy[66:130].reshape(8, 8, 2))
    fut = xy[lay.context_length + 1: lay.context_length + 17].reshape(4, 4, 2)
    pooled = ctx.reshape(4, 2, 4, 2, 2).mean((1, 3))
    assert torch.allclose(fut, pooled)
    assert torch.equal(fut[0, 1], torch.tensor([0.375, 0.125]))  # x = column, y = row
    with pytest.raises(ValueError, match="square"):
        SequenceLayout(60, 16, 1, 10, 10).spatial_coords(0, 10)
