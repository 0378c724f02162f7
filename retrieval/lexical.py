"""BM25 over CJK-aware tokens, through bm25s.

Besides the BM25 scores, it tells how much of a query's IDF mass a chunk
contains (``coverage``): an absolute, query-comparable signal in [0, 1] that
the relevance floor uses, since raw BM25 scores are not comparable across
queries.  Knows nothing about embeddings or chunks beyond their row numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .text import tokenize

log = logging.getLogger(__name__)


@dataclass
class LexicalIndex:
    """A bm25s index (None while the collection is empty) and its document frequencies."""

    bm25: object | None
    count: int

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> "LexicalIndex":
        import bm25s

        if not token_lists:
            return cls(bm25=None, count=0)
        bm25 = bm25s.BM25()
        # bm25s wants each document non-empty; an empty chunk gets a token that no query produces.
        bm25.index([tokens or ["\x00"] for tokens in token_lists], show_progress=False)
        return cls(bm25=bm25, count=len(token_lists))

    @classmethod
    def of_texts(cls, texts: Iterable[str]) -> "LexicalIndex":
        """``build`` over ``texts`` cut into words (``text.tokenize``)."""
        return cls.build([tokenize(text) for text in texts])

    def _ids(self, query: str) -> list[int]:
        if self.bm25 is None:
            return []
        vocab = self.bm25.vocab_dict
        return sorted({vocab[t] for t in tokenize(query) if t in vocab})

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query``: (count,) float32, zeros when nothing matches."""
        ids = self._ids(query)
        if not ids:
            return np.zeros(self.count, dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)

    def coverage(self, query: str, rows: np.ndarray) -> np.ndarray:
        """Share of the query's IDF mass found in each of ``rows``: (len(rows),) in [0, 1].

        Query tokens absent from the collection count with the highest IDF, so a
        query about something the documents never mention gets a low coverage.
        """
        tokens = set(tokenize(query))
        out = np.zeros(len(rows), dtype=np.float32)
        if not tokens or self.bm25 is None or len(rows) == 0:
            return out
        n = self.count
        indptr = self.bm25.scores["indptr"]
        indices = self.bm25.scores["indices"]
        vocab = self.bm25.vocab_dict
        total = 0.0
        for token in tokens:
            tid = vocab.get(token)
            df = 0 if tid is None else int(indptr[tid + 1] - indptr[tid])
            idf = float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))
            total += idf
            if tid is not None and df:
                present = np.zeros(n, dtype=bool)  # scatter + gather: cheaper than np.isin for long postings
                present[indices[indptr[tid]:indptr[tid + 1]]] = True
                out += idf * present[rows]
        return out / total if total > 0 else out

    def save(self, folder: Path) -> None:
        if self.bm25 is not None:
            self.bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, count: int) -> "LexicalIndex":
        import bm25s

        if count == 0:
            return cls(bm25=None, count=0)
        bm25 = bm25s.BM25.load(str(folder), show_progress=False)
        return cls(bm25=bm25, count=count)
