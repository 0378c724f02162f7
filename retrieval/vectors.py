"""FAISS vector index over L2-normalised embeddings (inner product = cosine).

Exact ``IndexFlatIP`` for small collections; above ``approximate_above``
vectors an HNSW graph (default) or an IVF index.  Exact and IVF indexes move
to the GPU when faiss has one and ``device`` allows it.  Knows nothing about
chunks, text or BM25: rows are positions in the embedding matrix.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .config import RetrievalConfig

log = logging.getLogger(__name__)

VectorKind = Literal["flat", "hnsw", "ivf"]
MAX_IVF_LISTS = 1024
"""IVF list count is 4 x sqrt(n), capped here to keep training short on a CPU."""
SUBSET_BRUTE_FORCE = 20_000
"""Filtered searches over at most this many rows are done exactly with numpy."""


def choose_kind(count: int, config: RetrievalConfig) -> VectorKind:
    return config.approximate_kind if count > config.approximate_above else "flat"


@dataclass
class VectorIndex:
    """A FAISS index plus the kind and settings it was built with."""

    index: object
    kind: VectorKind
    dimension: int
    on_gpu: bool = False

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, config: RetrievalConfig, kind: VectorKind | None = None) -> "VectorIndex":
        """Index ``vectors`` (n, dim) float32; ``kind`` None picks by size."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        kind = kind or choose_kind(n, config)
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, config.hnsw_m * 2)
            index.hnsw.efSearch = config.hnsw_ef_search
        else:
            nlist = max(1, min(MAX_IVF_LISTS, int(4 * math.sqrt(n))))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = vectors
            if n > 64 * nlist:
                rng = np.random.default_rng(0)
                sample = vectors[rng.choice(n, 64 * nlist, replace=False)]
            index.train(sample)
            index.nprobe = min(config.ivf_nprobe, nlist)
        if n:
            index.add(vectors)
        log.debug("built %s index of %d vectors (dim %d)", kind, n, dim)
        return cls(index=index, kind=kind, dimension=dim)._maybe_gpu(config)

    def _maybe_gpu(self, config: RetrievalConfig) -> "VectorIndex":
        if config.device == "cpu" or self.kind == "hnsw":
            return self
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if gpus == 0:
            if config.device == "cuda":
                log.warning("retrieval.device is 'cuda' but faiss sees no GPU (faiss-cpu installed?); searching on CPU")
            return self
        self.index = faiss.index_cpu_to_all_gpus(self.index)
        self.on_gpu = True
        return self

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by inner product: (scores (q, k), rows (q, k)), rows -1 where fewer exist.

        ``allowed`` (sorted row numbers) restricts the search; small subsets are
        searched exactly with numpy over ``vectors`` (the embedding matrix).
        """
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(k, self.count if allowed is None else len(allowed)))
        if self.count == 0 or (allowed is not None and len(allowed) == 0):
            return (np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64))
        if allowed is not None and (len(allowed) <= SUBSET_BRUTE_FORCE or self.on_gpu) and vectors is not None:
            sims = queries @ vectors[allowed].T  # (q, len(allowed))
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
            top = np.take_along_axis(top, order, axis=1)
            return np.take_along_axis(sims, top, axis=1), allowed[top]
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.index.hnsw.efSearch)
            elif self.kind == "ivf":
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
            else:
                params = faiss.SearchParameters(sel=selector)
        # One query: a single thread is faster on a small shared CPU (measured 53 vs 160 ms at 100k
        # vectors on 2 busy cores); batches keep faiss's OpenMP threads.
        threads = faiss.omp_get_max_threads()
        if len(queries) == 1 and not self.on_gpu:
            faiss.omp_set_num_threads(1)
        try:
            scores, rows = self.index.search(queries, k, params=params) if params else self.index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)
        return scores, rows

    def save(self, path: Path) -> None:
        import faiss

        index = faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.index
        faiss.write_index(index, str(path))

    @classmethod
    def load(cls, path: Path, config: RetrievalConfig) -> "VectorIndex":
        import faiss

        index = faiss.read_index(str(path))
        kind: VectorKind = "hnsw" if isinstance(index, faiss.IndexHNSW) else (
            "ivf" if isinstance(index, faiss.IndexIVF) else "flat")
        if kind == "hnsw":
            index.hnsw.efSearch = config.hnsw_ef_search
        elif kind == "ivf":
            index.nprobe = config.ivf_nprobe
        return cls(index=index, kind=kind, dimension=index.d)._maybe_gpu(config)
