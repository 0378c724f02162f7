"""The transformers model over the lean decoder's weights: one copy in memory.

The lean decoder (``fastdecode``) generates answers; the transformers model
still serves what needs its internals — the Explain view's attention hooks
and eager attention, teacher-forced scores, ablations.  Instead of keeping a
second copy of every matrix for it, ``share_weights`` replaces its linear and
embedding modules by ``PackedLinear`` / ``PackedEmbedding`` modules over the
decoder's own ``int4.Weight`` objects (q, k, v as row slices of the fused
matrix), and the old weights are freed.  ``skeleton`` builds such a model from
a lean GGUF checkpoint without ever materialising full-precision weights.

The result is for inference only: no gradients, no peft adapters on top (they
are merged into the decoder's weights first).  An adapter the decoder keeps
unmerged (``FastDecoder.attach_lora``: the retry adapter) reaches these modules
too (``share_lora``) and applies inside ``adapter_active()`` only, so Explain
runs the model that wrote the answer.  Knows nothing about conversations or
generation.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from pathlib import Path
from typing import Any

from .cpu import bf16_matmul_fast
from .int4 import Weight

log = logging.getLogger(__name__)

_ADAPTER = contextvars.ContextVar("shared_weights_adapter", default=False)


@contextlib.contextmanager
def adapter_active(on: bool = True) -> Any:
    """Within this block (this thread), ``PackedLinear`` modules add their unmerged adapter's delta."""
    token = _ADAPTER.set(on)
    try:
        yield
    finally:
        _ADAPTER.reset(token)


def _nn() -> Any:
    import torch

    return torch.nn


class PackedLinear(_nn().Module):
    """``nn.Linear``'s forward over a shared ``int4.Weight`` (bias included)."""

    def __init__(self, weight: Weight) -> None:
        super().__init__()
        self.weight_store = weight
        self.in_features, self.out_features = weight.in_features, weight.out_features
        self.lora: tuple[Any, int, int] | None = None
        """(the decoder's ``_LowRank`` of the fused product, first row, end row): this module's unmerged
        adapter delta, added inside ``adapter_active()``."""

    def forward(self, x: Any) -> Any:
        out = self.weight_store(x).to(x.dtype)
        if self.lora is not None and _ADAPTER.get():
            delta, start, stop = self.lora
            out = out + ((x.to(delta.a_t.dtype) @ delta.a_t) @ delta.b_t[:, start:stop]).to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.weight_store.fmt}"


class PackedEmbedding(_nn().Module):
    """``nn.Embedding`` over a shared ``int4.Weight``'s rows, times ``scale`` (Gemma's scaled embedding)."""

    def __init__(self, weight: Weight, scale: float = 1.0, dtype: Any = None) -> None:
        import torch

        super().__init__()
        self.weight_store, self.scale = weight, scale
        self.dtype = dtype or torch.bfloat16
        self.num_embeddings, self.embedding_dim = weight.out_features, weight.in_features

    def forward(self, ids: Any) -> Any:
        rows = self.weight_store.rows(ids.reshape(-1))
        if self.scale != 1.0:
            rows = rows * self.scale
        return rows.to(self.dtype).reshape(*ids.shape, self.embedding_dim)


def _row_split(config: Any) -> tuple[int, int, int]:
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads * dim, kv * dim, config.intermediate_size


def fused_splits(config: Any) -> dict[str, list[tuple[str, int, int]]] | None:
    """Where each layer's fused matrices split: {"self_attn.qkv_proj": [("q_proj", 0, q), …], …}, or
    None where a split would not fall on the packed format's 64-row blocks."""
    q_rows, kv_rows, inter = _row_split(config)
    if any(n % 64 for n in (q_rows, kv_rows, inter)):
        return None
    return {"self_attn.qkv_proj": [("q_proj", 0, q_rows), ("k_proj", q_rows, q_rows + kv_rows),
                                   ("v_proj", q_rows + kv_rows, q_rows + 2 * kv_rows)],
            "mlp.gate_up_proj": [("gate_proj", 0, inter), ("up_proj", inter, 2 * inter)]}


