"""Prompt beginnings shared by conversations, prefilled once: the system prompt's keys and values.

Every first turn of a conversation starts with the same tokens — the chat template, the system prompt of
the user's language, the header of the reference block — and differs only after them.  ``SharedPrefixes``
learns those beginnings by itself, the way vLLM's automatic prefix caching does on GPUs, without being
told where the system prompt ends: after each cold prefill it compares the prompt with the last few cold
prompts, and where one shares at least ``min_tokens`` leading tokens with it, keeps a copy of the keys and
values of that common beginning.  A later cold prompt that starts with a kept beginning gets a copy of
its cache and prefills only the rest (about 100 tokens of a 450-token grounded prompt here).

Only for the lean forward's ``FastCache`` (a plain tensor pair, cheap to copy: 28 KB a token for
Qwen2.5-1.5B); one per loaded model, since the keys belong to its weights.  Thread-safe.

Knows nothing about prompts, languages or conversations: it sees token ids and caches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any, Sequence

from .kvcache import FastCache


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common beginning of ``a`` and ``b``."""
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _copy(cache: FastCache, length: int) -> FastCache:
    """A new cache holding the first ``length`` positions of ``cache`` (room for more is grown on use)."""
    layers, heads, _, dim = cache.keys.shape
    out = FastCache(layers, heads, dim, cache.keys.dtype)
    out.keys = cache.keys[:, :, :length].clone()  # (layers, kv_heads, length, dim)
    out.values = cache.values[:, :, :length].clone()
    out.length = length
    return out


class SharedPrefixes:
    """Kept beginnings of cold prompts and their caches (see the module docstring)."""

    def __init__(self, max_kept: int = 8, min_tokens: int = 32, recent: int = 8) -> None:
        self.min_tokens = min_tokens
        """A beginning shorter than this is not worth a copy (nor a match: it would hardly save anything)."""
        self._kept: OrderedDict[tuple[int, ...], FastCache] = OrderedDict()  # least recently used first
        self._max_kept = max_kept
        self._recent: deque[tuple[int, ...]] = deque(maxlen=recent)
        self._whole: set[tuple[int, ...]] = set()
        """Kept beginnings whose end the caller named (``learn``'s ``boundary``): used whole or not at all,
        so a prompt is always split at the same place, cached or cold (``Generation.shared_until``)."""
        self._lock = threading.Lock()

    def take(self, prompt_ids: Sequence[int]) -> tuple[FastCache | None, list[int]]:
        """A cache holding the longest kept beginning of ``prompt_ids`` (a copy: the caller grows it), and
        the prompt tokens still to prefill; ``(None, prompt_ids)`` when no kept beginning fits."""
        ids = list(prompt_ids)
        with self._lock:
            best, best_len = None, 0
            for key in self._kept:
                n = min(_common(key, ids), len(ids) - 1)  # always prefill >= 1 token
                if key in self._whole and n < len(key):
                    continue  # another language's system prompt: sharing only its first words would split elsewhere
                if n >= self.min_tokens and n > best_len:
                    best, best_len = key, n
            if best is None:
                return None, ids
            self._kept.move_to_end(best)
            return _copy(self._kept[best], best_len), ids[best_len:]

    def learn(self, prompt_ids: Sequence[int], cache: FastCache, boundary: int | None = None) -> None:
        """After a cold prefill of ``prompt_ids`` into ``cache``: keep the beginning it shares with a recent
        cold prompt, if long enough and not kept already; or, where the caller knows where the shared
        beginning ends (``boundary``: the system prompt), exactly that beginning."""
        ids = tuple(prompt_ids)
        with self._lock:
            shared = max((_common(ids, other) for other in self._recent), default=0) if boundary is None \
                else boundary
            self._recent.append(ids)
            shared = min(shared, cache.length)
            known = ids[:shared] in self._kept if boundary is not None else \
                any(_common(key, ids) >= shared for key in self._kept)
            if shared < self.min_tokens or known:
                return
            self._kept[ids[:shared]] = _copy(cache, shared)
            if boundary is not None:
                self._whole.add(ids[:shared])
            while len(self._kept) > self._max_kept:
                self._whole.discard(self._kept.popitem(last=False)[0])
