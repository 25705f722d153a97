"""Import the reference implementation's released checkpoints (thuml/iVideoGPT on the Hugging Face hub).

A release is a directory with ``tokenizer/config.json`` + ``tokenizer/diffusion_pytorch_model.safetensors``
(diffusers ``CompressiveVQModel``) and ``transformer/config.json`` + ``transformer/model.safetensors`` (a
``LlamaForCausalLM``, or for action-conditioned releases the ``HeadModelWithAction`` wrapper: ``llm.*`` +
``action_linear``). Our ``paper-*`` modules keep the reference's parameter names, so converting is reading
the configs into ours plus a prefix rename; what the reference computes differently is switched on in the
configs (``pixels: unit``, ``first_slot: false``) and the actions are recorded as raw (identity statistics),
as the reference feeds them. Proven equal to the reference code by tests/test_reference_convert.py.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..config import PRESET_ROOT, from_dict
from ..errors import CheckpointError, ConfigError

TOKENIZER_CONFIG = "tokenizer/config.json"
TOKENIZER_WEIGHTS = "tokenizer/diffusion_pytorch_model.safetensors"
TRANSFORMER_CONFIG = "transformer/config.json"
TRANSFORMER_WEIGHTS = "transformer/model.safetensors"
RELEASE_FILES = (TOKENIZER_CONFIG, TOKENIZER_WEIGHTS, TRANSFORMER_CONFIG, TRANSFORMER_WEIGHTS)
# The tokenizer config of the released checkpoints names "VQModel" (copied from a diffusers config); the code
# that loads them is CompressiveVQModel.
TOKENIZER_CLASSES = ("CompressiveVQModel", "VQModel")
RELEASES_FILE = PRESET_ROOT / "reference-releases.yaml"

# CompressiveVQModel.__init__ defaults: a release's config.json omits keys left at these.
_TOKENIZER_DEFAULTS = {
    "in_channels": 3, "out_channels": 3, "block_out_channels": [64], "layers_per_block": 1, "act_fn": "silu",
    "latent_channels": 3, "num_vq_embeddings": 256, "norm_num_groups": 32, "vq_embed_dim": None,
    "norm_type": "group", "mid_block_add_attention": True, "num_dyn_embeddings": 256, "context_length": 1,
    "max_att_resolution": 32, "resolution": 256, "patch_size": 4,
    "down_block_types": ["DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D"],
}


@dataclass
class Release:
    """What a release directory holds, read and checked (weights still in the reference's names)."""

    path: Path
    tokenizer_config: dict  # ours (TokenizerConfig fields)
    transformer_config: dict  # ours (TransformerConfig fields)
    tokenizer_state: dict[str, torch.Tensor]
    transformer_state: dict[str, torch.Tensor]
    name: str | None  # the hub release it matches (reference-releases.yaml), if any
    note: str | None = None  # what was assumed, said once the release has loaded


def is_release(path) -> bool:
    """A directory laid out like a reference release (its tokenizer in diffusers format)."""
    p = Path(path)
    if (p / "config.json").is_file():
        return False  # our model directories (and run checkpoints) have a top-level config.json; releases do not
    if (p / TOKENIZER_WEIGHTS).is_file():
        return True
    try:
        return "_class_name" in json.loads((p / TOKENIZER_CONFIG).read_text())
    except (OSError, ValueError):
        return False


def known_releases() -> dict[str, dict]:
    return yaml.safe_load(RELEASES_FILE.read_text())["releases"]


def _match_release(path: Path, hub_id: str | None) -> str | None:
    """The known release a directory is a copy of: by hub id, or by a path part naming it (a plain copy
    ``.../ivideogpt-bair-64-act-cond``, or the hub cache ``models--thuml--ivideogpt-bair-64-act-cond/...``)."""
    names = known_releases()
    if hub_id in names:
        return hub_id
    for part in reversed(path.resolve().parts):
        for name in names:
            short = name.split("/")[-1]
            if part == short or part == "models--" + name.replace("/", "--"):
                return name
    return None


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected the {what} of a reference release")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); expected the {what} of a reference release") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object (the {what}), got {type(data).__name__}")
    return data


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected the safetensors weights of a reference release")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def tokenizer_config_from(cfg: dict, where: str) -> dict:
    """A CompressiveVQModel config.json -> our TokenizerConfig fields."""
    name = cfg.get("_class_name")
    if name not in TOKENIZER_CLASSES:
        raise CheckpointError(f"{where}: _class_name is {name!r}; expected one of {list(TOKENIZER_CLASSES)} "
                              "(the reference's CompressiveVQModel)")
    c = {**_TOKENIZER_DEFAULTS, **cfg}
    if "num_dyn_embeddings" not in cfg:
        raise CheckpointError(f"{where}: no num_dyn_embeddings; expected a CompressiveVQModel config (context and "
                              "dynamics codebooks), got a plain VQModel")
    n = len(c["block_out_channels"])
    want = {"in_channels": 3, "out_channels": 3, "act_fn": "silu", "norm_type": "group",
            "down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n}
    for key, value in want.items():
        got = list(c[key]) if isinstance(value, list) else c[key]
        if got != value:
            raise CheckpointError(f"{where}: {key} is {c[key]!r}; this converter supports {value!r}")
    if c["norm_num_groups"] != 32:
        # The reference's CrossAttentionBlock is built with GroupNorm(32) whatever the config; ours follows the config.
        raise CheckpointError(f"{where}: norm_num_groups is {c['norm_num_groups']}; this converter supports 32 (the "
                              "reference's cross-attention always normalises with 32 groups)")
    latent = c["resolution"] // 2 ** (n - 1)
    if c["max_att_resolution"] < latent:
        # The reference's conditional decoder always cross-attends after its mid block; ours only at <= max res.
        raise CheckpointError(f"{where}: max_att_resolution {c['max_att_resolution']} is below the latent grid "
                              f"{latent}; not supported")
    if latent % c["patch_size"]:
        raise CheckpointError(f"{where}: patch_size {c['patch_size']} does not divide the latent grid {latent}")
    return {
        "resolution": int(c["resolution"]), "stem": "conv", "pixels": "unit",
        "channels": [int(x) for x in c["block_out_channels"]], "layers_per_block": int(c["layers_per_block"]),
        "decoder_layers_per_block": int(c["layers_per_block"]) + 1, "norm_groups": int(c["norm_num_groups"]),
        "embed_dim": int(c["latent_channels"]), "mid_attention": bool(c["mid_block_add_attention"]),
        # CompressiveVQModel builds its conditional encoder/decoder with a mid-block attention whatever the config
        "cond_mid_attention": True, "quantizer": "vq", "codebook_size": int(c["num_vq_embeddings"]),
        "future_codebook_size": int(c["num_dyn_embeddings"]), "codebook_dim": c["vq_embed_dim"],
        "commit_beta": 1.0, "context_frames": int(c["context_length"]),
        "future_grid": latent // int(c["patch_size"]), "cross_attn_max_res": int(c["max_att_resolution"]),
        "cross_attn_heads": 4, "cross_attn_dropout": 0.1,
    }


def transformer_config_from(cfg: dict, where: str, tok: dict, *, vocab: int, action_dim: int, reward: bool,
                            segment_length: int) -> dict:
    """A LlamaConfig config.json (+ what the weights and the tokenizer say) -> our TransformerConfig fields."""
    if cfg.get("model_type") != "llama":
        raise CheckpointError(f"{where}: model_type is {cfg.get('model_type')!r}; expected 'llama' (LlamaForCausalLM)")
    heads = int(cfg.get("num_attention_heads", 32))
    if int(cfg.get("num_key_value_heads") or heads) != heads:
        raise CheckpointError(f"{where}: num_key_value_heads {cfg['num_key_value_heads']} != num_attention_heads "
                              f"{heads}; grouped-query attention is not supported")
    for key, ok in (("hidden_act", "silu"), ("rope_scaling", None), ("attention_bias", False),
                    ("tie_word_embeddings", False)):
        if cfg.get(key, ok) != ok:
            raise CheckpointError(f"{where}: {key} is {cfg[key]!r}; this converter supports {ok!r}")
    latent = tok["resolution"] // 2 ** (len(tok["channels"]) - 1)
    vc, vf = tok["codebook_size"], tok["future_codebook_size"]
    if vocab != vc + vf + 2:
        raise CheckpointError(f"{where}: the transformer's vocabulary is {vocab} tokens; the tokenizer needs "
                              f"{vc} + {vf} + 2 = {vc + vf + 2}")
    return {
        "n_layer": int(cfg.get("num_hidden_layers", 32)), "d_model": int(cfg.get("hidden_size", 4096)),
        "n_head": heads, "d_ff": int(cfg.get("intermediate_size", 11008)),
        "dropout": float(cfg.get("attention_dropout", 0.0)), "rope_theta": float(cfg.get("rope_theta", 10000.0)),
        "rms_norm_eps": float(cfg.get("rms_norm_eps", 1e-6)), "init_std": float(cfg.get("initializer_range", 0.02)),
        "max_frames": segment_length, "context_tokens": latent * latent,
        "future_tokens": tok["future_grid"] ** 2, "context_frames": tok["context_frames"],
        "context_vocab_size": vc, "future_vocab_size": vf, "action_dim": action_dim,
        # The reference feeds actions as they come: record identity statistics so nothing rescales them.
        "action_mean": [0.0] * action_dim, "action_std": [1.0] * action_dim,
        "use_reward": reward, "first_slot": False,
    }


def transformer_state_from(state: dict, where: str) -> dict:
    """HeadModelWithAction (``llm.*`` + heads) or LlamaForCausalLM keys -> ours (the same names without ``llm.``)."""
    wrapped = any(k.startswith("llm.") for k in state)
    out = {}
    for k, v in state.items():
        if k.endswith("rotary_emb.inv_freq"):
            continue  # older transformers saved the rotary table; ours computes it
        if wrapped:
            if k.startswith("llm."):
                k = k[len("llm."):]
            elif k.split(".")[0] not in ("action_linear", "reward_linear"):
                raise CheckpointError(f"{where}: unexpected tensor {k!r}; expected llm.*, action_linear.* or "
                                      "reward_linear.* (HeadModelWithAction)")
        out[k] = v
    if "model.embed_tokens.weight" not in out:
        raise CheckpointError(f"{where}: no model.embed_tokens.weight (nor llm.model.embed_tokens.weight); expected "
                              "a LlamaForCausalLM or HeadModelWithAction state dict")
    return out


def check_state(module: torch.nn.Module, state: dict, where: str, config_file: Path) -> None:
    """Names and shapes exactly as the module built from the release's config expects, else one clear error."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in want if k not in state]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{where}: missing tensor {missing[0]!r} (shape {list(want[missing[0]])}){more}, "
                              f"expected by {config_file}")
    extra = [k for k in state if k not in want]
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor {extra[0]!r}"
                              f"{f' and {len(extra) - 1} more' if len(extra) > 1 else ''}; not in the model "
                              f"{config_file} describes")
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise CheckpointError(f"{where}: tensor {k!r} has shape {list(state[k].shape)}, expected {list(shape)} "
                                  f"(from {config_file})")


def read_release(src, *, segment_length: int | None = None, hub_id: str | None = None,
                 tokenizer_weights: bool = True) -> Release:
    """Read and check a release directory; ``segment_length`` overrides what the release table says.
    ``tokenizer_weights=False`` reads only the tokenizer's config (for :func:`load_transformer`)."""
    p = Path(src)
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such directory; expected a reference release (a local copy of e.g. "
                              "thuml/ivideogpt-oxe-64-act-free, or a hub id)")
    if not is_release(p) and not (not tokenizer_weights and (p / TOKENIZER_CONFIG).is_file()):
        raise CheckpointError(f"{p}: not a reference release: expected {TOKENIZER_CONFIG} and {TOKENIZER_WEIGHTS}, "
                              f"{TRANSFORMER_CONFIG} and {TRANSFORMER_WEIGHTS}")
    tok_cfg = tokenizer_config_from(_read_json(p / TOKENIZER_CONFIG, "tokenizer config"), str(p / TOKENIZER_CONFIG))
    tr_json = _read_json(p / TRANSFORMER_CONFIG, "transformer config")
    tok_state = _read_weights(p / TOKENIZER_WEIGHTS) if tokenizer_weights else {}
    tr_state = transformer_state_from(_read_weights(p / TRANSFORMER_WEIGHTS), str(p / TRANSFORMER_WEIGHTS))
    name = _match_release(p, hub_id)
    note = None
    if segment_length is None and name:
        segment_length = known_releases()[name]["segment_length"]
    if segment_length is None:
        # Only sizes the KV cache (how many frames one reset rolls out); the weights do not depend on it.
        segment_length = yaml.safe_load(RELEASES_FILE.read_text())["default_segment_length"]
        note = (f"{p}: not one of the known releases and a release does not record its segment length; assuming "
                f"{segment_length} frames (pass --segment-length to set it)")
    if segment_length <= tok_cfg["context_frames"]:
        raise ConfigError(f"segment length {segment_length} must exceed the {tok_cfg['context_frames']} context "
                          "frames")
    emb = tr_state["model.embed_tokens.weight"]
    act = tr_state.get("action_linear.weight")
    tr_cfg = transformer_config_from(
        tr_json, str(p / TRANSFORMER_CONFIG), tok_cfg, vocab=emb.shape[0],
        action_dim=0 if act is None else int(act.shape[1]), reward="reward_linear.weight" in tr_state,
        segment_length=segment_length)
    return Release(p, tok_cfg, tr_cfg, tok_state, tr_state, name, note)


@contextmanager
def _no_init():
    """Build modules without running their weight initialisers: every initialised tensor is then overwritten by
    the release's (loaded strictly), and initialising 310M parameters first costs tens of seconds on a CPU.
    (The same trick as transformers' no_init_weights; buffers made with torch.zeros/ones are unaffected.)"""
    names = ("uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
             "trunc_normal_", "zeros_", "ones_", "constant_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda t, *a, **k: t)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def build_transformer(rel: Release):
    """The release's transformer as ours (checked name by name and shape by shape first)."""
    from ..transformer import Transformer, TransformerConfig

    with _no_init():
        tr = Transformer(from_dict(TransformerConfig, rel.transformer_config, where=str(rel.path / TRANSFORMER_CONFIG)))
    check_state(tr, rel.transformer_state, str(rel.path / TRANSFORMER_WEIGHTS), rel.path / TRANSFORMER_CONFIG)
    tr.load_state_dict(rel.transformer_state, strict=True, assign=True)  # no second copy of the weights
    return tr.eval()


def build_world_model(rel: Release):
    """A WorldModel holding the release's weights (checked name by name and shape by shape first)."""
    from ..tokenizer import Tokenizer, TokenizerConfig
    from ..world_model import WorldModel

    with _no_init():
        tok = Tokenizer(from_dict(TokenizerConfig, rel.tokenizer_config, where=str(rel.path / TOKENIZER_CONFIG)))
    check_state(tok, rel.tokenizer_state, str(rel.path / TOKENIZER_WEIGHTS), rel.path / TOKENIZER_CONFIG)
    tok.load_state_dict(rel.tokenizer_state, strict=True, assign=True)
    wm = WorldModel(tok, build_transformer(rel)).eval()
    if rel.note:
        print(rel.note, file=sys.stderr)
    return wm


def load_transformer(src, *, segment_length: int | None = None):
    """Only the transformer of a release (its tokenizer's config gives the sequence layout; its weights are not
    read): what a benchmark of the transformer needs."""
    return build_transformer(read_release(src, segment_length=segment_length, tokenizer_weights=False))


def load_release(src, *, segment_length: int | None = None, hub_id: str | None = None):
    return build_world_model(read_release(src, segment_length=segment_length, hub_id=hub_id))


def download_release(hub_id: str) -> Path:
    """A hub id -> the local snapshot directory (needs huggingface_hub and the network)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{hub_id}: not a local directory, and huggingface_hub is not installed to download "
                              "it (pip install huggingface_hub, or pass a downloaded release directory)") from None
    try:
        return Path(snapshot_download(hub_id, allow_patterns=["tokenizer/*", "transformer/*"]))
    except Exception as e:  # offline, unknown repo, auth: one line either way
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{hub_id}: could not download the release from the Hugging Face hub "
                              f"({type(e).__name__}: {first[:200]}); download it elsewhere and pass the "
                              "directory") from None


def resolve_source(src: str) -> tuple[Path, str | None]:
    """SRC (a directory, or a hub id such as thuml/ivideogpt-bair-64-act-cond) -> (directory, hub id or None)."""
    p = Path(src)
    if p.exists():
        return p, None
    if len(src.split("/")) == 2 and not src.startswith((".", "/")):
        return download_release(src), src
    raise CheckpointError(f"{src}: no such directory (and not a hub id owner/name)")