def share_weights(model: Any, fast: Any) -> bool:
    """Point ``model``'s linear and embedding modules at ``fast``'s weights (in place); the modules they
    replace — bitsandbytes 4-bit, peft LoRA wrappers, dense copies — are dropped.  False (and nothing
    changed) where the fused matrices cannot be split on the packed format's 64-row blocks."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    q_rows, kv_rows, inter = _row_split(config)
    if any(not w.quantized for lean in fast.layers for w in (lean.qkv, lean.o, lean.gate_up, lean.down)):
        return False  # a dense copy would only trade the model's precision for the decoder's: keep both
    if any(n % 64 for n in (q_rows, kv_rows, inter)):
        log.info("weights not shared: q/k/v or MLP rows (%d, %d, %d) are not multiples of 64", q_rows, kv_rows, inter)
        return False
    dtype = next((p.dtype for p in base.parameters() if p.is_floating_point()), torch.bfloat16)
    for layer, lean in zip(base.model.layers, fast.layers):
        attn, mlp = layer.self_attn, layer.mlp
        attn.q_proj = PackedLinear(lean.qkv.rows_slice(0, q_rows))
        attn.k_proj = PackedLinear(lean.qkv.rows_slice(q_rows, q_rows + kv_rows))
        attn.v_proj = PackedLinear(lean.qkv.rows_slice(q_rows + kv_rows, q_rows + 2 * kv_rows))
        attn.o_proj = PackedLinear(lean.o)
        mlp.gate_proj = PackedLinear(lean.gate_up.rows_slice(0, inter))
        mlp.up_proj = PackedLinear(lean.gate_up.rows_slice(inter, 2 * inter))
        mlp.down_proj = PackedLinear(lean.down)
    embed = base.model.embed_tokens
    scale = embed.scale if isinstance(embed, PackedEmbedding) else float(getattr(embed, "embed_scale", 1.0))
    base.model.embed_tokens = PackedEmbedding(fast.embed, scale, dtype)
    base.lm_head = PackedLinear(fast.head)
    base.config.tie_word_embeddings = fast.head is fast.embed
    return True


def share_lora(model: Any, fast: Any) -> bool:
    """Point ``model``'s ``PackedLinear`` modules (after ``share_weights``) at the deltas of the adapter
    ``fast`` keeps unmerged (``FastDecoder.attach_lora``); False (nothing changed) where the modules are
    not the decoder's."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    q_rows, kv_rows, inter = _row_split(base.config)
    parts = {"qkv": [("self_attn", "q_proj", 0, q_rows), ("self_attn", "k_proj", q_rows, q_rows + kv_rows),
                     ("self_attn", "v_proj", q_rows + kv_rows, q_rows + 2 * kv_rows)],
             "o": [("self_attn", "o_proj", 0, None)],
             "gate_up": [("mlp", "gate_proj", 0, inter), ("mlp", "up_proj", inter, 2 * inter)],
             "down": [("mlp", "down_proj", 0, None)]}
    if not all(isinstance(getattr(getattr(layer, group), name), PackedLinear)
               for layer in base.model.layers for group_parts in parts.values() for group, name, _, _ in group_parts):
        return False
    for layer, lean in zip(base.model.layers, fast.layers):
        for product, group_parts in parts.items():
            delta = (lean.lora or {}).get(product)
            for group, name, start, stop in group_parts:
                module = getattr(getattr(layer, group), name)
                module.lora = None if delta is None else (delta, start, stop if stop is not None else module.out_features)
    return True


