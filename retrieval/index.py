"""KnowledgeIndex: ingest documents, keep a hybrid FAISS + BM25 index on disk, search it.

Ties the pieces together: readers → chunking → embedder → vectors/lexical →
store.  Embeddings are cached by chunk content hash, so adding, updating or
removing documents never re-embeds unchanged chunks.  Changes live in memory
until ``save()`` (atomic).  Knows nothing about the LLM or the chat engine;
not safe for concurrent writers (one process owns an index folder).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from assistant.errors import DataFormatError, IndexCorruptError, InputError

from . import store
from . import sentence_vectors as sv
from .chunking import chunk_document, embedding_text, make_doc_id
from .config import RetrievalConfig
from .embedding import Embedder, embed_query, load_embedder
from .files import expand, reason, upload_name
from .fusion import fuse, language_coverage, relevance, relevance_floor, spread, top_positive
from .lexical import LexicalIndex
from .readers import extract, supported_suffixes
from .screening import screen
from .text import PREVIOUS_TOKENIZERS, TOKENIZER_NAME, detect_language
from .types import Chunk, DocumentInfo, ExtractedDocument, FileError, FlaggedPassage, Hit, IngestReport
from .vectors import VectorIndex

log = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "dense", "bm25"]
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
PROGRESS_ABOVE = 256
"""Show a progress bar when embedding more chunks (or sentences) than this."""


@dataclass
class _Doc:
    """Per-document record kept in the manifest."""

    doc_id: str
    source: str
    title: str
    kind: str
    content_hash: str
    tags: tuple[str, ...] = ()
    added_at: str = ""
    allowed: bool = False
    """An administrator allowed the chunks screening flagged (``KnowledgeIndex.allow``); a changed file
    is screened again and held again."""


@dataclass
class KnowledgeIndex:
    """Chunks, their embeddings, and the FAISS and BM25 indexes over them."""

    folder: Path
    embedder: Embedder
    config: RetrievalConfig = field(default_factory=RetrievalConfig)
    chunks: list[Chunk] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # (n_chunks, dim) float32, rows L2-normalised
    sentence_vectors: np.ndarray | None = None  # (n_sentences, dim) float16, see retrieval.sentence_vectors
    sentence_offsets: np.ndarray | None = None  # (n_chunks + 1,); both None: built without them, ranks by chunks
    _docs: dict[str, _Doc] = field(default_factory=dict)
    _vectors: VectorIndex | None = None
    _lexical: LexicalIndex | None = None
    _held: np.ndarray | None = None  # rows of flagged chunks of documents not allowed
    _generation: str | None = None
    _dirty: bool = False
    _languages: dict[str, int] | None = None

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, folder: str | Path, embedder: Embedder, config: RetrievalConfig | None = None) -> "KnowledgeIndex":
        """A new, empty index that will be saved in ``folder`` (an existing index there is replaced on save)."""
        index = cls(folder=Path(folder), embedder=embedder, config=config or RetrievalConfig())
        index.embeddings = np.zeros((0, embedder.dimension), dtype=np.float32)
        if index.config.sentence_weight > 0:
            index._set_sentences([])
        index._rebuild()
        return index

    @classmethod
    def load(cls, folder: str | Path, embedder: Embedder | None = None,
             config: RetrievalConfig | None = None) -> "KnowledgeIndex":
        """Open a saved index; loads the embedding model named in its manifest when ``embedder`` is None.

        Raises IndexNotBuiltError when there is none, IndexCorruptError when a
        file is broken or ``embedder`` is not the model the index was built with.
        """
        folder = Path(folder)
        config = config or RetrievalConfig()
        manifest = store.read_manifest(folder)
        if embedder is None:
            embedder = load_embedder(manifest["embedding_model"],
                                     languages=tuple(manifest.get("embedder_languages") or ()) or None)
        if embedder.name != manifest["embedding_model"] or embedder.dimension != manifest["dimension"]:
            raise IndexCorruptError(
                f"index {folder} was built with embedding model {manifest['embedding_model']!r} "
                f"(dimension {manifest['dimension']}), but {embedder.name!r} (dimension {embedder.dimension}) "
                f"was given; load it with that model, or {store.rebuild_hint(folder)}")
        if manifest["tokenizer"] != TOKENIZER_NAME and manifest["tokenizer"] not in PREVIOUS_TOKENIZERS:
            raise IndexCorruptError(
                f"index {folder} uses tokenizer {manifest['tokenizer']!r}, this version uses {TOKENIZER_NAME!r}; "
                f"{store.rebuild_hint(folder)}")
        gen = store.generation_folder(folder, manifest)
        chunks = store.read_chunks(folder, gen)
        embeddings = store.read_embeddings(folder, gen)
        count = int(manifest["count"])
        if len(chunks) != count or embeddings.shape != (count, embedder.dimension):
            raise IndexCorruptError(
                f"index {folder}: manifest says {count} chunks, found {len(chunks)} chunks and embeddings "
                f"of shape {embeddings.shape}; {store.rebuild_hint(folder)}")
        try:
            vectors = VectorIndex.load(gen / store.VECTORS, config)
            lexical = LexicalIndex.load(gen / store.BM25_DIR, count)
        except Exception as exc:  # faiss / bm25s raise assorted errors on damaged files
            raise IndexCorruptError(f"index {folder}: cannot read {gen.name} ({exc}); {store.rebuild_hint(folder)}") from exc
        if vectors.count != count or lexical.count != count:
            raise IndexCorruptError(f"index {folder}: vector/BM25 sizes disagree with {count} chunks; "
                                    f"{store.rebuild_hint(folder)}")
        retokenized = manifest["tokenizer"] != TOKENIZER_NAME
        if retokenized:  # an older version's words (PREVIOUS_TOKENIZERS): made again from the stored text
            log.info("index %s: its word index was built with tokenizer %r; made again with %r from the stored "
                     "text (nothing is embedded again), kept at the next save", folder, manifest["tokenizer"],
                     TOKENIZER_NAME)
            lexical = LexicalIndex.of_texts(embedding_text(c) for c in chunks)
        sentence_vectors = sentence_offsets = None
        if manifest.get("sentence_vectors"):
            sentence_vectors = store.read_array(folder, gen, store.SENTENCES, mmap=True)
            sentence_offsets = np.asarray(store.read_array(folder, gen, store.SENTENCE_OFFSETS), dtype=np.int64)
            if sv.misfit(sentence_vectors, sentence_offsets, count, embedder.dimension):
                raise IndexCorruptError(
                    f"index {folder}: the sentence vectors ({sentence_vectors.shape}) and their offsets "
                    f"({sentence_offsets.shape}) do not fit {count} chunks; {store.rebuild_hint(folder)}")
        elif count and config.sentence_weight > 0:
            log.info("index %s was built without sentence vectors: search ranks whole passages until it is "
                     "rebuilt or documents are added (%s)", folder, store.rebuild_hint(folder))
        docs = {}
        for doc_id, row in manifest["documents"].items():
            row["tags"] = tuple(row.get("tags", ()))
            docs[doc_id] = _Doc(**row)
        if not manifest.get("screened"):
            # Built before screening existed: screen the stored text now (the phrase rules; the files'
            # hidden styling is known only when they are read again).
            chunks = [replace(c, flags=tuple(map(str, screen(embedding_text(c))))) for c in chunks]
        index = cls(folder=folder, embedder=embedder, config=config, chunks=chunks, embeddings=embeddings,
                    sentence_vectors=sentence_vectors, sentence_offsets=sentence_offsets,
                    _docs=docs, _vectors=vectors, _lexical=lexical, _generation=manifest["generation"],
                    _dirty=retokenized)
        index._hold()
        return index

    # ---- ingestion -------------------------------------------------------------------------

    def add_paths(self, paths: Sequence[str | Path], tags: Sequence[str] = ()) -> IngestReport:
        """Ingest files and folders (recursively); unreadable files are reported, the others still ingest."""
        started = time.perf_counter()
        report = IngestReport()
        extracted: list[ExtractedDocument] = []
        for file in expand(paths, report, exclude=self.folder):
            try:
                extracted.append(extract(str(file.resolve()), file.read_bytes()))
            except (DataFormatError, OSError) as exc:
                report.errors.append(FileError(str(file), reason(exc, str(file.resolve()))))
                log.warning("skipped %s: %s", file, reason(exc, str(file.resolve())))
        self.add_documents(extracted, tags=tags, report=report)
        report.seconds = time.perf_counter() - started
        return report

    def add_upload(self, filename: str, data: bytes, tags: Sequence[str] = ()) -> IngestReport:
        """Ingest uploaded bytes; the source is ``upload:FILENAME``.  Bad files raise InputError."""
        name = upload_name(filename)
        if Path(name).suffix.lower() not in supported_suffixes():
            raise InputError(f"upload {filename!r}: unsupported file type; supported: {', '.join(supported_suffixes())}")
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"upload {name}: {len(data)} bytes is over the {MAX_UPLOAD_BYTES // 2**20} MB limit; split it")
        started = time.perf_counter()
        try:
            doc = extract(f"upload:{name}", data)
        except DataFormatError as exc:
            raise InputError(str(exc)) from exc
        report = self.add_documents([doc], tags=tags)
        report.seconds = time.perf_counter() - started
        return report

    def add_documents(self, docs: Sequence[ExtractedDocument], tags: Sequence[str] = (),
                      report: IngestReport | None = None) -> IngestReport:
        """Add or update extracted documents; re-embeds only chunks whose content is new."""
        report = report or IngestReport()
        tags = tuple(tags)
        new_chunks: list[Chunk] = []
        replaced: set[str] = set()
        for doc in docs:
            doc_id = make_doc_id(doc.source)
            old = self._docs.get(doc_id)
            if old and old.content_hash == doc.content_hash and old.tags == tags:
                report.unchanged.append(doc_id)
                continue
            chunks = chunk_document(doc, doc_id, chunk_tokens=self.config.chunk_tokens,
                                    overlap_tokens=self.config.overlap_tokens, tags=tags)
            chunks = [replace(c, flags=tuple(map(str, screen(embedding_text(c), doc.hidden)))) for c in chunks]
            flagged = sum(1 for c in chunks if c.flags)
            if flagged:
                report.flagged[doc_id] = flagged
                log.warning("%s: %d passage(s) flagged by screening (%s); held out of answers until allowed",
                            doc.source, flagged, next(c.flags[0] for c in chunks if c.flags))
            (report.updated if old else report.added).append(doc_id)
            replaced.add(doc_id)
            # Same bytes (only the tags changed): an administrator's allowance stands.
            allowed = bool(old and old.allowed and old.content_hash == doc.content_hash)
            self._docs[doc_id] = _Doc(doc_id=doc_id, source=doc.source, title=doc.title, kind=doc.kind,
                                      content_hash=doc.content_hash, tags=tags, added_at=store.now(),
                                      allowed=allowed)
            new_chunks.extend(chunks)
        if not replaced:
            return report
        cache = {c.content_hash: row for row, c in enumerate(self.chunks)}
        missing = [c for c in dict.fromkeys(c.content_hash for c in new_chunks) if c not in cache]
        by_hash = {c.content_hash: c for c in new_chunks}
        fresh = self.embedder.embed([embedding_text(by_hash[h]) for h in missing],
                                    progress=len(missing) > PROGRESS_ABOVE) if missing else None
        new_rows = np.zeros((len(new_chunks), self.embedder.dimension), dtype=np.float32)
        fresh_row = {h: i for i, h in enumerate(missing)}
        for i, chunk in enumerate(new_chunks):
            h = chunk.content_hash
            new_rows[i] = fresh[fresh_row[h]] if h in fresh_row else self.embeddings[cache[h]]
        keep = [i for i, c in enumerate(self.chunks) if c.doc_id not in replaced]
        if self.config.sentence_weight > 0:
            if self.sentence_offsets is None and self.chunks:
                log.info("index %s: embedding the sentences of its %d passages (built without them)",
                         self.folder, len(self.chunks))
                self.add_sentence_vectors()
            known = {c.content_hash: self._sentences_of(row) for row, c in enumerate(self.chunks)}
            fresh_sentences = sv.embed(self.embedder, new_chunks, known, PROGRESS_ABOVE)
            self._set_sentences([self._sentences_of(i) for i in keep] + fresh_sentences)
        else:  # not kept up to date from here on: dropped, so that none are saved out of step with the chunks
            self.sentence_vectors = self.sentence_offsets = None
        self.chunks = [self.chunks[i] for i in keep] + new_chunks
        self.embeddings = np.concatenate([self.embeddings[keep], new_rows]) if keep else new_rows
        report.chunks_added += len(new_chunks)
        report.chunks_embedded += len(missing)
        self._rebuild()
        return report

    def remove(self, doc_id_or_source: str) -> DocumentInfo:
        """Remove one document by id or source (path, resolved path or ``upload:NAME``)."""
        doc = self._find(doc_id_or_source)
        info = self._info(doc)
        keep = [i for i, c in enumerate(self.chunks) if c.doc_id != doc.doc_id]
        if self.sentence_offsets is not None:
            self._set_sentences([self._sentences_of(i) for i in keep])
        self.chunks = [self.chunks[i] for i in keep]
        self.embeddings = self.embeddings[keep]
        del self._docs[doc.doc_id]
        self._rebuild()
        return info

    def documents(self) -> list[DocumentInfo]:
        """Every document, in the order it was added."""
        counts: dict[str, int] = {}
        flagged: dict[str, int] = {}
        languages: dict[str, set[str]] = {}
        for c in self.chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
            flagged[c.doc_id] = flagged.get(c.doc_id, 0) + bool(c.flags)
            languages.setdefault(c.doc_id, set()).add(c.language)
        return [self._info(doc, counts.get(doc.doc_id, 0), languages.get(doc.doc_id, set()),
                           flagged.get(doc.doc_id, 0)) for doc in self._docs.values()]

    def languages(self) -> dict[str, int]:
        """How many chunks are written in each language, most first ("" for none detected)."""
        if self._languages is None:
            counts: dict[str, int] = {}
            for c in self.chunks:
                counts[c.language] = counts.get(c.language, 0) + 1
            self._languages = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        return self._languages

    def flagged(self) -> list[FlaggedPassage]:
        """Every chunk screening flagged (``retrieval.screening``), held or allowed, in index order."""
        return [FlaggedPassage(doc_id=c.doc_id, source=c.source, title=c.title, chunk_id=c.chunk_id,
                               position=c.position, text=c.text, flags=c.flags,
                               allowed=self._docs[c.doc_id].allowed) for c in self.chunks if c.flags]

    def allow(self, doc_id_or_source: str, allowed: bool = True) -> DocumentInfo:
        """Let a document's flagged chunks into answers (``allowed=False``: hold them again).  Call
        ``save`` to keep it; re-adding the file with changed content holds them again."""
        doc = self._find(doc_id_or_source)
        doc.allowed = allowed
        self._hold()
        self._dirty = True
        return self._info(doc)

    def reembed(self, embedder: Embedder) -> None:
        """Switch to another embedding model: every chunk embedded again, documents, chunks and
        tags kept (nothing re-read from the source files).  Call ``save`` to keep it."""
        texts = [embedding_text(c) for c in self.chunks]
        self.embedder = embedder
        self.embeddings = (embedder.embed(texts) if texts
                           else np.zeros((0, embedder.dimension), dtype=np.float32))
        self.sentence_vectors = self.sentence_offsets = None
        self.add_sentence_vectors()
        self._rebuild()

    def add_sentence_vectors(self) -> bool:
        """Embed the sentences of an index built without them (an older version); False when there is
        nothing to do (it has them, it is empty, or ``sentence_weight`` is 0).  Call ``save`` to keep them."""
        if self.sentence_offsets is not None or not self.chunks or self.config.sentence_weight <= 0:
            return False
        self._set_sentences(sv.embed(self.embedder, self.chunks, {}, PROGRESS_ABOVE))
        self._dirty = True
        return True

    def save(self) -> None:
        """Write the index atomically (a crash mid-write leaves the previous one usable)."""
        documents = {doc_id: asdict(doc) for doc_id, doc in self._docs.items()}
        manifest = {
            "format": store.FORMAT_VERSION, "generation": self._generation,
            "embedding_model": self.embedder.name, "dimension": self.embedder.dimension,
            "embedder_languages": list(self.embedder.languages), "tokenizer": TOKENIZER_NAME,
            "vector_index": self._vectors.kind, "count": len(self.chunks), "documents": documents,
            "screened": True, "sentence_vectors": self.sentence_offsets is not None,
        }
        arrays = {}
        if self.sentence_offsets is not None:
            arrays = {store.SENTENCES: self.sentence_vectors, store.SENTENCE_OFFSETS: self.sentence_offsets}
        self._generation = store.write_generation(self.folder, manifest, self.chunks, self.embeddings,
                                                  self._vectors.save, self._lexical.save, arrays)
        self._dirty = False

    @property
    def dirty(self) -> bool:
        """True when there are changes not yet saved."""
        return self._dirty

    @property
    def vector_kind(self) -> str:
        return self._vectors.kind

    # ---- search ----------------------------------------------------------------------------

    def search(self, query: str, k: int = 4, language: str | None = None, doc_ids: Sequence[str] | None = None,
               tags: Sequence[str] | None = None, mode: SearchMode = "hybrid",
               floor: bool = True) -> list[Hit]:
        """Best ``k`` chunks for ``query``; [] when nothing passes the relevance floor.

        ``language`` is the query's ISO code (detected when None); it decides how
        much the dense side counts.  ``doc_ids`` / ``tags`` restrict the search.
        ``mode`` and ``floor`` exist for benchmarks and diagnostics.
        """
        if not isinstance(query, str) or not query.strip():
            raise InputError("search query is empty; give a question or keywords")
        if k < 1:
            raise InputError(f"search k must be >= 1; got {k}")
        if not self.chunks:
            return []
        allowed = self._allowed_rows(doc_ids, tags)
        if allowed is not None and len(allowed) == 0:
            return []
        language = (language or detect_language(query)).lower().replace("_", "-").split("-")[0]  # zh-CN -> zh
        coverage = language_coverage(language, tuple(self.embedder.languages), self.config.uncertain_coverage)
        weight = {"hybrid": self.config.dense_weight * coverage, "dense": 1.0, "bm25": 0.0}[mode]
        n_cand = max(self.config.candidates, k)

        held = self._held if allowed is None else None  # with a filter, ``allowed`` already leaves them out
        bm25_all = self._lexical.scores(query)  # (n_chunks,)
        if allowed is not None:
            masked = np.zeros_like(bm25_all)
            masked[allowed] = bm25_all[allowed]
            bm25_all = masked
        elif held is not None:
            bm25_all[held] = 0.0
        candidates = [] if weight >= 1.0 else top_positive(bm25_all, n_cand)
        query_vec = None
        if weight > 0:
            query_vec = embed_query(self.embedder, [query])[0]  # (dim,)
            extra = 0 if held is None else len(held)  # ask for more, then drop the held rows
            _, rows = self._vectors.search(query_vec[None, :], n_cand + extra, allowed, self.embeddings)
            found = rows[0][rows[0] >= 0]
            if held is not None:
                found = found[~np.isin(found, held)][:n_cand]
            candidates = np.unique(np.concatenate([np.asarray(candidates, np.int64), found]))
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.size == 0:
            return []
        dense = self.embeddings[candidates] @ query_vec if query_vec is not None else np.zeros(len(candidates), np.float32)
        bm25 = bm25_all[candidates]
        baseline = float(getattr(self.embedder, "cosine_baseline", 0.0))
        cover = self._lexical.coverage(query, candidates)  # share of the query's IDF mass in each
        confidence = 0.0
        if bm25.size and float(bm25.max()) > 0:
            confidence = min(1.0, float(cover[int(np.argmax(bm25))]) / self.config.lexical_confidence_coverage)
        ranking = dense if query_vec is None else self._with_sentences(candidates, dense, query_vec)
        fused = fuse(ranking, bm25, weight, baseline if query_vec is not None else 0.0, confidence)
        if floor:
            calibrated = (dense - baseline) / (1.0 - baseline)  # unrelated texts' cosine -> 0
            ok = relevance(calibrated, cover, weight) >= relevance_floor(self.config, weight)
            if coverage > 0 and weight > 0 and getattr(self.embedder, "cross_lingual", False):
                # A chunk in another language shares no words with the query: only the
                # (multilingual) dense side can judge it, against its own, lower floor.
                other = np.array([self.chunks[int(c)].language not in (language, "") for c in candidates])
                ok |= other & (calibrated >= self.config.min_relevance_cross)
                ok |= ((calibrated >= self.config.min_relevance_dense)
                       & (spread(self.embeddings, query_vec, dense) >= self.config.min_spread_dense))
            candidates, dense, bm25, fused = candidates[ok], dense[ok], bm25[ok], fused[ok]
        order = np.argsort(-fused, kind="stable")[:k]
        return [self._hit(int(candidates[i]), float(dense[i]), float(bm25[i]), float(fused[i])) for i in order]

    # ---- internals -------------------------------------------------------------------------

    def _with_sentences(self, candidates: np.ndarray, dense: np.ndarray, query_vec: np.ndarray) -> np.ndarray:
        """The candidates' dense scores for ranking: ``sentence_weight`` of each from its best sentence's
        cosine (``sentence_vectors.best``), the rest from the chunk's own (``dense``); ``dense`` itself where
        there are no sentence vectors."""
        w = self.config.sentence_weight
        if self.sentence_offsets is None or w <= 0:
            return dense
        top = sv.best(self.sentence_vectors, self.sentence_offsets, candidates, dense, query_vec)
        return (1.0 - w) * dense + w * top

    def _sentences_of(self, row: int) -> np.ndarray:
        return sv.part(self.sentence_vectors, self.sentence_offsets, row)

    def _set_sentences(self, parts: Sequence[np.ndarray]) -> None:
        self.sentence_vectors, self.sentence_offsets = sv.join(parts, self.embedder.dimension)

    def _rebuild(self) -> None:
        self._vectors = VectorIndex.build(self.embeddings, self.config)
        self._lexical = LexicalIndex.of_texts(embedding_text(c) for c in self.chunks)
        self._languages = None  # the chunks changed: count them again when asked
        self._hold()
        self._dirty = True

    def _hold(self) -> None:
        if not self.config.hold_flagged:
            self._held = None
            return
        held = [i for i, c in enumerate(self.chunks) if c.flags and not self._docs[c.doc_id].allowed]
        self._held = np.asarray(held, dtype=np.int64) if held else None

    def _allowed_rows(self, doc_ids: Sequence[str] | None, tags: Sequence[str] | None) -> np.ndarray | None:
        if not doc_ids and not tags:
            return None  # held rows, if any, are left out by ``search`` itself
        held = set(self._held.tolist()) if self._held is not None else set()
        wanted_docs = {self._find(d).doc_id for d in doc_ids} if doc_ids else None
        wanted_tags = set(tags or ())
        rows = [i for i, c in enumerate(self.chunks)
                if (wanted_docs is None or c.doc_id in wanted_docs) and (not wanted_tags or wanted_tags & set(c.tags))
                and i not in held]
        return np.asarray(rows, dtype=np.int64)

    def _find(self, key: str) -> _Doc:
        if key in self._docs:
            return self._docs[key]
        candidates = {key, f"upload:{key}"}
        try:
            candidates.add(str(Path(key).expanduser().resolve()))
        except OSError:
            pass
        for doc in self._docs.values():
            if doc.source in candidates:
                return doc
        raise InputError(f"no document {key!r} in index {self.folder}; list them with: "
                         f"assistant index list --index {self.folder}")

    def _info(self, doc: _Doc, chunks: int | None = None, languages: set[str] | None = None,
              flagged: int | None = None) -> DocumentInfo:
        if chunks is None:
            own = [c for c in self.chunks if c.doc_id == doc.doc_id]
            chunks, languages, flagged = len(own), {c.language for c in own}, sum(1 for c in own if c.flags)
        return DocumentInfo(doc_id=doc.doc_id, source=doc.source, title=doc.title, kind=doc.kind,
                            content_hash=doc.content_hash, chunks=chunks, languages=tuple(sorted(languages or ())),
                            tags=doc.tags, added_at=doc.added_at, flagged=flagged or 0, allowed=doc.allowed)

    def _hit(self, row: int, dense: float, bm25: float, fused: float) -> Hit:
        c = self.chunks[row]
        return Hit(chunk_id=c.chunk_id, doc_id=c.doc_id, text=c.text, source=c.source, title=c.title,
                   heading=c.heading_path, page=c.page, language=c.language, dense_score=dense,
                   bm25_score=bm25, score=fused, position=c.position, tags=c.tags)
