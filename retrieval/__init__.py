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


def default_index(home: Path | None = None, embedder=None):
    """Open ``home/index`` (``assistant_home()/index`` when None), building it from knowledge/docs when missing."""
    from assistant.config import assistant_home
    from assistant.errors import IndexNotBuiltError

    from .embedding import load_embedder
    from .index import KnowledgeIndex
    from .store import MANIFEST

    folder = Path(home if home is not None else assistant_home()) / "index"
    if (folder / MANIFEST).is_file():
        return KnowledgeIndex.load(folder, embedder)
    if not DEFAULT_KNOWLEDGE.is_dir():
        raise IndexNotBuiltError(
            f"no index at {folder} and the default knowledge base {DEFAULT_KNOWLEDGE} is missing; "
            f"build one with: assistant index build PATH --index {folder}")
    log.info("building the default index at %s from %s", folder, DEFAULT_KNOWLEDGE)
    index = KnowledgeIndex.create(folder, embedder if embedder is not None else load_embedder())
    report = index.add_paths([DEFAULT_KNOWLEDGE], tags=(DEFAULT_TAG,))
    for error in report.errors:
        log.warning("default knowledge base: %s", error)
    index.save()
    return index
