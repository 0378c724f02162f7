"""Text spans for explanations: sentences of an answer (Latin and CJK
punctuation, common abbreviations), a tokenizer's ids as text pieces with their
character offsets, and per-token weights folded onto a segment's content.

Knows nothing about models or attention; ``explain`` uses it.
"""

from __future__ import annotations

import re
from typing import Any, Sequence


_CJK_END = "。！？"
_CLOSERS = "\"'”’」』）)]"
_ABBREV = frozenset({"e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "vs", "no", "fig", "st", "approx", "inc", "ltd", "jr", "sr"})


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the sentences of ``text`` (whitespace trimmed).

    Ends a sentence at ``。！？`` (Chinese/Japanese), at ``.!?`` followed by a
    space or the end (not after an abbreviation, an initial or inside a
    number such as ``3.5``) and at line breaks; closing quotes stay with
    their sentence.
    """
    cuts: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "\n":
            cuts.append(i + 1)
        elif ch in _CJK_END or ch in "!?" or ch == ".":
            j = i + 1
            while j < n and text[j] in (_CJK_END + "!?."):
                j += 1  # "?!", "...", "！？"
            while j < n and text[j] in _CLOSERS:
                j += 1
            if ch in _CJK_END or (j >= n or text[j].isspace() or _is_cjk(text[j])):
                if ch == "." and _is_abbreviation(text, i):
                    i = j
                    continue
                cuts.append(j)
            i = j
            continue
        i += 1
    spans = []
    prev = 0
    for cut in cuts + [n]:
        a, b = prev, cut
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append((a, b))
        prev = max(prev, cut)
    return spans


def split_sentences(text: str) -> list[str]:
    """Split English, Chinese (``。！？``) and similar text into sentences."""
    return [text[a:b] for a, b in sentence_spans(text)]


def _is_cjk(ch: str) -> bool:
    return "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"


def _is_abbreviation(text: str, dot: int) -> bool:
    m = re.search(r"([A-Za-z][A-Za-z.]*)$", text[:dot])
    if not m:
        return False
    word = m.group(1).lower()
    return word in _ABBREV or (len(word) == 1 and word.isalpha() and text[:dot][-1].isupper())


# -- tokens to text ------------------------------------------------------------

def token_pieces(tokenizer: Any, ids: Sequence[int], skip_special: bool = False) -> list[tuple[str, int, int]]:
    """Decoded text of ``ids`` as pieces ``(text, first, end)`` whose concatenation is the decoded text.

    Tokens that hold part of a multi-byte character are merged with the next
    ones until the character is whole (byte-level BPE splits CJK characters).
    """
    pieces: list[tuple[str, int, int]] = []
    prev_text, start = "", 0
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:k]), skip_special_tokens=skip_special, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and k < len(ids) and k - start < 4:
            continue
        piece = text[len(prev_text):] if text.startswith(prev_text) else text[len(_common_prefix(prev_text, text)):]
        pieces.append((piece, start, k))
        prev_text, start = text, k
    return pieces


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _content_heat(tokenizer: Any, ids: Sequence[int], weights: Sequence[float], content: str) -> list[tuple[str, float]]:
    """Heat over the tokens of ``content`` inside a segment span (template markup left out)."""
    pieces = token_pieces(tokenizer, ids)
    full = "".join(p for p, _, _ in pieces)
    at = full.find(content.strip()[:40]) if content.strip() else -1
    lo, hi = (at, at + len(content.strip())) if at >= 0 else (0, len(full))
    out, pos = [], 0
    for text, a, b in pieces:
        end = pos + len(text)
        if end > lo and pos < hi and text:
            out.append((text, float(sum(weights[a:b]))))
        pos = end
    return out


# -- the model side ------------------------------------------------------------
