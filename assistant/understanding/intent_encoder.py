"""Sentence embeddings of chat messages for the intent classifier, fast for one message at a time.

Training embeds thousands of examples in batches through the embedder as it
is.  At chat time the classifier embeds one short message per turn, where
sentence-transformers' per-call machinery (batching, sorting, device moves,
output dicts) costs about as much as the model itself.  For a
sentence-transformers model made of a transformer, mean pooling and an
optional normalisation (all-MiniLM-L6-v2 and most others), ``MessageEncoder``
runs the transformer directly, in bfloat16 where the CPU has native bfloat16
matrix units (AMX / AVX512-BF16: about twice as fast, cosine to the float32
embedding > 0.9999), traced and frozen by TorchScript when that gives the same
output on probe messages, and keeps the embeddings of recent messages ("hi",
"thanks") in a small cache.  Any other embedder is called as it is.

Knows nothing about intents or labels; returns L2-normalised float32 rows.
The embedder itself is not changed (retrieval shares it): the fast path holds
its own copy of the transformer's weights.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from typing import Any, Literal, Sequence

import numpy as np

log = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]


class MessageEncoder:
    """Wraps an embedder (anything with ``.embed``); one-message calls take the fast path when there is one."""

    def __init__(self, embedder: Any, *, precision: Precision = "auto", cache_size: int = 2048):
        if precision not in ("auto", "float32", "bfloat16"):
            from ..errors import ConfigError

            raise ConfigError(f"MessageEncoder precision must be 'auto', 'float32' or 'bfloat16'; got {precision!r}")
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the engine may classify from several request threads
        self._direct = _DirectTransformer.wrap(embedder, precision)

    @property
    def fast(self) -> bool:
        """Whether single messages bypass the embedder's own ``embed``."""
        return self._direct is not None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, rows L2-normalised."""
        texts = list(texts)
        if len(texts) != 1 or self._direct is None:
            return np.asarray(self.embedder.embed(texts), dtype=np.float32)
        text = texts[0]
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit[None, :].copy()
        vector = self._direct.embed_one(text)
        with self._lock:
            self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector[None, :].copy()

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


class _DirectTransformer:
    """The transformer of a sentence-transformers model, called without sentence-transformers."""

    def __init__(self, tokenizer: Any, model: Any, max_length: int, dtype: Any):
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length
        self.dtype = dtype

    @classmethod
    def wrap(cls, embedder: Any, precision: Precision) -> "_DirectTransformer | None":
        found = mean_pooled_transformer(embedder)
        if found is None:
            return None
        st, transformer = found
        import torch

        model = transformer.auto_model
        dtype = torch.float32
        if precision == "bfloat16" or (precision == "auto" and _native_bfloat16()):
            model = copy.deepcopy(model).to(torch.bfloat16)
            dtype = torch.bfloat16
        model.eval()
        max_length = int(getattr(st, "max_seq_length", None) or 256)
        direct = cls(transformer.tokenizer, model, max_length, dtype)
        direct.model = direct._traced() or model
        return direct

    def _traced(self) -> Any:
        """The model traced and frozen by TorchScript (about a third less time per message), if it traces
        to the same embeddings on probe messages of other lengths; else None (the eager model is used)."""
        import warnings

        import torch

        probes = ["ok", "Where is my order? It was due last week and nobody answers my e-mails.", "我的密码忘了怎么办"]
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python branches; checked on the probes below
                enc = self.tokenizer(["hello, how are you"], return_tensors="pt")
                traced = torch.jit.freeze(torch.jit.trace(self.model, (enc["input_ids"], enc["attention_mask"]),
                                                          strict=False))
                for text in probes:
                    enc = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=self.max_length)
                    eager = self.model(**enc).last_hidden_state.float()
                    out = _hidden(traced(enc["input_ids"], enc["attention_mask"])).float()
                    if out.shape != eager.shape or not torch.allclose(out, eager, atol=1e-2, rtol=1e-2):
                        log.info("intent encoder: traced model differs from the eager one; using the eager model")
                        return None
        except Exception as exc:  # any tracing failure only costs speed: fall back to the eager model
            log.info("intent encoder: tracing failed (%s); using the eager model", exc)
            return None
        return traced

    def embed_one(self, text: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            enc = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=self.max_length)
            hidden = _hidden(self.model(enc["input_ids"], enc["attention_mask"])).float()  # (1, tokens, dim)
            vector = mean_pool(hidden, enc["attention_mask"])  # (1, dim)
        return vector[0].numpy().astype(np.float32)


def mean_pooled_transformer(embedder: Any) -> tuple[Any, Any] | None:
    """(sentence-transformers model, its Transformer module) when ``embedder`` is a plain transformer with mean
    pooling and an optional normalisation (all-MiniLM-L6-v2 and most others); else None."""
    st = getattr(embedder, "model", None)
    try:
        modules = list(st) if st is not None else []
    except TypeError:
        return None
    kinds = [type(m).__name__ for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    if getattr(modules[1], "pooling_mode", None) != "mean" or not hasattr(modules[0], "auto_model"):
        return None
    return st, modules[0]


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """(batch, dim) unit rows: the mean of ``hidden`` (batch, tokens, dim) over the unmasked tokens."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)  # embedders return unit rows


def _hidden(output: Any) -> Any:
    """last_hidden_state of a transformers output, or of what a traced model returns (a dict or a tuple)."""
    if isinstance(output, dict):
        return output["last_hidden_state"]
    if isinstance(output, (tuple, list)):
        return output[0]
    return output.last_hidden_state


def _native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 matrix products natively on this CPU (else bfloat16 is slower)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older or stripped torch builds: stay in float32
        return False
