"""A GGUF file straight into packed 4-bit weights, and the small cache they live in.

transformers' own GGUF path de-quantises every tensor to float32 (6.7 GB on
disk for a 1.5B model, then bitsandbytes re-quantises it).  Here the tensors go
from the file's blocks to ``int4.Weight`` directly: a Q4_K or Q4_1 block is
already 4-bit groups of 32 with a scale and a minimum, which is exactly the
kernel's format, so those pack without any loss; other types (Q6_K, Q8_0, F16,
F32) are de-quantised with the ``gguf`` package and re-grouped into 4 bits.

``mixed`` (``--fast-decode mixed``) keeps the file's own model instead: the
layers' matrices of 6 bits or more stay 8-bit rows (``int4.Weight.from_rows8``),
and where the file's output matrix is finer than 4 bits (Qwen2.5's Q4_K_M: Q6_K,
beside a Q4_K embedding; Gemma 3's tied Q8_0 embedding) its place in the file
is noted in the cached config, and the decoder's output layer
(``int4.RefinedHead``) re-scores its best tokens from the file's own rows; the
embedding and the 4-bit scores stay 4-bit groups either way (a decode step
reads the whole output matrix).  The 1.5B default's next-token distribution
sits at KL 0.004 nats a token from the file's with it, 0.028 without
(``python -m bench.fidelity``), for about 10% of decode speed and no measured
change in its answers (bench/RESULTS.md); so ``int4`` stays the default.

The result is saved once as one safetensors file (about the GGUF's size)
beside the tokenizer and config, under a folder named by the file's
fingerprint, ``CACHE_VERSION`` and the setting; a folder of another version or
setting is replaced, with one log line.

Supported: ``qwen2`` (Qwen2 / Qwen2.5), ``llama`` (SmolLM2; llama.cpp stores
its q and k rows interleaved for its RoPE, put back here) and ``gemma3`` (its
norms are stored as ``1 + weight``, put back to transformers' ``weight``).
Knows nothing about generation: it returns tensors and a transformers config.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import progress
from ..errors import ModelLoadError
from .int4 import Weight, packable

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bumped whenever what the cache holds changes; an older cache is rebuilt."""
ARCHITECTURES = ("qwen2", "llama", "gemma3")
_LAYER_NAMES = {  # GGUF name in block N -> transformers name in layer N
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_GEMMA3_NAMES = {**_LAYER_NAMES, "ffn_norm": "pre_feedforward_layernorm", "post_attention_norm":
                 "post_attention_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
                 "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}


@dataclass
class LeanCheckpoint:
    """What the cache folder holds, loaded."""

    folder: Path
    config: Any
    """The transformers config (``tie_word_embeddings`` true: one matrix serves input and output)."""
    tensors: dict[str, Any]
    """Saved ``Weight.state`` entries and plain float tensors (norms), by transformers name."""
    tokenizer: Any = None
    """The tokenizer, where the cache could not be written (else it is read from ``folder``)."""


def _hf_name(gguf_name: str, arch: str = "qwen2") -> str | None:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    names = _GEMMA3_NAMES if arch == "gemma3" else _LAYER_NAMES
    parts = gguf_name.split(".")  # blk.N.attn_q.weight
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in names:
        return f"model.layers.{parts[1]}.{names[parts[2]]}.{parts[3]}"
    return None


def _unpermute(rows: int, heads: int) -> Any:
    """The row order that undoes llama.cpp's interleaving of a Llama q or k matrix (``heads`` of them):
    its row h, d, j (j the half of the rotary pair) holds transformers' row h, j, d."""
    import numpy as np

    return np.arange(rows).reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(-1)


def _q4k_groups(blocks: Any) -> tuple[Any, Any, Any]:
    """Q4_K blocks (n, 144 bytes, 256 values each) → (q uint8 (n, 256), scale, low (n, 8) float32)
    with value = q * scale + low per group of 32 (llama.cpp's ``dequantize_row_q4_K``)."""
    import numpy as np
    from gguf.quants import Q4_K

    n = blocks.shape[0]
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    sc, mn = Q4_K.get_scale_min(blocks[:, 4:16].copy())  # (n, 8) each
    qs = blocks[:, 16:].reshape(n, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    q = (qs & 0x0F).reshape(n, 256)
    return q, d * sc.astype(np.float32), -(dmin * mn.astype(np.float32))


def _q4_1_groups(blocks: Any) -> tuple[Any, Any, Any]:
    """Q4_1 blocks (n, 20 bytes, 32 values) → (q (n, 32), scale (n, 1), low (n, 1))."""
    import numpy as np

    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # low nibbles are values 0..15, high 16..31
    return q, d, m


_FINE = ("Q6_K", "Q8_0", "Q8_1", "Q8_K", "F16", "BF16", "F32", "F64")
"""GGUF types of 6 bits a weight or more: a layer's matrix of these stays 8-bit rows.  5-bit types go to
4-bit groups: as 8-bit rows a decode step would read twice their bytes for the one bit."""


def _fine(reader_tensor: Any) -> bool:
    return reader_tensor.tensor_type.name in _FINE


def tensor_weight(reader_tensor: Any, bias: Any = None, order: Any = None, groups: bool = False) -> Weight:
    """One 2-D GGUF tensor (shape ne0 = in, ne1 = out) as a quantized ``Weight``: 4-bit groups (lossless
    for Q4_K/Q4_1), or 8-bit rows for a type of 6 bits or more unless ``groups``; its rows taken in
    ``order`` where given (lossless)."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize

    kind = reader_tensor.tensor_type
    inp, out = (int(v) for v in reader_tensor.shape[:2])
    data = np.asarray(reader_tensor.data)
    if kind in (T.Q4_K, T.Q4_1) and packable(out, inp):
        blocks = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data
        blocks = blocks.reshape(-1, 144 if kind == T.Q4_K else 20)
        q, scale, low = (_q4k_groups if kind == T.Q4_K else _q4_1_groups)(blocks)
        q, scale, low = q.reshape(out, inp), scale.reshape(out, inp // 32), low.reshape(out, inp // 32)
        if order is not None:
            q, scale, low = q[order], scale[order], low[order]
        return Weight.from_groups(torch.from_numpy(q.astype(np.int32)), torch.from_numpy(np.ascontiguousarray(scale)),
                                  torch.from_numpy(np.ascontiguousarray(low)), bias=bias)
    w = np.asarray(dequantize(data, kind), dtype=np.float32).reshape(out, inp)
    w = torch.from_numpy(np.ascontiguousarray(w if order is None else w[order]))
    return Weight.from_rows8(w, bias=bias) if _fine(reader_tensor) and not groups else \
        Weight.from_float(w, "int4", bias=bias)


def _float_tensor(reader_tensor: Any) -> Any:
    import numpy as np
    import torch
    from gguf.quants import dequantize

    values = dequantize(np.asarray(reader_tensor.data), reader_tensor.tensor_type)
    return torch.from_numpy(np.array(values, dtype=np.float32)).reshape(-1)  # a writable copy


def output_rows(by_name: dict[str, Any]) -> str | None:
    """The file's matrix whose rows re-score the output layer's best tokens (``FileRows`` for
    ``int4.RefinedHead``): the output matrix (the embedding where the file has no other), where it is of
    6 bits or more; None where the output layer's 4-bit groups hold all the file has."""
    name = "output.weight" if "output.weight" in by_name else "token_embd.weight"
    return name if name in by_name and _fine(by_name[name]) else None


class FileRows:
    """The rows of one matrix as its GGUF file stores them, memory-mapped and de-quantised a few at a time
    (``int4.RefinedHead``'s recomputed scores): nothing is copied at load; 64 rows of Qwen2.5's Q6_K
    output matrix de-quantise in about 0.6 ms (2 cores)."""

    def __init__(self, path: Path, offset: int, type: str, rows: int, cols: int) -> None:
        import numpy as np
        from gguf import GGMLQuantizationType
        from gguf.constants import GGML_QUANT_SIZES

        self.kind = GGMLQuantizationType[type]
        block, size = GGML_QUANT_SIZES[self.kind]
        row_bytes = cols // block * size
        if cols % block or offset + rows * row_bytes > path.stat().st_size:
            raise ModelLoadError(f"GGUF file {path} does not hold the {rows}x{cols} {type} output matrix its cache "
                                 "names (a different file?); delete the model cache folder to rebuild it")
        self.data = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(rows, row_bytes))
        self.out_features, self.in_features = rows, cols

    def rows(self, ids: Any) -> Any:
        """Rows ``ids`` (a 1-D tensor), (len(ids), cols) float32."""
        import numpy as np
        import torch
        from gguf.quants import dequantize

        raw = self.data[np.asarray(ids, dtype=np.int64)]
        values = np.asarray(dequantize(raw, self.kind), dtype=np.float32)
        return torch.from_numpy(values.reshape(len(raw), self.in_features))


def convert(path: Path, mixed: bool = False) -> tuple[dict[str, Any], Any, Any]:
    """Read ``path``: (tensors by transformers name, config, tokenizer).  Linear weights become
    ``Weight.state`` entries; the output layer is the token embedding's matrix where the model ties them.
    ``mixed``: the file's finer matrices as 8-bit rows and its output rows noted (module docstring)."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoConfig, AutoTokenizer

    try:
        reader = GGUFReader(str(path))
        arch = reader.fields["general.architecture"].contents()
    except Exception as exc:  # truncated file, bad header
        raise ModelLoadError(f"GGUF file {path} could not be read (corrupt or truncated?): {exc}") from exc
    if arch not in ARCHITECTURES:
        raise ModelLoadError(f"GGUF file {path}: architecture {arch!r} has no lean loader "
                             f"({', '.join(ARCHITECTURES)} do)")
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    # Qwen2.5's files carry an output matrix beside the embedding although the model ties them: the
    # embedding's groups serve both, and the output matrix, where finer (Q4_K_M: Q6_K against Q4_K; the
    # embedding alone as output layer moved the next-token distribution as much as all other re-grouping
    # did), re-scores the best tokens at each step.  Elsewhere an output matrix means an untied model.
    by_name = {t.name: t for t in reader.tensors}
    untied = arch != "qwen2" and "output.weight" in by_name
    config.tie_word_embeddings = not untied
    if mixed and (fine := output_rows(by_name)):
        out = by_name[fine]
        config.lean_output_rows = {"offset": int(out.data_offset), "type": out.tensor_type.name,
                                   "rows": int(out.shape[1]), "cols": int(out.shape[0])}  # saved with the config
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tensors: dict[str, Any] = {}
    for name, t in by_name.items():
        hf = "lm_head.weight" if untied and name == "output.weight" else _hf_name(name, arch)
        if hf is None or name.endswith(".bias"):
            continue  # output.weight of a tied model: the embedding serves as the output layer
        if len(t.shape) == 1 or t.shape[1] == 1:
            tensors[hf] = _float_tensor(t) - (1.0 if arch == "gemma3" and hf.endswith("norm.weight") else 0.0)
            continue
        bias_t = by_name.get(name[: -len(".weight")] + ".bias")
        bias = _float_tensor(bias_t) if bias_t is not None else None
        order = None
        if arch == "llama" and hf.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in hf else config.num_key_value_heads
            order = _unpermute(int(t.shape[1]), heads)
        groups = not mixed or name in ("token_embd.weight", "output.weight")  # read whole at every step
        tensors.update(tensor_weight(t, bias, order, groups).state(hf[: -len(".weight")]))
    tensors = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in tensors.items()}
    return tensors, config, tokenizer


def fuse(tensors: dict[str, Any], config: Any) -> None:
    """Store each layer's q, k, v and gate, up as the one matrix the decoder multiplies (in place), split
    where ``shared_weights.fused_splits`` says: stored apart, they were copied into one at every start,
    while the cache file's pages of the separate ones stayed in memory too (~430 MB of the 1.5B model).
    Left apart where a split would not fall on packed row blocks."""
    from .shared_weights import fused_splits

    splits = fused_splits(config) or {}
    for i in range(config.num_hidden_layers):
        for fused, parts in splits.items():
            module = fused.split(".")[0]  # self_attn or mlp
            prefixes = [f"model.layers.{i}.{module}.{name}" for name, _, _ in parts]
            if not all(Weight.stored_quantized(tensors, p) for p in prefixes):
                continue
            whole = Weight.concat([Weight.from_state(tensors, p, "int4") for p in prefixes])
            for p in prefixes:
                for part in Weight.STATE_PARTS:
                    tensors.pop(f"{p}.{part}", None)
            tensors.update(whole.state(f"model.layers.{i}.{fused}"))


def cache_folder(path: Path, cache_root: Path, fingerprint: str, mixed: bool = False) -> Path:
    return cache_root / f"{path.stem}-{fingerprint}-lean{CACHE_VERSION}{'-mixed' if mixed else ''}"


def load_or_build(path: Path, cache_root: Path, fingerprint: str, chat_template: str | None = None,
                  mixed: bool = False) -> LeanCheckpoint:
    """The lean checkpoint of GGUF ``path``, converting it once into ``cache_root``; one cache a file
    (switching ``mixed`` replaces it)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    target = cache_folder(path, cache_root, fingerprint, mixed)
    if not (target / "lean.json").is_file():
        stale = sorted(p.name for p in cache_root.glob(f"{path.stem}-{fingerprint}-lean*") if p != target) \
            if cache_root.is_dir() else []
        if stale:
            log.info("lean cache %s is from another version or --fast-decode setting; rebuilding it as %s",
                     ", ".join(stale), target.name)
            for old in stale:
                shutil.rmtree(cache_root / old, ignore_errors=True)
        with progress.step(f"packing {path.name} for this CPU (once, about a minute)", log=log, detail=str(target)):
            tensors, config, tokenizer = convert(path, mixed=mixed)
            fuse(tensors, config)
            if chat_template and not tokenizer.chat_template:
                tokenizer.chat_template = chat_template
            tmp = None
            try:
                cache_root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_root))
                save_file(tensors, str(tmp / "weights.safetensors"))
                config.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / "lean.json").write_text(json.dumps({"version": CACHE_VERSION, "source": path.name}))
                os.replace(tmp, target)
            except Exception as exc:  # a full disk, a read-only home: answer from memory, convert again next start
                log.warning("could not write the model cache %s (%s); running from memory, and the next start "
                            "packs %s again (%s free there)", target, exc, path.name, _free_space(cache_root))
                return LeanCheckpoint(folder=path, config=config, tensors=tensors, tokenizer=tokenizer)
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tensors = read_tensors(target / "weights.safetensors")
        config = AutoConfig.from_pretrained(target)
    except Exception as exc:  # a damaged cache: say how to get a fresh one
        raise ModelLoadError(f"the model cache {target} is damaged ({exc}); delete that folder and start again "
                             "to rebuild it") from exc
    return LeanCheckpoint(folder=target, config=config, tensors=tensors)


