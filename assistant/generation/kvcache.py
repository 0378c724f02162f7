"""The lean forward's key-value cache of one sequence (``FastCache``): plain tensors, laid out
(layers, kv heads, capacity, dim) so that the kernel library's attention reads them by address
(``q4kernel.Rows``), growing in steps of ``_GROW`` positions."""

from __future__ import annotations

from typing import Any

_GROW = 256  # KV cache capacity grows in steps of this many positions


class FastCache:
    """Keys and values of one sequence for every layer, growing as needed.

    Has the two methods ``PrefixCache`` uses on transformers caches:
    ``get_seq_length()`` and ``crop(n)`` (negative n: drop from the end).
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: Any, adapter: bool = False) -> None:
        import torch

        self.length = 0
        self.adapter = adapter
        """The sequence runs with the decoder's attached adapter (``FastDecoder.attach_lora``)."""
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
        import torch

        new = ((length + _GROW - 1) // _GROW) * _GROW
        layers, heads, _, dim = self.keys.shape
        for name in ("keys", "values"):
            old = getattr(self, name)
            grown = torch.zeros((layers, heads, new, dim), dtype=old.dtype)
            grown[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, grown)
