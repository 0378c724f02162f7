"""Each chunk's sentences, embedded one by one beside the chunk: how they are stored, embedded, checked
and used in ranking.

A question asks about one fact, and a chunk's single vector blurs it among the others, most of all
across languages; ``best`` gives each search candidate its best sentence's cosine, which
``KnowledgeIndex.search`` mixes with the chunk's own (``RetrievalConfig.sentence_weight``).  Storage: one
(n_sentences, dim) float16 array, chunk after chunk, and (n_chunks + 1,) int64 offsets (chunk i's
sentences are rows ``offsets[i]:offsets[i + 1]``; none for a chunk of one sentence, whose own vector stands
for it).  Knows nothing about files or the index's other parts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .chunking import sentences
from .types import Chunk


def part(vectors: np.ndarray, offsets: np.ndarray, row: int) -> np.ndarray:
    """Chunk ``row``'s sentence vectors, (k, dim), k >= 0."""
    return vectors[offsets[row]:offsets[row + 1]]


def join(parts: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, offsets) from one (k, dim) array per chunk, in chunk order."""
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    vectors = (np.concatenate([np.asarray(p, dtype=np.float16) for p in parts]) if lengths.sum()
               else np.zeros((0, dim), dtype=np.float16))
    return vectors, offsets


def embed(embedder, chunks: Sequence[Chunk], known: dict[str, np.ndarray], progress_above: int) -> list[np.ndarray]:
    """Each chunk's sentence vectors (float16): those of a chunk with the same content from ``known`` (by
    content hash), the others embedded (each distinct sentence once; a progress bar above ``progress_above``)."""
    split = {c.content_hash: sentences(c.text) for c in chunks if c.content_hash not in known}
    texts = list(dict.fromkeys(t for parts in split.values() for t in parts))
    vectors = (embedder.embed(texts, progress=len(texts) > progress_above) if texts
               else np.zeros((0, embedder.dimension), dtype=np.float32))
    row = {t: i for i, t in enumerate(texts)}
    empty = np.zeros((0, embedder.dimension), dtype=np.float16)
    out = []
    for c in chunks:
        if c.content_hash in known:
            out.append(known[c.content_hash])
        else:
            parts = split[c.content_hash]
            out.append(vectors[[row[t] for t in parts]].astype(np.float16) if parts else empty)
    return out


def misfit(vectors: np.ndarray, offsets: np.ndarray, count: int, dim: int) -> bool:
    """Whether stored ``vectors`` and ``offsets`` cannot belong to ``count`` chunks of dimension ``dim``."""
    return (offsets.shape != (count + 1,) or vectors.ndim != 2 or vectors.shape[1] != dim or offsets[0] != 0
            or offsets[-1] != len(vectors) or bool(np.any(np.diff(offsets) < 0)))


def best(vectors: np.ndarray, offsets: np.ndarray, candidates: np.ndarray, dense: np.ndarray,
         query_vec: np.ndarray) -> np.ndarray:
    """Each candidate's best sentence cosine to ``query_vec``; its own cosine (``dense``) where it has no
    sentence vectors."""
    starts, ends = offsets[candidates], offsets[candidates + 1]
    lengths = ends - starts
    has = lengths > 0
    out = dense.copy()
    if has.any():
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts[has], ends[has])])
        cosines = np.asarray(vectors[rows], dtype=np.float32) @ query_vec
        segments = np.concatenate([[0], np.cumsum(lengths[has])[:-1]])
        out[has] = np.maximum.reduceat(cosines, segments)
    return out
