"""TF-IDF features of the intent classifier, stored as vocabulary + idf (no pickle).

Trained with scikit-learn; a saved block is rebuilt from its vocabulary and
idf.  ``transform_one`` scores a single chat message without scikit-learn's
per-call overhead (the intent classifier's hot path).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class Tfidf:
    """A TF-IDF block, trained with scikit-learn and stored as vocabulary + idf."""

    def __init__(self, analyzer: str, ngram_range: tuple[int, int], vocabulary: dict[str, int] | None = None,
                 idf: np.ndarray | None = None, max_features: int | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.analyzer = analyzer
        self.ngram_range = tuple(ngram_range)
        self.vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=self.ngram_range, sublinear_tf=True,
                                          lowercase=True, vocabulary=vocabulary, max_features=max_features,
                                          dtype=np.float32,
                                          **({"token_pattern": r"(?u)\b\w+\b"} if analyzer == "word" else {}))
        if vocabulary is not None:
            self.vectorizer.idf_ = idf
        self._analyzer = None
        self._index: dict[str, int] = {}

    def fit(self, texts: Sequence[str]) -> "Tfidf":
        self.vectorizer.fit(texts)
        return self

    def transform(self, texts: Sequence[str]):
        return self.vectorizer.transform(texts)

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, values) of one text's row: what ``transform`` gives, without its per-call overhead."""
        if self._analyzer is None:
            self._analyzer = self.vectorizer.build_analyzer()
            self._index = self.vectorizer.vocabulary_
        counts: dict[int, int] = {}
        for gram in self._analyzer(text):
            j = self._index.get(gram)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.vectorizer.idf_[cols]  # sublinear tf * idf
        return cols, (values / np.linalg.norm(values)).astype(np.float32)

    @property
    def vocabulary(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.vectorizer.vocabulary_.items()}

    @property
    def idf(self) -> np.ndarray:
        return np.asarray(self.vectorizer.idf_, dtype=np.float64)
