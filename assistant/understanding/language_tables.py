"""The language detector's tables as arrays in files, read a row at a time rather than held as Python objects.

langdetect keeps its n-gram profiles as a dict of 87,598 n-grams, each a list of 55 Python floats, and
wordfreq's lists come as 1.5 M Python strings: loaded in a server they added 65 and 70 MB, kept (and more
while they were read), the largest part of what a small model's server holds besides the model.  Here
both become sorted arrays keyed by a stable 64-bit hash of the n-gram or word (BLAKE2b), with the n-grams'
``log(p + smoothing)`` precomputed in float64 (the values the detector summed before, so its scores are
bit for bit the same), written once under ``$ASSISTANT_HOME/cache`` and read with ``pread`` (``ArrayFile``):
a message reads the few rows its n-grams and words hit, and nothing of them stays resident.

Built on first use (~3 s) in a child process (reading the packages takes ~190 MB for a moment, which a
server would keep as its peak) into a folder named by this format and the two packages' versions, written
beside it and renamed, so another process finds either no folder or a whole one; a folder that cannot be
read is built again (one log line).  Where the home cannot be written, the arrays are built in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .scripts import script_of

log = logging.getLogger(__name__)

FORMAT = 1
SMOOTHING = 0.5 / 10000.0
"""langdetect's ALPHA_DEFAULT / BASE_FREQ, added to every n-gram probability before its log."""

# wordfreq code -> the langdetect code it stands for.  Malay and Icelandic have no langdetect profile;
# Chinese, Japanese and Korean are decided by script.
WORDFREQ_CODES = {"fil": "tl", "nb": "no", "sh": "hr"}
WORDFREQ_SKIP = frozenset({"ms", "is", "zh", "ja", "ko"})
HAN_RATIO = 100.0
"""A Han character is Japanese-only (Chinese-only) when that many times more frequent there."""

_ARRAYS = ("ngram_keys", "ngram_loglik", "word_keys", "word_lang", "word_log10", "covered")