def skeleton(config: Any, tensors: dict[str, Any], dtype: Any = None) -> Any:
    """A transformers causal LM for ``config`` whose linear and embedding modules are ``PackedLinear`` /
    ``PackedEmbedding`` over the checkpoint's weights (``int4.Weight.state`` entries in ``tensors``) and
    whose norms come from ``tensors``; nothing is allocated at full size on the way."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or (torch.bfloat16 if bf16_matmul_fast() else torch.float32)  # see cpu.bf16_matmul_fast
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    base = model.model

    def packed(prefix: str) -> PackedLinear:
        return PackedLinear(Weight.from_state(tensors, prefix, "int4"))

    splits = fused_splits(config) or {}
    for i, layer in enumerate(base.layers):
        p = f"model.layers.{i}"
        for fused, parts in splits.items():  # stored as one matrix (gguf_lean.fuse): row slices of it
            if Weight.stored_quantized(tensors, f"{p}.{fused}"):
                whole = Weight.from_state(tensors, f"{p}.{fused}", "int4")
                module = getattr(layer, fused.split(".")[0])
                for name, start, stop in parts:
                    setattr(module, name, PackedLinear(whole.rows_slice(start, stop)))
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            if not isinstance(getattr(layer.self_attn, name), PackedLinear):
                setattr(layer.self_attn, name, packed(f"{p}.self_attn.{name}"))
        for name in ("gate_proj", "up_proj", "down_proj"):
            if not isinstance(getattr(layer.mlp, name), PackedLinear):
                setattr(layer.mlp, name, packed(f"{p}.mlp.{name}"))
    embed = Weight.from_state(tensors, "model.embed_tokens", "int4")
    base.embed_tokens = PackedEmbedding(embed, float(getattr(base.embed_tokens, "scalar_embed_scale", 1.0)), dtype)
    model.lm_head = PackedLinear(embed) if config.tie_word_embeddings else packed("lm_head")
    # What is left on the meta device: norms (from the checkpoint) and the rotary tables (recomputed).
    model.to_empty(device="cpu")
    state = {k: v.to(dtype) for k, v in tensors.items() if k.endswith("norm.weight")}
    missing = [k for k, _ in model.named_parameters() if k not in state]
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    model.load_state_dict(state, strict=False, assign=True)
    base.rotary_emb = type(base.rotary_emb)(config=config)
    return model.eval().requires_grad_(False)


def read_lora(adapter: Path | str) -> tuple[float, dict[str, tuple[Any, Any]]]:
    """A peft LoRA adapter folder (written by ``assistant finetune``) as its scale (alpha / r, or
    alpha / sqrt(r) with rsLoRA) and ``{module name: (A (r, in), B (out, r))}``, names as the base model's
    (``model.layers.0.self_attn.q_proj``).  An unreadable folder, or one without LoRA weights, is a
    ``ModelLoadError``."""
    import json

    from safetensors.torch import load_file

    from ..errors import ModelLoadError

    folder = Path(adapter).expanduser()
    try:
        settings = json.loads((folder / "adapter_config.json").read_text())
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"adapter {str(adapter)!r} could not be read: {exc}") from exc
    r = int(settings.get("r", 8))
    alpha = float(settings.get("lora_alpha", r))
    scale = alpha / (r ** 0.5 if settings.get("use_rslora") else r)
    pairs = {}
    for key, a in tensors.items():
        if ".lora_A." in key:
            name = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            pairs[name] = (a, tensors[key.replace(".lora_A.", ".lora_B.")])
    if not pairs:
        raise ModelLoadError(f"adapter {str(adapter)!r} holds no LoRA weights")
    return scale, pairs


def merge_lora(model: Any, adapter: Path | str) -> int:
    """Fold a peft LoRA adapter (a folder written by ``assistant finetune``) into ``model``'s
    ``PackedLinear`` weights: W + (alpha / r) B A, packed again.  Returns how many matrices changed;
    a target the model lacks, or an adapter of another shape, is a ``ModelLoadError``."""
    from ..errors import ModelLoadError

    scale, pairs = read_lora(adapter)
    modules = dict(model.named_modules())
    for name, (a, b) in pairs.items():
        module = modules.get(name)
        if not isinstance(module, PackedLinear):
            raise ModelLoadError(f"adapter {str(adapter)!r} targets {name!r}, which this model has no linear layer for")
        store = module.weight_store
        if a.shape[1] != store.in_features or b.shape[0] != store.out_features:
            raise ModelLoadError(f"adapter {str(adapter)!r} does not fit the base model: {name} is "
                                 f"{store.out_features}x{store.in_features}, the adapter's is {b.shape[0]}x{a.shape[1]}")
        w = store.dequantize().float() + scale * (b.float() @ a.float())
        module.weight_store = store.like(w, bias=store.bias)
    return len(pairs)


def effective_weight(module: Any) -> Any:
    """The effective float32 weight (out, in) of a Linear: a bitsandbytes 4/8-bit weight de-quantized,
    the deltas of active peft LoRA adapters added."""
    import torch

    layer = module.base_layer if hasattr(module, "base_layer") else module
    w = layer.weight
    if type(w).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        w = bnbf.dequantize_4bit(w.data, w.quant_state)
    elif type(w).__name__ == "Int8Params":
        scb = getattr(layer.state, "SCB", None) if hasattr(layer, "state") else None
        scb = scb if scb is not None else getattr(w, "SCB", None)
        w = w.data.float() * (scb.float()[:, None] / 127.0)
    w = w.detach().float().clone()
    if hasattr(module, "base_layer") and not getattr(module, "merged", False):
        for name in getattr(module, "active_adapters", []):
            if name in getattr(module, "lora_A", {}):
                w += module.get_delta_weight(name).float()
    return w
