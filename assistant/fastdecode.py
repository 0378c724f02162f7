"""A lean forward pass for Llama-architecture models, for generation on CPU.

On this 2-core CPU a decode step is bound by the bytes of weights it reads:
profiled, SmolLM2-135M in fp32 spends 36 of 53 ms per token in matrix-vector
products, so trimming Python overhead alone gains nothing.  ``FastDecoder``
reads the same weights once — q/k/v and gate/up fused into one matrix each,
adapters (peft LoRA) merged, a bitsandbytes 4-bit base de-quantized — keeps
them as 4-bit groups for decode steps (``int4``: a quarter of the bytes, with
a bf16 copy for prefill) or as ``bfloat16`` / ``float32``, and runs each layer
as a dozen tensor calls on a growable KV cache (``FastCache``).

It produces the logits of the last position only; everything that needs the
model's internals (attention for the Explain view, teacher-forced scores)
still runs on the transformers model, which stays loaded.  Architectures other
than Llama (SmolLM2 is one) get
``None`` from ``FastDecoder.build`` and keep the transformers path.

Knows nothing about tokenization, sampling or conversations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

WeightFormat = Literal["int4", "bfloat16", "float32"]
_GROW = 256  # KV cache capacity grows in steps of this many positions


def _torch() -> Any:
    import torch

    return torch


class _Linear:
    """``x @ W.T`` for one weight, kept in the format that is fastest per call shape.

    ``int4``: groups of 32 input columns with a scale and a zero each, packed
    for ``torch._weight_int4pack_mm_for_cpu`` (bf16 activations) — the layout of
    the GGUF Q4_1 blocks the default model ships in, so packing it loses nothing
    more — used for single-token decode steps, plus a dense bf16 copy for
    prefill, where bf16 matrix products (AMX where the CPU has it) win.
    ``bfloat16`` / ``float32``: one dense copy for both.
    """

    GROUP = 32

    def __init__(self, weight: Any, fmt: WeightFormat) -> None:
        torch = _torch()
        w = weight.detach().float()
        self.out_features, self.in_features = w.shape
        self.fmt = fmt
        self.packed = self.scale_zero = None
        if fmt == "int4" and self.in_features % self.GROUP == 0:
            groups = w.reshape(self.out_features, -1, self.GROUP)  # (out, in / 32, 32)
            low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
            scale = ((high - low) / 15).clamp(min=1e-8)
            q = ((groups - low) / scale).round().clamp(0, 15).to(torch.int32).reshape(self.out_features, -1)
            zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
            self.scale_zero = (torch.cat([scale, zero], -1).transpose(0, 1).contiguous()
                               .to(torch.bfloat16))  # (in / 32, out, 2)
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        dense = torch.bfloat16 if fmt in ("int4", "bfloat16") else torch.float32
        self.weight = w.to(dense).contiguous()

    def __call__(self, x: Any) -> Any:
        torch = _torch()
        if self.packed is not None and x.shape[-2] == 1:
            flat = x.reshape(-1, self.in_features)
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.GROUP, self.scale_zero)
            return out.reshape(*x.shape[:-1], self.out_features)
        return torch.nn.functional.linear(x, self.weight)


@dataclass
class _Layer:
    norm_attn: Any
    norm_mlp: Any
    qkv: _Linear
    o: _Linear
    gate_up: _Linear
    down: _Linear


class FastCache:
    """Keys and values of one sequence for every layer, growing as needed.

    Has the two methods ``PrefixCache`` uses on transformers caches:
    ``get_seq_length()`` and ``crop(n)`` (negative n: drop from the end).
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: Any) -> None:
        torch = _torch()
        self.length = 0
        self.keys = torch.zeros((layers, kv_heads, 0, head_dim), dtype=dtype)  # (layers, kv_heads, capacity, dim)
        self.values = torch.zeros((layers, kv_heads, 0, head_dim), dtype=dtype)

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, n: int) -> None:
        self.length = max(0, self.length + n if n < 0 else min(n, self.length))

    def reserve(self, length: int) -> None:
        capacity = self.keys.shape[2]
        if length <= capacity:
            return
        torch = _torch()
        new = ((length + _GROW - 1) // _GROW) * _GROW
        layers, heads, _, dim = self.keys.shape
        for name in ("keys", "values"):
            old = getattr(self, name)
            grown = torch.zeros((layers, heads, new, dim), dtype=old.dtype)
            grown[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, grown)


class FastDecoder:
    """The lean forward of one Llama-architecture model; build with ``FastDecoder.build``."""

    def __init__(self, embed: Any, layers: list[_Layer], norm: Any, head: _Linear, rotary: Any, config: Any,
                 fmt: WeightFormat) -> None:
        torch = _torch()
        self.embed, self.layers, self.norm, self.head, self.rotary = embed, layers, norm, head, rotary
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.intermediate = config.intermediate_size
        self.eps = config.rms_norm_eps
        self.fmt = fmt
        self.dtype = torch.float32 if fmt == "float32" else torch.bfloat16  # activations
        self._rope_table: tuple[Any, Any] | None = None  # (cos, sin), each (positions, head_dim); grown on demand

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def build(cls, model: Any, fmt: WeightFormat = "int4") -> "FastDecoder | None":
        """A decoder for ``model`` (a transformers causal LM, possibly peft-wrapped or 4-bit), or
        None when its architecture is not one this module implements."""
        torch = _torch()
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = base.config
        reason = _unsupported(base, config)
        if reason:
            log.info("fast decode not used for %s: %s", type(base).__name__, reason)
            return None
        if fmt == "int4" and not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
            fmt = "bfloat16"
        act = torch.float32 if fmt == "float32" else torch.bfloat16
        with torch.no_grad():
            layers = []
            for layer in base.model.layers:
                attn, mlp = layer.self_attn, layer.mlp
                qkv = torch.cat([_weight(attn.q_proj), _weight(attn.k_proj), _weight(attn.v_proj)])
                gate_up = torch.cat([_weight(mlp.gate_proj), _weight(mlp.up_proj)])
                layers.append(_Layer(
                    norm_attn=layer.input_layernorm.weight.detach().to(act).clone(),
                    norm_mlp=layer.post_attention_layernorm.weight.detach().to(act).clone(),
                    qkv=_Linear(qkv, fmt), o=_Linear(_weight(attn.o_proj), fmt),
                    gate_up=_Linear(gate_up, fmt), down=_Linear(_weight(mlp.down_proj), fmt)))
            embed = base.model.embed_tokens.weight.detach().float().clone()
            head = _Linear(_weight(base.lm_head), fmt)
            norm = base.model.norm.weight.detach().to(act).clone()
        return cls(embed, layers, norm, head, base.model.rotary_emb, config, fmt)

    def new_cache(self) -> FastCache:
        return FastCache(len(self.layers), self.kv_heads, self.head_dim, self.dtype)

    # ---- forward --------------------------------------------------------------------------

    def _rope(self, end: int) -> tuple[Any, Any]:
        torch = _torch()
        table = self._rope_table  # one attribute, so threads never see a cos and a sin of different sizes
        if table is None or table[0].shape[0] < end:
            size = ((end + 1023) // 1024) * 1024
            positions = torch.arange(size)[None]  # (1, size)
            with torch.no_grad():
                cos, sin = self.rotary(torch.zeros(1, dtype=torch.float32), positions)
            table = (cos[0].to(self.dtype), sin[0].to(self.dtype))  # (size, head_dim) each
            self._rope_table = table
        return table

    def _rms(self, x: Any, weight: Any) -> Any:
        torch = _torch()
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _rotate(self, x: Any, cos: Any, sin: Any) -> Any:
        torch = _torch()
        half = self.head_dim // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids: list[int], cache: FastCache) -> Any:
        """Logits (float32, shape (vocab,)) after the last of ``ids``, appended to ``cache``."""
        torch = _torch()
        F = torch.nn.functional
        n, past = len(ids), cache.length
        end = past + n
        cache.reserve(end)
        cos_all, sin_all = self._rope(end)
        cos, sin = cos_all[past:end][None, None], sin_all[past:end][None, None]  # (1, 1, n, head_dim)
        heads, kv, dim = self.heads, self.kv_heads, self.head_dim
        mask = None
        if n > 1:  # query i (position past + i) sees keys 0 .. past + i
            mask = torch.ones(n, end, dtype=torch.bool).tril(diagonal=past)
        with torch.inference_mode():
            x = self.embed[torch.tensor(ids)].to(self.dtype)[None]  # (1, n, hidden)
            for i, layer in enumerate(self.layers):
                qkv = layer.qkv(self._rms(x, layer.norm_attn))  # (1, n, (heads + 2 kv) * dim)
                qkv = qkv.view(1, n, heads + 2 * kv, dim).transpose(1, 2)  # (1, heads + 2 kv, n, dim)
                qk = self._rotate(qkv[:, : heads + kv], cos, sin)  # queries and keys in one go
                cache.keys[i, :, past:end] = qk[0, heads:]
                cache.values[i, :, past:end] = qkv[0, heads + kv:]
                keys = cache.keys[i, :, :end][None]  # (1, kv, end, dim)
                values = cache.values[i, :, :end][None]
                att = F.scaled_dot_product_attention(qk[:, :heads], keys, values, attn_mask=mask,
                                                     enable_gqa=kv != heads)  # (1, heads, n, dim)
                x = x + layer.o(att.transpose(1, 2).reshape(1, n, heads * dim))
                gu = layer.gate_up(self._rms(x, layer.norm_mlp))  # (1, n, 2 * intermediate)
                x = x + layer.down(F.silu(gu[..., : self.intermediate]) * gu[..., self.intermediate:])
            cache.length = end
            return self.head(self._rms(x[:, -1:], self.norm))[0, 0].float()


def _unsupported(base: Any, config: Any) -> str:
    """Why ``base`` cannot use this module's forward ('' when it can)."""
    if getattr(config, "model_type", "") != "llama":
        return f"architecture {getattr(config, 'model_type', '?')!r} (only llama is implemented)"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases in attention or MLP"
    if str(getattr(base, "device", "cpu")) != "cpu":
        return "the model is not on the CPU (transformers is the faster path on GPUs)"
    return ""


def _weight(module: Any) -> Any:
    """The effective float32 weight (out, in) of a Linear: a bitsandbytes 4/8-bit weight de-quantized,
    the deltas of active peft LoRA adapters added."""
    torch = _torch()
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
