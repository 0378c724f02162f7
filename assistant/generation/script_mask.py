"""Answers in the writing systems of their user: tokens of other scripts are never chosen.

Qwen-family models drift into Chinese in the middle of an answer in another language, most of all when
a source shown is Chinese (the user guide has Chinese pages): asked "Welche Dateiformate kann ich
hochladen?", the default model wrote a German list that ended "… mit `question` und `answer` 字段；每个条目
成为一个段落".  A German reader cannot use that, and no check after the fact can take it back once it
streamed.  So each answer may use Latin letters (names, code, commands), the scripts of its user's
language, and any script the user's message itself uses; every token that would write a letter of
another script gets a score of -inf before the next token is chosen (``ScriptMask``).

A token is read as bytes (byte-level BPE as Qwen's and SmolLM2's, or SentencePiece with byte fallback as
Gemma's): its whole characters count by their script (``understanding.scripts.script_of``), and a
multi-byte character cut off at its end counts as the script that holds most of the code points its first
bytes can still become (a lone 0xE4 byte begins U+4000..U+4FFF: Han).  Bytes that continue a character
begun in an earlier token say nothing alone; the token that began it was masked already.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any

from ..understanding.scripts import SCRIPT_RANGES, language_scripts, script_of

ALWAYS = frozenset({"latin"})
"""Allowed in every answer: names, commands, file names and code are written in Latin letters."""


def allowed_scripts(language: str, message: str) -> frozenset[str]:
    """The scripts an answer to ``message``, written in ``language`` (an ISO 639-1 code, or "unknown"),
    may use: Latin, the language's own, and every script the message uses."""
    used = {script_of(ch) for ch in message}
    used.discard(None)
    used.discard("other")
    return ALWAYS | language_scripts(language) | frozenset(s for s in used if s)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, read back: the printable character each byte is written as -> the byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTES = _byte_decoder()


def byte_level(tokens: list[str | None]) -> bool:
    """Whether a vocabulary writes its entries in byte-level BPE's alphabet (GPT-2's, Qwen's, SmolLM2's:
    a space is "Ġ") rather than as text (SentencePiece's: a space is "▁")."""
    spaced = [t for t in tokens if t and t[0] in "Ġ\u2581"]
    return sum(t[0] == "Ġ" for t in spaced) > len(spaced) // 2


def token_bytes(token: str, is_byte_level: bool) -> bytes:
    """The bytes a vocabulary entry writes: SentencePiece's ``<0xNN>`` byte pieces, byte-level BPE's
    alphabet read back, or the text itself with ``▁`` as a space."""
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return bytes([int(token[3:5], 16)])
        except ValueError:
            pass
    if is_byte_level and all(ch in _BYTES for ch in token):
        return bytes(_BYTES[ch] for ch in token)
    return token.replace("\u2581", " ").encode("utf-8", "replace")


@functools.cache
def _partial_script(lead: bytes) -> str | None:
    """The script holding at least half of the code points a UTF-8 character beginning with ``lead`` (its
    first bytes, incomplete) can still become, or None."""
    width = 2 if lead[0] >= 0xC0 and lead[0] < 0xE0 else 3 if lead[0] < 0xF0 else 4
    lo_bytes = lead + b"\x80" * (width - len(lead))
    hi_bytes = lead + b"\xbf" * (width - len(lead))
    try:
        lo, hi = ord(lo_bytes.decode("utf-8")), ord(hi_bytes.decode("utf-8"))
    except UnicodeDecodeError:  # an overlong or surrogate start: nothing a tokenizer writes on its own
        return None
    span = hi - lo + 1
    covered: dict[str, int] = {}
    for first, last, name in SCRIPT_RANGES:
        overlap = min(hi, last) - max(lo, first) + 1
        if overlap > 0:
            covered[name] = covered.get(name, 0) + overlap
    best = max(covered, key=covered.__getitem__, default=None)
    return best if best is not None and 2 * covered[best] >= span else None


def scripts_written(data: bytes) -> frozenset[str]:
    """The scripts whose letters ``data`` writes, whole or begun at its end (see the module docstring)."""
    found: set[str] = set()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0xC0:  # ASCII, or a byte continuing a character begun before this token
            i += 1
            continue
        width = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
        piece = data[i:i + width]
        whole = len(piece) == width and all(0x80 <= c < 0xC0 for c in piece[1:])
        if whole:
            try:
                script = script_of(piece.decode("utf-8"))
            except UnicodeDecodeError:
                script = None
            i += width
        else:
            cut = 1
            while cut < len(piece) and 0x80 <= piece[cut] < 0xC0:
                cut += 1
            script = _partial_script(piece[:cut]) if i + cut == n else None  # only a character cut off at the end
            i += cut
        if script and script != "other":
            found.add(script)
    return frozenset(found)


class _Vocabulary:
    """Which tokens write letters of which script, for one tokenizer (computed once, ~1 s for 150k tokens)."""

    def __init__(self, tokenizer: Any) -> None:
        import torch

        size = len(tokenizer)
        is_byte_level = byte_level(tokenizer.convert_ids_to_tokens(list(range(min(size, 20000)))))
        by_script: dict[str, list[int]] = {}
        for start in range(0, size, 8192):  # a few thousand strings at a time: Gemma has 262,144
            for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(start, min(size, start + 8192)))),
                                      start):
                if token:
                    for script in scripts_written(token_bytes(token, is_byte_level)):
                        by_script.setdefault(script, []).append(i)
        self.size = size
        self.by_script = {s: torch.tensor(ids, dtype=torch.long) for s, ids in by_script.items()}
        self._masks: dict[frozenset[str], Any] = {}
        self._lock = threading.Lock()

    def mask(self, allowed: frozenset[str]) -> Any:
        """A boolean tensor over the vocabulary: True where a token writes a script not in ``allowed``."""
        import torch

        with self._lock:
            mask = self._masks.get(allowed)
            if mask is None:
                mask = torch.zeros(self.size, dtype=torch.bool)
                for script, ids in self.by_script.items():
                    if script not in allowed:
                        mask[ids] = True
                if len(self._masks) >= 32:  # messages mixing many scripts could make many sets: keep the newest
                    self._masks.pop(next(iter(self._masks)))
                self._masks[allowed] = mask
            return mask


_vocabularies: "weakref.WeakKeyDictionary[Any, _Vocabulary]" = weakref.WeakKeyDictionary()
_vocabularies_lock = threading.Lock()


def vocabulary(tokenizer: Any) -> _Vocabulary:
    with _vocabularies_lock:
        vocab = _vocabularies.get(tokenizer)
        if vocab is None:
            vocab = _vocabularies[tokenizer] = _Vocabulary(tokenizer)
        return vocab


class ScriptMask:
    """A logits processor: tokens writing letters of a script not in ``allowed`` score -inf."""

    def __init__(self, tokenizer: Any, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.banned = vocabulary(tokenizer).mask(allowed)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        banned = self.banned
        if banned.shape[0] != scores.shape[-1]:  # a model's vocabulary padded past the tokenizer's, or shorter
            banned = torch.nn.functional.pad(banned[:scores.shape[-1]], (0, max(0, scores.shape[-1] - banned.shape[0])))
        return scores.masked_fill(banned.to(scores.device), -torch.inf)
