"""Documents → chunks → embeddings → FAISS + BM25 index on disk → search.

This package knows nothing about the LLM, the chat engine or the UI.  The
engine calls ``default_index()`` once at start and ``KnowledgeIndex.search``
per question; the CLI (``assistant index ...``) manages index folders.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge" / "docs"
"""The default knowledge base shipped with the project (user guide in English and Chinese)."""
DEFAULT_TAG = "default"
PREVIOUS_DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
"""An index built with the embedder that was the default before multilingual-e5-small is embedded
again on first start (an index built with any other model gives the usual rebuild message)."""


def default_index(home: Path | None = None, embedder=None):
    """Open ``home/index`` (``assistant_home()/index`` when None), building it from knowledge/docs when missing."""
    from assistant import progress
    from assistant.config import assistant_home
    from assistant.errors import IndexNotBuiltError

    from .embedding import load_embedder
    from .index import KnowledgeIndex
    from .store import MANIFEST

    folder = Path(home if home is not None else assistant_home()) / "index"
    if (folder / MANIFEST).is_file():
        if embedder is not None:
            from . import store

            manifest = store.read_manifest(folder)
            built_with = manifest["embedding_model"]
            if built_with == PREVIOUS_DEFAULT_EMBEDDER and embedder.name != built_with:
                # The default embedder changed (all-MiniLM-L6-v2 -> multilingual-e5-small):
                # the same documents and chunks, embedded again once.
                with progress.step(f"embedding the index again with {embedder.name} (once)", log=log,
                                   detail=f"{folder} was built with {built_with}"):
                    index = KnowledgeIndex.load(folder, _Recorded(
                        manifest["embedding_model"], int(manifest["dimension"]),
                        tuple(manifest.get("embedder_languages") or ("*",))))
                    index.reembed(embedder)
                    index.save()
                return index
        return KnowledgeIndex.load(folder, embedder)
    if not DEFAULT_KNOWLEDGE.is_dir():
        raise IndexNotBuiltError(
            f"no index at {folder} and the default knowledge base {DEFAULT_KNOWLEDGE} is missing; "
            f"build one with: assistant index build PATH --index {folder}")
    with progress.step("indexing the user guide (once)", log=log, detail=f"{DEFAULT_KNOWLEDGE} -> {folder}"):
        index = KnowledgeIndex.create(folder, embedder if embedder is not None else load_embedder())
        report = index.add_paths([DEFAULT_KNOWLEDGE], tags=(DEFAULT_TAG,))
        index.save()
    for error in report.errors:
        log.warning("default knowledge base: %s", error)
    return index


class _Recorded:
    """The embedder an index records, standing in to open it (no model loaded) until ``reembed``."""

    def __init__(self, name: str, dimension: int, languages: tuple[str, ...]) -> None:
        self.name, self.dimension, self.languages = name, dimension, languages

    def embed(self, texts, *, batch_size: int = 64, progress: bool = False):
        raise RuntimeError(f"{self.name} is only recorded here; re-embed the index first")