def _free_space(folder: Path) -> str:
    """Free disk space where ``folder`` is (or would be), in words."""
    for place in (folder, *folder.parents):
        if place.exists():
            return f"{shutil.disk_usage(place).free / 2**30:.1f} GiB"
    return "unknown"


_DTYPES = {"U8": "uint8", "I8": "int8", "I32": "int32", "I64": "int64", "F16": "float16", "BF16": "bfloat16",
           "F32": "float32"}


def read_tensors(path: Path) -> dict[str, Any]:
    """A safetensors file's tensors, read into one block of memory that they are views of.

    Not memory-mapped: decode steps read every weight, and from the file's page-cache pages they ran
    at 11.2 tok/s against 12.0 from a private copy (``bench.generation``, 2 Xeon cores); and not
    ``safetensors.torch.load``, which would hold the bytes and a copy of each tensor at once."""
    import struct

    import torch

    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        header.pop("__metadata__", None)
        start = 8 + size
        data = bytearray(path.stat().st_size - start)
        if fh.readinto(data) != len(data):
            raise ValueError(f"{path.name} is shorter than its header says")
    tensors = {}
    for name, info in header.items():
        dtype = getattr(torch, _DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(data, dtype=torch.uint8, offset=begin, count=end - begin) if end > begin \
            else torch.empty(0, dtype=torch.uint8)
        tensors[name] = flat.view(dtype).reshape(info["shape"])
    return tensors


@dataclass
class LeanModel:
    model: Any
    """The transformers model over ``fast``'s weights (``shared_weights``): Explain, scores, ablations."""
    tokenizer: Any
    fast: Any
    """The ``fastdecode.FastDecoder`` that generates answers."""
    folder: Path


def load_lean(path: Path, cache_root: Path, fingerprint: str, adapters: tuple[str, ...] = (),
              chat_template: str | None = None, mixed: bool = False) -> LeanModel:
    """GGUF ``path`` as one copy of packed 4-bit weights serving both forwards, adapters merged;
    ``mixed``: its finer matrices kept finer (module docstring)."""
    from transformers import AutoTokenizer

    from .fastdecode import FastDecoder
    from .int4 import RefinedHead
    from .shared_weights import PackedLinear, merge_lora, share_weights, skeleton

    checkpoint = load_or_build(path, cache_root, fingerprint, chat_template, mixed)
    tokenizer = checkpoint.tokenizer
    if tokenizer is None:  # read from the cache folder, as written
        tokenizer = AutoTokenizer.from_pretrained(checkpoint.folder)
    model = skeleton(checkpoint.config, checkpoint.tensors)
    rows = getattr(checkpoint.config, "lean_output_rows", None)
    if rows:  # the file's finer output matrix re-scores the 4-bit scores' best (see ``output_rows``)
        model.lm_head = PackedLinear(RefinedHead(model.lm_head.weight_store, FileRows(path, **rows)))
    for adapter in adapters:
        merge_lora(model, adapter)
    fast = FastDecoder.build(model, "int4")
    if fast is None:
        raise ModelLoadError(f"GGUF file {path}: the lean decoder does not support this model's settings")
    share_weights(model, fast)  # q/k/v and gate/up become slices of the fused matrices; the separate ones go
    return LeanModel(model=model, tokenizer=tokenizer, fast=fast, folder=checkpoint.folder)


def architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file, read from its header alone."""
    import struct

    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file")
        version, _tensors, fields = struct.unpack("<IQQ", fh.read(20))
        if version < 2:
            raise ModelLoadError(f"{path}: GGUF version {version} is too old")
        for _ in range(fields):
            (klen,) = struct.unpack("<Q", fh.read(8))
            key = fh.read(klen).decode("utf-8", "replace")
            (kind,) = struct.unpack("<I", fh.read(4))
            if kind != 8:  # the architecture is a string (type 8) and comes first in every writer we know
                return ""
            (vlen,) = struct.unpack("<Q", fh.read(8))
            value = fh.read(vlen).decode("utf-8", "replace")
            if key == "general.architecture":
                return value
    return ""
