"""``assistant index``: build, add to, remove from, list and search a retrieval index.

Wiring only: every command opens a ``retrieval.index.KnowledgeIndex`` and calls
it.  ``--index DIR`` picks the folder; without it the app's index under
ASSISTANT_HOME is used.  Heavy libraries are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("index", help="manage the document index used to answer questions",
                                   description="Build and query the hybrid FAISS + BM25 document index.")
    commands = parser.add_subparsers(dest="index_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--index", metavar="DIR", type=Path, default=None,
                       help="index folder (default: the app's index under ASSISTANT_HOME)")

    build = commands.add_parser("build", help="build a new index from files and folders (replaces the old one)")
    build.add_argument("paths", nargs="+", metavar="PATH", help=".md .txt .html .pdf .docx files, FAQ .csv/.json/.jsonl, or folders")
    build.add_argument("--model", default=None, help="multilingual-e5-small (the default), all-MiniLM-L6-v2, or a sentence-transformers name or folder")
    build.add_argument("--model-languages", default=None,
                       help="comma-separated ISO codes the model serves, '*' for all (default: en for all-MiniLM-L6-v2, * otherwise)")
    build.add_argument("--tag", action="append", default=[], help="tag the documents (repeatable)")
    common(build)
    build.set_defaults(handler=_build)

    add = commands.add_parser("add", help="add or update documents (unchanged ones are not re-embedded)")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--tag", action="append", default=[], help="tag the documents (repeatable)")
    common(add)
    add.set_defaults(handler=_add)

    remove = commands.add_parser("remove", help="remove a document by id or source path")
    remove.add_argument("doc", metavar="DOC", help="document id (see `assistant index list`) or its source path")
    common(remove)
    remove.set_defaults(handler=_remove)

    listing = commands.add_parser("list", help="list the indexed documents")
    listing.add_argument("--json", action="store_true", help="one JSON object per document")
    common(listing)
    listing.set_defaults(handler=_list)

    flagged = commands.add_parser("flagged", help="list passages held out of answers by screening "
                                                 "(text addressing the assistant, hidden text)")
    flagged.add_argument("--json", action="store_true", help="one JSON object per passage")
    common(flagged)
    flagged.set_defaults(handler=_flagged)

    allow = commands.add_parser("allow", help="let a document's flagged passages into answers")
    allow.add_argument("doc", metavar="DOC", help="document id or source path (see `assistant index flagged`)")
    allow.add_argument("--hold", action="store_true", help="hold them out of answers again")
    common(allow)
    allow.set_defaults(handler=_allow)

    search = commands.add_parser("search", help="search the index")
    search.add_argument("query")
    search.add_argument("--k", type=int, default=4, help="number of hits (default 4)")
    search.add_argument("--language", default=None, help="ISO code of the query (default: detected)")
    search.add_argument("--doc", action="append", default=None, help="only this document id (repeatable)")
    search.add_argument("--tag", action="append", default=None, help="only documents with this tag (repeatable)")
    search.add_argument("--json", action="store_true", help="one JSON object per hit, best first")
    common(search)
    search.set_defaults(handler=_search)

    parser.set_defaults(handler=lambda args: (parser.print_help(), 1)[1])


def _folder(args) -> Path:
    if args.index is not None:
        return Path(args.index).expanduser()
    from assistant.config import assistant_home

    return assistant_home() / "index"


def _print_report(report) -> None:
    for error in report.errors:
        print(f"failed: {error}", file=sys.stderr)
    print(report.summary())


def _build(args) -> int:
    from retrieval.embedding import load_embedder
    from retrieval.index import KnowledgeIndex

    languages = tuple(x.strip() for x in args.model_languages.split(",")) if args.model_languages else None
    folder = _folder(args)
    index = KnowledgeIndex.create(folder, load_embedder(args.model, languages=languages))
    report = index.add_paths(args.paths, tags=args.tag)
    if not index.documents():
        _print_report(report)
        print(f"error: nothing could be ingested; the index at {folder} was left unchanged", file=sys.stderr)
        return 2
    index.save()
    _print_report(report)
    print(f"index written to {folder} ({len(index.chunks)} chunks, {index.vector_kind} vectors)")
    return 1 if report.errors else 0


def _open(args):
    from retrieval.index import KnowledgeIndex

    return KnowledgeIndex.load(_folder(args))


def _add(args) -> int:
    index = _open(args)
    report = index.add_paths(args.paths, tags=args.tag)
    if index.dirty:
        index.save()
    _print_report(report)
    return 1 if report.errors else 0


def _remove(args) -> int:
    index = _open(args)
    info = index.remove(args.doc)
    index.save()
    print(f"removed {info.doc_id} ({info.source}, {info.chunks} chunks)")
    return 0


def _list(args) -> int:
    from dataclasses import asdict

    index = _open(args)
    docs = index.documents()
    for doc in docs:
        if args.json:
            print(json.dumps(asdict(doc), ensure_ascii=False))
        else:
            tags = f" [{', '.join(doc.tags)}]" if doc.tags else ""
            flagged = (f" ({doc.flagged} flagged, {'allowed' if doc.allowed else 'held'})") if doc.flagged else ""
            print(f"{doc.doc_id}\t{doc.kind}\t{doc.chunks} chunks\t{','.join(doc.languages)}\t{doc.source}{tags}"
                  f"{flagged}")
    if not args.json:
        print(f"{len(docs)} documents, {len(index.chunks)} chunks, model {index.embedder.name}", file=sys.stderr)
    return 0


def _flagged(args) -> int:
    from dataclasses import asdict

    index = _open(args)
    passages = index.flagged()
    for p in passages:
        if args.json:
            print(json.dumps(asdict(p), ensure_ascii=False))
        else:
            state = "allowed" if p.allowed else "held"
            text = " ".join(p.text.split())
            print(f"{p.doc_id}\t{p.source}\tpassage {p.position + 1}\t{state}\n    why: {'; '.join(p.flags)}"
                  f"\n    {text[:300]}")
    if not args.json:
        held = sum(1 for p in passages if not p.allowed)
        print(f"{len(passages)} flagged passages, {held} held out of answers; let a document's in with: "
              f"assistant index allow DOC", file=sys.stderr)
    return 0


def _allow(args) -> int:
    index = _open(args)
    info = index.allow(args.doc, allowed=not args.hold)
    index.save()
    state = "held out of answers" if args.hold else "allowed in answers"
    print(f"{info.doc_id} ({info.source}): {info.flagged} flagged passage(s) {state}")
    return 0


def _search(args) -> int:
    from dataclasses import asdict

    index = _open(args)
    hits = index.search(args.query, k=args.k, language=args.language, doc_ids=args.doc, tags=args.tag)
    if not hits and not args.json:
        print("no relevant passage found", file=sys.stderr)
    for rank, hit in enumerate(hits, start=1):
        if args.json:
            print(json.dumps(asdict(hit), ensure_ascii=False))
            continue
        where = hit.source + (f" p.{hit.page}" if hit.page else "") + (f" — {hit.heading}" if hit.heading else "")
        print(f"{rank}. score {hit.score:.3f} (dense {hit.dense_score:.3f}, bm25 {hit.bm25_score:.2f})  {where}")
        text = " ".join(hit.text.split())
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0
