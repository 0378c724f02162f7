"""The index folder on disk: manifest, generations, atomic writes, checks.

Layout::

    INDEX/manifest.json          which generation is current, embedding model,
                                 dimension, tokenizer, library versions, documents
    INDEX/gen-000007-ab12cd/     chunks.jsonl, embeddings.npy, vectors.faiss, bm25/,
                                 sentences.npy + sentence_offsets.npy (the chunks' sentence vectors)

A save writes a complete new generation folder, then replaces manifest.json
with ``os.replace`` (atomic); only then is the previous generation deleted.  A
crash at any point leaves a manifest that names a complete generation.
Knows nothing about search.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import IndexCorruptError, IndexNotBuiltError

from .types import Chunk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
EMBEDDINGS = "embeddings.npy"
VECTORS = "vectors.faiss"
SENTENCES = "sentences.npy"
SENTENCE_OFFSETS = "sentence_offsets.npy"
BM25_DIR = "bm25"


def rebuild_hint(folder: Path) -> str:
    return f"rebuild it with: assistant index build PATH --index {folder}"


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("faiss-cpu", "faiss-gpu", "bm25s", "sentence-transformers", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexNotBuiltError(
            f"no retrieval index at {folder} ({MANIFEST} missing); build one with: "
            f"assistant index build PATH --index {folder}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(f"{path} is unreadable ({exc}); {rebuild_hint(folder)}") from None
    required = ("format", "generation", "embedding_model", "dimension", "tokenizer", "documents", "count")
    if not isinstance(manifest, dict) or any(key not in manifest for key in required):
        raise IndexCorruptError(f"{path} lacks fields {list(required)}; {rebuild_hint(folder)}")
    if manifest["format"] != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path} has format {manifest['format']}, this version reads {FORMAT_VERSION}; {rebuild_hint(folder)}")
    return manifest


def write_generation(folder: Path, manifest: dict[str, Any], chunks: list[Chunk], embeddings: np.ndarray,
                     save_vectors, save_lexical, arrays: dict[str, np.ndarray] | None = None) -> str:
    """Write a new generation and switch the manifest to it; returns the generation's name.  ``arrays``:
    more arrays to keep, by file name (``SENTENCES``, ``SENTENCE_OFFSETS``), read back with ``read_array``."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    previous = manifest.get("generation")
    counter = int(previous.split("-")[1]) + 1 if previous and previous.startswith("gen-") else 1
    name = f"gen-{counter:06d}-{uuid.uuid4().hex[:6]}"
    tmp = folder / f".tmp-{name}"
    tmp.mkdir()
    try:
        with open(tmp / CHUNKS, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
        np.save(tmp / EMBEDDINGS, np.ascontiguousarray(embeddings, dtype=np.float32))
        for file_name, array in (arrays or {}).items():
            np.save(tmp / file_name, np.ascontiguousarray(array))
        save_vectors(tmp / VECTORS)
        (tmp / BM25_DIR).mkdir()
        save_lexical(tmp / BM25_DIR)
        files = {}
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                _fsync(path)
                files[str(path.relative_to(tmp))] = path.stat().st_size
        os.rename(tmp, folder / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {**manifest, "generation": name, "files": files, "updated_at": now(), "versions": library_versions()}
    staging = folder / f".{MANIFEST}.{uuid.uuid4().hex[:6]}.tmp"
    staging.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    _fsync(staging)
    os.replace(staging, folder / MANIFEST)
    _fsync_dir(folder)
    for old in folder.glob("gen-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return name


def generation_folder(folder: Path, manifest: dict[str, Any]) -> Path:
    """The current generation's folder, after checking every file is there with its recorded size."""
    gen = folder / str(manifest["generation"])
    if not gen.is_dir():
        raise IndexCorruptError(f"{folder}: generation folder {gen.name} named by {MANIFEST} is missing; {rebuild_hint(folder)}")
    for rel, size in (manifest.get("files") or {}).items():
        path = gen / rel
        if not path.is_file() or path.stat().st_size != size:
            raise IndexCorruptError(
                f"{path} is missing or has the wrong size (expected {size} bytes); {rebuild_hint(folder)}")
    return gen


def read_chunks(folder: Path, gen: Path) -> list[Chunk]:
    chunks = []
    with open(gen / CHUNKS, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
                row["heading"] = tuple(row["heading"])
                row["tags"] = tuple(row.get("tags", ()))
                row["flags"] = tuple(row.get("flags", ()))
                chunks.append(Chunk(**row))
            except (json.JSONDecodeError, TypeError, KeyError) as exc:
                raise IndexCorruptError(f"{gen / CHUNKS} line {number} is broken ({exc}); {rebuild_hint(folder)}") from None
    return chunks


def read_embeddings(folder: Path, gen: Path) -> np.ndarray:
    try:
        return np.load(gen / EMBEDDINGS, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{gen / EMBEDDINGS} is unreadable ({exc}); {rebuild_hint(folder)}") from None


def read_array(folder: Path, gen: Path, name: str, mmap: bool = False) -> np.ndarray:
    """One of a generation's extra arrays (``write_generation``); ``mmap``: mapped, read from disk as used."""
    try:
        return np.load(gen / name, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{gen / name} is unreadable ({exc}); {rebuild_hint(folder)}") from None


def _remove_stale_temporaries(folder: Path) -> None:
    for stale in folder.glob(".tmp-gen-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in folder.glob(f".{MANIFEST}.*.tmp"):
        stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