def key(text: str) -> int:
    """A stable 64-bit hash of ``text`` (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def keys(texts: list[str]) -> np.ndarray:
    return np.fromiter((key(t) for t in texts), dtype=np.uint64, count=len(texts))


class ArrayFile:
    """A 1-D or 2-D array in an ``.npy`` file, read a row at a time (``os.pread``) rather than mapped: a mapped
    file's pages stay resident once touched, and the kernel maps the neighbours of each one read too (after
    five chat messages, 36 of the 38 MB of the n-gram table were resident)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{path.name}: not a plain C-ordered array")
        self.path, self.shape, self.dtype = path, tuple(shape), dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        if os.path.getsize(path) != self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"{path.name}: {os.path.getsize(path)} bytes, expected {self.offset + self.shape[0] * self.row_bytes}")
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self, _close=os.close) -> None:  # os.close bound now: at interpreter exit ``os`` may be gone
        fd = getattr(self, "fd", None)
        if fd is not None:
            _close(fd)

    def span(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` .. ``stop - 1``."""
        start, stop = max(0, start), min(len(self), stop)
        if stop <= start:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        data = _pread(self.fd, (stop - start) * self.row_bytes, self.offset + start * self.row_bytes)
        if len(data) != (stop - start) * self.row_bytes:
            raise OSError(f"{self.path} is shorter than when it was opened (changed while in use?)")
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start, *self.shape[1:]))

    def rows(self, indices: list[int]) -> np.ndarray:
        """The rows at ``indices``, in that order (repeats read once)."""
        read = {i: self.span(i, i + 1)[0] for i in set(indices)}
        return np.stack([read[i] for i in indices]) if indices else np.zeros((0, *self.shape[1:]), self.dtype)

    def whole(self) -> np.ndarray:
        return self.span(0, len(self))


_seek_lock = threading.Lock()


def _pread(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``, or a seek and a read under a lock where the platform has no ``pread`` (Windows)."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    with _seek_lock:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


_STRIDE = 256
"""Of the sorted keys, every this many is held in memory to find the block a key lies in."""


@dataclass(frozen=True)
class Tables:
    languages: tuple[str, ...]
    """langdetect's language list (``zh-cn`` and ``zh-tw`` as it names them): the columns below."""
    ngram_keys: np.ndarray
    """(n,) uint64, sorted: the profiles' n-grams (in memory: 0.7 MB)."""
    ngram_loglik: ArrayFile
    """(n, languages) float64: log(probability of the n-gram in the language + ``SMOOTHING``)."""
    word_keys: ArrayFile
    """(m,) uint64, sorted (a word in several lists: one entry each)."""
    word_lang: ArrayFile
    """(m,) int16: the list's column in ``languages``."""
    word_log10: ArrayFile
    """(m,) float32: log10 of the word's frequency in that list."""
    covered: np.ndarray
    """(languages,) bool: languages that have a word list."""
    ja_only: frozenset[str]
    zh_only: frozenset[str]
    """Han characters only Japanese (simplified Chinese) writes, by wordfreq's lists."""
    word_index: np.ndarray
    """Every ``_STRIDE``-th of ``word_keys``, in memory."""

    def ngram_rows(self, ngrams: list[str]) -> np.ndarray:
        """Indices into ``ngram_loglik`` of ``ngrams`` (-1: not in the profiles), in their order."""
        if not ngrams or not len(self.ngram_keys):
            return np.full(len(ngrams), -1, dtype=np.int64)
        wanted = keys(ngrams)
        at = np.minimum(np.searchsorted(self.ngram_keys, wanted), len(self.ngram_keys) - 1)
        return np.where(self.ngram_keys[at] == wanted, at, -1)

    def word_entries(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, log10 frequencies) of ``word`` in the word lists that have it."""
        return self.key_entries(np.uint64(key(word)))

    def key_entries(self, h: np.uint64) -> tuple[np.ndarray, np.ndarray]:
        """``word_entries`` by the word's key: its entries lie in the blocks from the last one that begins
        before it to the first that begins after it."""
        first = max(0, int(np.searchsorted(self.word_index, h, side="left")) - 1) * _STRIDE
        last = int(np.searchsorted(self.word_index, h, side="right")) * _STRIDE
        block = self.word_keys.span(first, last)
        lo = first + int(np.searchsorted(block, h, side="left"))
        hi = first + int(np.searchsorted(block, h, side="right"))
        return self.word_lang.span(lo, hi), self.word_log10.span(lo, hi)


def _versions() -> str:
    found = []
    for package in ("langdetect", "wordfreq"):
        try:
            found.append(f"{package}{metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package}-none")
    return "-".join(found)


def _build() -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """The arrays and the small rest (languages, Han characters), from the installed packages."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    languages = list(factory.langlist)
    grams = list(factory.word_lang_prob_map)
    ngram_keys = keys(grams)
    order = np.argsort(ngram_keys, kind="stable")
    if len(np.unique(ngram_keys)) != len(ngram_keys):
        raise RuntimeError("two n-grams share a 64-bit key")
    loglik = np.empty((len(grams), len(languages)), dtype=np.float64)
    for row, i in enumerate(order):
        loglik[row] = np.log(np.asarray(factory.word_lang_prob_map[grams[i]], dtype=np.float64) + SMOOTHING)
    del factory
    arrays: dict[str, np.ndarray] = {"ngram_keys": ngram_keys[order], "ngram_loglik": loglik}
    column = {code: i for i, code in enumerate(languages)}
    word_keys, word_lang, word_log10 = [], [], []
    ja_only: list[str] = []
    zh_only: list[str] = []
    try:
        import wordfreq
    except ImportError:
        log.warning("wordfreq is not installed; short messages are detected from n-grams only")
        wordfreq = None
    if wordfreq is not None:
        lists = wordfreq.available_languages("small")
        for code, path in sorted(lists.items()):
            iso = WORDFREQ_CODES.get(code, code)
            if code in WORDFREQ_SKIP or iso not in column:
                continue
            for index, bucket in enumerate(wordfreq.read_cBpack(path)):  # bucket i: frequency 10 ** (-i / 100)
                if bucket:
                    word_keys.append(keys(bucket))
                    word_lang.append(np.full(len(bucket), column[iso], dtype=np.int16))
                    word_log10.append(np.full(len(bucket), -index / 100.0, dtype=np.float32))
        ja_only, zh_only = _han_characters(wordfreq, lists)
    if word_keys:
        all_keys = np.concatenate(word_keys)
        order = np.argsort(all_keys, kind="stable")
        arrays.update(word_keys=all_keys[order], word_lang=np.concatenate(word_lang)[order],
                      word_log10=np.concatenate(word_log10)[order])
    else:
        arrays.update(word_keys=np.zeros(0, np.uint64), word_lang=np.zeros(0, np.int16),
                      word_log10=np.zeros(0, np.float32))
    covered = np.zeros(len(languages), dtype=bool)
    covered[np.unique(arrays["word_lang"])] = True
    arrays["covered"] = covered
    return arrays, {"format": FORMAT, "languages": languages, "ja_only": "".join(sorted(ja_only)),
                    "zh_only": "".join(sorted(zh_only))}


def _han_characters(wordfreq, lists) -> tuple[list[str], list[str]]:
    """(Japanese-only, Chinese-only) Han characters: a character's frequency is the summed frequency of the
    words that contain it; it belongs to one language when over ``HAN_RATIO`` times more frequent there
    than in the other (corpora carry a few stray foreign forms)."""

    def char_frequency(code: str) -> dict[str, float]:
        freq: dict[str, float] = {}
        for index, bucket in enumerate(wordfreq.read_cBpack(lists[code])):
            for word in bucket:
                for ch in set(word):
                    if script_of(ch) == "han":
                        freq[ch] = freq.get(ch, 0.0) + 10.0 ** (-index / 100.0)
        return freq

    if "ja" not in lists or "zh" not in lists:
        return [], []
    ja, zh = char_frequency("ja"), char_frequency("zh")
    eps = 1e-7
    return ([ch for ch, f in ja.items() if f + eps > HAN_RATIO * (zh.get(ch, 0.0) + eps)],
            [ch for ch, f in zh.items() if f + eps > HAN_RATIO * (ja.get(ch, 0.0) + eps)])


def _tables(meta: dict[str, object], small: dict[str, np.ndarray], files: dict[str, ArrayFile],
            word_index: np.ndarray) -> Tables:
    return Tables(languages=tuple(meta["languages"]), ja_only=frozenset(meta["ja_only"]),
                  zh_only=frozenset(meta["zh_only"]), ngram_keys=small["ngram_keys"], covered=small["covered"],
                  word_index=word_index, **files)


_FILES = ("ngram_loglik", "word_keys", "word_lang", "word_log10")
"""The arrays read a row at a time; ``ngram_keys`` and ``covered`` are held (0.7 MB)."""


def _in_memory(arrays: dict[str, np.ndarray], meta: dict[str, object]) -> Tables:
    """Tables over arrays held in memory (where the home cannot be written)."""
    return _tables(meta, arrays, {name: _InMemory(arrays[name]) for name in _FILES}, arrays["word_keys"][::_STRIDE].copy())


class _InMemory(ArrayFile):
    """``ArrayFile``'s reads over an array held in memory."""

    def __init__(self, array: np.ndarray) -> None:  # no file: nothing of ArrayFile.__init__
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def span(self, start: int, stop: int) -> np.ndarray:
        return self.array[max(0, start):max(0, stop)]


def _read(folder: Path) -> Tables:
    meta = json.loads((folder / "tables.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
    small = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ("ngram_keys", "covered")}
    files = {name: ArrayFile(folder / f"{name}.npy") for name in _FILES}
    n, width = len(small["ngram_keys"]), len(meta["languages"])
    if files["ngram_loglik"].shape != (n, width) or small["covered"].shape != (width,) \
            or not len(files["word_keys"]) == len(files["word_lang"]) == len(files["word_log10"]):
        raise ValueError("the arrays' shapes do not agree")
    word_keys = files["word_keys"]
    word_index = np.concatenate([word_keys.span(i, i + 1) for i in range(0, len(word_keys), _STRIDE)]) \
        if len(word_keys) else np.zeros(0, np.uint64)
    return _tables(meta, small, files, word_index)


def _write(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", arrays[name], allow_pickle=False)
        (tmp / "tables.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if folder.exists():  # a damaged folder: replaced whole
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def folder_for(home: Path) -> Path:
    return home / "cache" / f"language-{FORMAT}-{_versions()}"


def load(home: Path, in_child: bool = True) -> Tables:
    """The tables for the installed packages, from ``home``'s cache (built there first if missing: in a
    child process unless ``in_child`` is False)."""
    folder = folder_for(home)
    if (folder / "tables.json").exists():
        try:
            return _read(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the language detector's tables in %s cannot be read (%s); building them again", folder, exc)
    start = time.perf_counter()
    if in_child and _build_in_child(home):
        try:
            tables = _read(folder)
            log.info("built the language detector's tables in %.1f s: %s", time.perf_counter() - start, folder)
            return tables
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the language detector's tables built in %s cannot be read (%s)", folder, exc)
    arrays, meta = _build()
    try:
        _write(folder, arrays, meta)
        tables = _read(folder)
    except OSError as exc:
        log.warning("could not write the language detector's tables to %s (%s); kept in memory", folder, exc)
        return _in_memory(arrays, meta)
    log.info("built the language detector's tables in %.1f s: %s", time.perf_counter() - start, folder)
    return tables


def _build_in_child(home: Path) -> bool:
    """Build and write the tables in a child process (``build_into``): reading the packages' profiles and
    lists takes ~190 MB for a moment, which a server would otherwise keep as its peak.  False where the
    child failed (the caller builds them here)."""
    try:
        code = f"import sys; from {__name__} import build_into; build_into(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("could not build the language detector's tables in a child process (%s)", exc)
        return False
    if done.returncode:
        log.info("building the language detector's tables in a child process failed: %s",
                 (done.stderr or done.stdout).strip()[-400:])
    elif done.stderr.strip():  # its warnings (wordfreq missing, say)
        log.warning("%s", done.stderr.strip()[-400:])
    return done.returncode == 0


@functools.lru_cache(maxsize=1)
def tables() -> Tables:
    """The tables of this process (``load`` under the assistant's home)."""
    from ..config import assistant_home

    return load(assistant_home())


def build_into(home: str) -> None:
    """Build the tables and write them under ``home`` (what ``_build_in_child``'s child runs)."""
    logging.basicConfig(level=logging.WARNING)
    _write(folder_for(Path(home)), *_build())
