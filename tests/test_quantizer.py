import math

import pytest
import torch

from ivideogpt.tokenizer.quantizer import FSQuantizer, VectorQuantizer


def test_vq_nearest_matches_brute_force_and_ids_in_range():
    torch.manual_seed(0)
    q = VectorQuantizer(300, 8)
    q.embedding.weight.data.normal_()
    z = torch.randn(1000, 8)
    ids = q.nearest(z)
    assert ids.min() >= 0 and ids.max() < 300
    assert torch.equal(ids, torch.cdist(z, q.embedding.weight).argmin(1))


def test_vq_chunked_search_matches_one_shot(monkeypatch):
    import ivideogpt.tokenizer.quantizer as mod

    torch.manual_seed(1)
    q = VectorQuantizer(64, 4)
    q.embedding.weight.data.normal_()
    z = torch.randn(500, 4)
    full = q.nearest(z)
    monkeypatch.setattr(mod, "_MAX_DIST_ELEMENTS", 64 * 7)  # 7 rows per chunk
    assert torch.equal(q.nearest(z), full)


def test_vq_straight_through_gradient_and_commitment():
    torch.manual_seed(0)
    q = VectorQuantizer(32, 4).eval()
    q.embedding.weight.data.normal_()
    z = torch.randn(2, 5, 4, requires_grad=True)
    out = q(z)
    assert out.ids.shape == (2, 5)
    assert torch.allclose(out.z_q, q.embedding.weight[out.ids])  # forward value = the code
    (out.z_q * torch.arange(4.0)).sum().backward()
    assert torch.allclose(z.grad, torch.arange(4.0).expand(2, 5, 4))  # backward = identity
    expected = 2 * ((z.detach() - q.embedding.weight[out.ids].detach()) ** 2).mean()  # beta = 1
    assert torch.allclose(out.loss, expected)
    # the codebook term moves codes toward the encoder outputs
    q.embedding.weight.grad = None
    q(z.detach()).loss.backward()
    assert q.embedding.weight.grad.abs().sum() > 0


def test_vq_dead_code_restart_reseeds_forced_dead_code():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 2, dead_code_steps=3).train()
    q.embedding.weight.data = torch.randn(8, 2) * 0.1
    q.embedding.weight.data[5] = torch.tensor([1e3, 1e3])  # never the nearest code: dead
    data = torch.randn(256, 2) * 0.1 + torch.tensor([2.0, -1.0])
    for _ in range(2):
        q(data)
    assert q.embedding.weight[5, 0].item() == pytest.approx(1e3)  # not yet: idle for 2 < 3 steps
    out = q(data)
    w5 = q.embedding.weight[5]
    assert (w5 - torch.tensor([2.0, -1.0])).norm() < 1.0  # re-seeded from the encoder outputs
    assert out.dead_fraction >= 0  # fraction reported
    # after the restart, the re-seeded codes get used
    for _ in range(3):
        out = q(data)
    assert len(torch.unique(out.ids)) > 2


def test_vq_usage_stats():
    q = VectorQuantizer(4, 2, dead_code_steps=0).train()
    q.embedding.weight.data = torch.eye(4, 2) * 0 + torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    z = q.embedding.weight.data.repeat(25, 1)  # every code equally often
    out = q(z)
    assert out.perplexity == pytest.approx(4.0, rel=1e-4)
    out = q(z[:1].repeat(100, 1))  # one code
    assert out.perplexity == pytest.approx(1.0, rel=1e-4)


def test_fsq_ids_in_range_lookup_roundtrip_and_gradient():
    torch.manual_seed(0)
    levels = [8, 5, 5, 5]
    q = FSQuantizer(levels).eval()
    assert q.vocab_size == math.prod(levels)
    z = (torch.randn(3, 50, 4) * 3).requires_grad_()
    out = q(z)
    assert out.ids.min() >= 0 and out.ids.max() < q.vocab_size
    assert torch.allclose(q.lookup(out.ids), out.z_q)
    # all codes reachable: a dense grid covers the whole vocabulary
    grid = torch.cartesian_prod(*[torch.linspace(-4, 4, 25)] * 4)
    assert len(torch.unique(q(grid).ids)) == q.vocab_size
    out.z_q.sum().backward()
    assert z.grad.abs().sum() > 0
