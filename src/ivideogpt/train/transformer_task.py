"""The transformer (world-model) stage for the training engine.

With a frozen tokenizer every training clip is tokenized once, up front, and the token ids are cached in the
run directory (``token_cache.pt``); training then never touches pixels. With ``freeze_tokenizer: false`` the
tokenizer is fine-tuned jointly (its reconstruction losses are added) and clips are tokenized on the fly.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checkpoint import load_pretrained_dir
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_bytes
from .config import TrainConfig


def tokenize_clips(tok, frames: torch.Tensor, goal_conditioned: bool = False, segment_frames: int = 0):
    """float clips [B,T,3,H,W] -> (ctx_ids [B,T0(+1),N], fut_ids [B,F,n]).

    Goal-conditioned: the last frame is the goal, encoded as one more context frame in front; the future
    frames are the ones between the real context and the goal. ``segment_frames`` > 0: the clip is cut into
    S = T / segment_frames segments, each tokenized against its own context -> ``[B,S,T0,N]``, ``[B,S,F,n]``.
    """
    if segment_frames:
        B, T = frames.shape[:2]
        if goal_conditioned or T % segment_frames:
            raise ConfigError(f"segmented clips: clip_len ({T}) must be a multiple of segment_frames "
                              f"({segment_frames}), without goal conditioning")
        ctx_ids, fut = tokenize_clips(tok, frames.reshape(B * (T // segment_frames), segment_frames, *frames.shape[2:]))
        return ctx_ids.reshape(B, T // segment_frames, *ctx_ids.shape[1:]), fut.reshape(B, T // segment_frames,
                                                                                        *fut.shape[1:])
    t0 = tok.context_frames
    real = frames[:, :-1] if goal_conditioned else frames
    ctx = tok.encode_context_state(real[:, :t0])
    fut = tok.encode_future(real[:, t0:], ctx)
    ctx_ids = ctx.ids
    if goal_conditioned:
        ctx_ids = torch.cat([tok.encode_context(frames[:, -1:]), ctx_ids], dim=1)
    return ctx_ids, fut


def future_slice(t0: int, clip_len: int, goal_conditioned: bool, segment_frames: int = 0):
    """Which of a clip's T-1 actions/rewards lead to its future frames (action t follows frame t): a slice, or
    with segments an index tensor (those leading into a segment's context frames are left out)."""
    if segment_frames:
        return torch.cat([torch.arange(s + t0 - 1, s + segment_frames - 1) for s in range(0, clip_len, segment_frames)])
    last = clip_len - 1 - (1 if goal_conditioned else 0)
    return slice(t0 - 1, last)


class TokenCache(Dataset):
    """Token ids of every training clip (start stride ``stride``), computed once with the frozen tokenizer.

    Item k is a pure function of (seed, k), like :class:`ClipDataset`: resume stays exact.
    """

    def __init__(self, tensors: dict, seed: int):
        self.t, self.seed = tensors, seed
        self.source_index = [torch.nonzero(tensors["source"] == s).flatten() for s in range(len(tensors["probs"]))]
        self.probs = tensors["probs"].double().numpy()

    def __len__(self):
        return 10**9

    def __getitem__(self, k):
        rng = np.random.default_rng([self.seed, k])
        src = int(rng.choice(len(self.probs), p=self.probs))
        idx = self.source_index[src]
        i = int(idx[rng.integers(len(idx))])
        return {"ctx_ids": self.t["ctx_ids"][i].long(), "fut_ids": self.t["fut_ids"][i].long(),
                "actions": self.t["actions"][i], "rewards": self.t["rewards"][i]}

    @staticmethod
    @torch.no_grad()
    def build(tok, clips, *, goal_conditioned: bool, stride: int, batch_size: int = 64, progress=True,
              segment_frames: int = 0) -> dict:
        from tqdm import tqdm

        items = []
        for src, (s, ds, eps) in enumerate(zip(clips.sources, clips.datasets, clips.eligible)):
            span = (clips.clip_len - 1) * s.frame_step + 1
            for ep in eps.tolist():
                items += [(src, ep, st) for st in range(0, ds.length(ep) - span + 1, stride)]
        sl = future_slice(tok.context_frames, clips.clip_len, goal_conditioned, segment_frames)
        out = {k: [] for k in ("ctx_ids", "fut_ids", "actions", "rewards", "source")}
        dev = next(tok.parameters()).device
        for b in tqdm(range(0, len(items), batch_size), desc="tokenizing clips (cached once)", disable=not progress,
                      dynamic_ncols=True):
            chunk = [clips.read(*item) for item in items[b:b + batch_size]]  # never augmented (no rng)
            ctx_ids, fut_ids = tokenize_clips(tok, torch.stack([c["frames"] for c in chunk]).to(dev),
                                              goal_conditioned, segment_frames)
            out["ctx_ids"].append(ctx_ids.cpu().to(torch.int32))
            out["fut_ids"].append(fut_ids.cpu().to(torch.int32))
            out["actions"].append(torch.stack([c["actions"][sl] for c in chunk]))
            out["rewards"].append(torch.stack([c["rewards"][sl] for c in chunk]))
            out["source"].append(torch.tensor([c["source"] for c in chunk]))
        t = {k: torch.cat(v) for k, v in out.items()}
        t["probs"] = torch.tensor(clips.probs, dtype=torch.float64)
        return t


class TransformerTrainModule(torch.nn.Module):
    """forward(batch, step) -> (loss, logs). Holds the whole world model; what trains depends on the flags."""

    def __init__(self, wm, cfg: TrainConfig, perceptual=None):
        super().__init__()
        self.wm, self.cfg, self.perceptual = wm, cfg, perceptual

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.freeze_tokenizer:
            # Frozen means frozen: in training mode its VQ quantizers would count usage and restart dead codes
            # while tokenizing clips on the fly (cache_tokens: false), changing the codebook.
            self.wm.tokenizer.eval()
        return self

    def forward(self, batch, step: int):
        cfg, wm = self.cfg, self.wm
        layout = wm.transformer.config.layout
        seg = wm.transformer.config.segment_frames
        logs: dict = {}
        loss = 0.0
        if "ctx_ids" in batch:
            ctx_ids, fut_ids = batch["ctx_ids"], batch["fut_ids"]
            actions, rewards = batch["actions"], batch["rewards"]
        else:
            frames = batch["frames"]
            if not cfg.freeze_tokenizer:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                tl, tlogs, _ = wm.tokenizer.training_losses(
                    frames[:, :-1] if cfg.goal_conditioned else frames, n_context=wm.tokenizer.context_frames,
                    n_future=cfg.n_future, perceptual=self.perceptual, generator=gen)
                loss = loss + tl
                logs.update({f"tok_{k}": v for k, v in tlogs.items()})
            with torch.no_grad():
                ctx_ids, fut_ids = tokenize_clips(wm.tokenizer, frames, cfg.goal_conditioned, seg)
            sl = future_slice(wm.tokenizer.context_frames, frames.shape[1], cfg.goal_conditioned, seg)
            actions, rewards = batch["actions"][:, sl], batch["rewards"][:, sl]
        tokens = layout.build(ctx_ids, fut_ids)
        if not cfg.freeze_transformer:
            tloss, tlogs = wm.transformer.loss(
                tokens, actions if wm.action_dim > 0 else None,
                rewards if wm.transformer.config.use_reward else None, reward_weight=cfg.reward_weight)
            loss = loss + tloss
            logs.update(tlogs)
        return loss, logs


class TransformerTask:
    name = "transformer"

    def __init__(self, model_config: dict, cfg: TrainConfig, sources, *, tokenizer: str | None,
                 init: str | None = None, out: str | Path | None = None, progress: bool = True):
        if tokenizer is None and init is None:
            raise ConfigError("train transformer needs --tokenizer RUN (or --init a pre-trained world model)")
        self.model_config, self.cfg, self.sources = model_config, cfg, sources
        self.tokenizer_path, self.init, self.out, self.progress = tokenizer, init, Path(out) if out else None, progress
        self._module = None

    # ------------------------------------------------------------------------------------- model
    def trainable(self):
        if self._module is not None:
            return self._module
        from ..config import from_dict
        from ..data.clips import dataset_stats
        from ..tokenizer import Tokenizer
        from ..transformer import Transformer, TransformerConfig
        from ..world_model import WorldModel, sequence_fields

        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # the same seed gives the same initial weights, run after run
        base = WorldModel.from_pretrained(self.init) if self.init else None
        tok = base.tokenizer if base is not None and self.tokenizer_path is None else \
            Tokenizer.from_pretrained(self.tokenizer_path)
        stats = dataset_stats(self.sources)
        mc = dict(self.model_config)
        mc.update(sequence_fields(tok))
        if cfg.goal_conditioned:
            mc["context_frames"] = tok.context_frames + 1
        # A goal-conditioned clip of T frames is still T frames in the sequence (goal in front, not at the end).
        mc["max_frames"] = max(int(mc.get("max_frames", 0)), cfg.clip_len)
        seg = int(mc.get("segment_frames", 0))
        if seg and (cfg.clip_len % seg or cfg.goal_conditioned):
            raise ConfigError(f"model.segment_frames = {seg}: train.clip_len ({cfg.clip_len}) must be a multiple of "
                              "it, and goal conditioning is not supported with segments")
        if cfg.use_actions:
            mc["action_dim"] = len(stats["action_mean"])
            mc["action_mean"] = [float(v) for v in stats["action_mean"]]
            mc["action_std"] = [float(v) for v in stats["action_std"]]
            if cfg.action_norm == "per_source":  # the clips arrive normalised per dataset
                mc["action_mean"], mc["action_std"] = [0.0] * mc["action_dim"], [1.0] * mc["action_dim"]
        else:
            mc.update(action_dim=0, action_mean=[], action_std=[])
        mc["use_reward"] = bool(cfg.use_rewards)
        tcfg = from_dict(TransformerConfig, mc, where="transformer model config")
        transformer = Transformer(tcfg)
        if base is not None:
            self._load_init(transformer, base.transformer)
        wm = WorldModel(tok, transformer, goal_conditioned=cfg.goal_conditioned)
        for p in wm.tokenizer.parameters():
            p.requires_grad_(not cfg.freeze_tokenizer)
        for p in wm.transformer.parameters():
            p.requires_grad_(not cfg.freeze_transformer)
        if cfg.freeze_tokenizer and cfg.freeze_transformer:
            raise ConfigError("both the tokenizer and the transformer are frozen: nothing to train")
        perceptual = None
        if not cfg.freeze_tokenizer and getattr(tok.config, "perceptual_weight", 0) > 0:
            from ..eval.stlpips import STLPIPS

            perceptual = STLPIPS()
        self._module = TransformerTrainModule(wm, cfg, perceptual)
        return self._module

    @staticmethod
    def _load_init(transformer, pretrained) -> None:
        """Fine-tuning: copy matching weights; heads the pre-trained model lacks (an action-free model gets
        actions) keep their fresh (zero) init — that is the paper's action-free -> action-conditioned path."""
        src = pretrained.state_dict()
        dst = transformer.state_dict()
        bad = [k for k in dst if k in src and src[k].shape != dst[k].shape]
        if bad:
            raise CheckpointError(f"--init: pre-trained transformer does not match the new one at {bad[:3]}")
        missing = [k for k in dst if k not in src]
        allowed = [k for k in missing if k.startswith(("action", "reward"))]
        if set(missing) - set(allowed):
            raise CheckpointError(f"--init: pre-trained transformer lacks {sorted(set(missing) - set(allowed))[:3]}")
        transformer.load_state_dict({**dst, **{k: v for k, v in src.items() if k in dst}})

    def save_model(self, module, path: Path):
        module.wm.write_into(path)

    def load_model(self, module, path: Path):
        from ..checkpoint import load_state_dict_strict

        _, tstate = load_pretrained_dir(path, "transformer")
        load_state_dict_strict(module.wm.transformer, tstate, str(path / "transformer"))
        _, kstate = load_pretrained_dir(path, "tokenizer")
        load_state_dict_strict(module.wm.tokenizer, kstate, str(path / "tokenizer"))

    # -------------------------------------------------------------------------------------- data
    def _clips(self, split: str):
        from ..data.clips import ClipDataset

        tok = self.trainable().wm.tokenizer
        return ClipDataset(self.sources, self.cfg.clip_len, split=split, resolution=tok.config.resolution,
                           seed=self.cfg.seed, action_norm=self.cfg.action_norm)

    def train_dataset(self):
        cfg = self.cfg
        if not (cfg.freeze_tokenizer and cfg.cache_tokens):
            return self._clips("train")
        tok = self.trainable().wm.tokenizer
        clips = self._clips("train")
        key = self._cache_key(tok, clips)
        path = self.out / "token_cache.pt" if self.out else None
        if path is not None and path.exists():
            t = torch.load(path, map_location="cpu", weights_only=True)
            if t.get("key") == key:
                return TokenCache(t["tensors"], cfg.seed)
        t0 = time.time()
        tensors = TokenCache.build(tok.eval(), clips, goal_conditioned=cfg.goal_conditioned,
                                   stride=cfg.token_cache_stride, progress=self.progress,
                                   segment_frames=self.trainable().wm.transformer.config.segment_frames)
        self.cache_seconds = time.time() - t0
        if path is not None:
            import io

            buf = io.BytesIO()
            torch.save({"key": key, "tensors": tensors}, buf)
            atomic_write_bytes(path, buf.getvalue())
        return TokenCache(tensors, cfg.seed)

    def _cache_key(self, tok, clips) -> str:
        # Every byte of every tokenizer tensor: a fine-tuned tokenizer that differs anywhere must not reuse ids.
        h = hashlib.sha256()
        for k, v in sorted(tok.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
        h.update(repr([(str(d.path), d.meta["num_episodes"], s.frame_step) for d, s in
                       zip(clips.datasets, clips.sources)]).encode())
        h.update(repr((clips.clip_len, self.cfg.goal_conditioned, self.cfg.token_cache_stride)).encode())
        seg = self.trainable().wm.transformer.config.segment_frames
        if seg:  # (kept out of the key when 0, so existing caches stay valid)
            h.update(f"segments {seg}".encode())
        if self.cfg.action_norm != "raw":  # (kept out of the key when raw, so existing caches stay valid)
            h.update(self.cfg.action_norm.encode())
        return h.hexdigest()

    def val_dataset(self):
        ds = self._clips("val")
        return ds if len(ds) > 0 else None

    # -------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, module, batches):
        from ..eval.prediction import predict_clips, rollout_strip, summarize
        from ..frames import to_uint8

        wm = module.wm.eval()
        cfg = self.cfg
        seg = wm.transformer.config.segment_frames
        ce = acc = 0.0
        results = []
        for i, b in enumerate(batches):
            frames = b["frames"]
            ctx_ids, fut_ids = tokenize_clips(wm.tokenizer, frames, cfg.goal_conditioned, seg)
            sl = future_slice(wm.tokenizer.context_frames, frames.shape[1], cfg.goal_conditioned, seg)
            tokens = wm.transformer.config.layout.build(ctx_ids, fut_ids)
            _, tlogs = wm.transformer.loss(tokens, b["actions"][:, sl] if wm.action_dim else None,
                                           b["rewards"][:, sl] if wm.transformer.config.use_reward else None)
            ce += tlogs["ce"] / len(batches)
            acc += tlogs.get("accuracy", 0.0) / len(batches)
            if not cfg.goal_conditioned and i < 2:
                # A segmented model rolls out within one segment (its first).
                n = seg or frames.shape[1]
                results.append(predict_clips(wm, to_uint8(frames[:, :n]), b["actions"][:, :n - 1],
                                             b["rewards"][:, :n - 1], seed=i))
        logs = {"val_ce": ce, "val_accuracy": acc}
        image = None
        if results:
            s = summarize(results)
            logs["psnr_model"] = s["psnr_model"]["mean"]
            logs["psnr_copy_last"] = s["psnr_copy_last"]["mean"]
            if "psnr_shuffled" in s:
                # The action-ignoring failure mode: this gap is ~0 when actions are ignored.
                logs["psnr_shuffled"] = s["psnr_shuffled"]["mean"]
                logs["action_gap_db"] = s["psnr_model"]["second_half"] - s["psnr_shuffled"]["second_half"]
            if "reward_mae" in s:
                logs["reward_mae"] = s["reward_mae"]
            fut = torch.cat([r["pred"].reshape(-1) for r in results])
            logs["pred_pixel_std"] = float(fut.float().std())
            image = rollout_strip(results[0])
        wm.train()
        return logs, image
