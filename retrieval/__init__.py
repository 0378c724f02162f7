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
                return refresh_guide(index)
        index = KnowledgeIndex.load(folder, embedder)
        if index.sentence_offsets is None and index.chunks and index.config.sentence_weight > 0:
            # Built before the index kept sentence vectors: the same chunks, their sentences embedded once.
            with progress.step(f"embedding the sentences of the index's {len(index.chunks)} passages (once)",
                               log=log, detail=str(folder)):
                index.add_sentence_vectors()
        if index.dirty:  # sentence vectors embedded, or the word index made again (an older tokenizer)
            index.save()
        return refresh_guide(index)
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


def refresh_guide(index, knowledge: Path | None = None):
    """Bring the user guide's pages an index holds up to date with the shipped ones (after an upgrade).

    Only documents added as the default knowledge base (tag ``default``) are touched: a page whose text
    changed is indexed again (only its new chunks embedded), a page no longer shipped is removed.  A
    page an administrator removed stays removed, and a page new in this version is not added (the
    support team may have replaced the guide on purpose): the log names it with the command that adds it.
    """
    from .files import expand
    from .types import IngestReport

    knowledge = Path(knowledge or DEFAULT_KNOWLEDGE)
    if not knowledge.is_dir():
        return index
    shipped = {_guide_page(str(f.resolve()), knowledge): f for f in expand([knowledge], IngestReport(), exclude=index.folder)}
    held = {}
    for doc in index.documents():
        page = _guide_page(doc.source, knowledge) if DEFAULT_TAG in doc.tags else None
        if page is not None:
            held[page] = doc
    changed = []
    for page, doc in held.items():
        file = shipped.get(page)
        if file is None:
            index.remove(doc.doc_id)
            changed.append(f"{page} removed (no longer shipped)")
        elif doc.source != str(file.resolve()):  # the installation moved: the page's id follows its path
            if index.add_paths([file], tags=doc.tags).errors:  # first, so that unchanged chunks keep their vectors
                continue  # unreadable where it is now (add_paths logged why): the indexed copy stays
            index.remove(doc.doc_id)
            changed.append(f"{page} moved")
        elif index.add_paths([file], tags=doc.tags).updated:
            changed.append(f"{page} updated")
    if changed:
        try:
            index.save()
        except OSError as exc:  # a read-only or full disk: answer from the updated pages, try again next start
            log.warning("could not save the user guide's update in %s (%s); it is in use until the server stops",
                        index.folder, exc)
        log.info("user guide in %s brought up to date: %s", index.folder, "; ".join(changed))
    new = sorted(set(shipped) - set(held))
    if held and new:
        log.info("the user guide has pages this index does not hold (%s); add them with: assistant index add %s "
                 "--index %s", ", ".join(new), " ".join(str(shipped[p]) for p in new), index.folder)
    return index


def _guide_page(source: str, knowledge: Path) -> str | None:
    """A guide page's path inside the knowledge folder ("en/explain.md"), wherever it was indexed from;
    None for any other source."""
    path = source.replace("\\", "/")
    root = str(knowledge.resolve()).replace("\\", "/").rstrip("/") + "/"
    if path.startswith(root):
        return path[len(root):]
    marker = "/" + "/".join(knowledge.resolve().parts[-2:]) + "/"  # "/knowledge/docs/"
    return path.split(marker, 1)[1] if marker in path else None


class _Recorded:
    """The embedder an index records, standing in to open it (no model loaded) until ``reembed``."""

    def __init__(self, name: str, dimension: int, languages: tuple[str, ...]) -> None:
        self.name, self.dimension, self.languages = name, dimension, languages

    def embed(self, texts, *, batch_size: int = 64, progress: bool = False):
        raise RuntimeError(f"{self.name} is only recorded here; re-embed the index first")
