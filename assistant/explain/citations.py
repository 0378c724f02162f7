"""Which source each sentence of an answer came from: the ``[n]`` markers in the chat.

When an answer is finished, a sentence cites the source (of those the model saw, numbered as
listed under the answer) that holds the largest share of the sentence's words: its words of three
letters or more, or for scripts written without spaces (Chinese, Japanese, Thai) its character
pairs.  A share under ``MIN_COVER`` cites nothing: a sentence of the model's own ("I hope this
helps") gets no marker, and no marker ever names a source the model did not see.

A sentence translated from its source (an answer in German from the English guide) shares few of
its words; it cites the source that holds its *anchors* instead, the words a translation keeps as
they are: the words of code (`` `assistant index list` ``), names with digits or ``_ . / :`` in
them and options (``ASSISTANT_ADAPTER``, ``.docx``, ``/v1/chat/completions``, ``--index``),
acronyms (PDF, HTML), and in a sentence written in another script (Chinese, Arabic...) its Latin
words.  The source must hold at least half of them, each as a whole word; ties go to the source
holding more of the sentence's words, then the one listed first.  An anchor of one or two
characters does not count.

Explain measures the same thing better (the source whose removal lowers that sentence's
likelihood most, ``assistant.explain.explainer``); once an answer has been explained, its markers are
Explain's (``from_explanation``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

from .textspans import sentence_spans

MIN_COVER = 0.5
"""Share of a sentence's words that must occur in a source for the sentence to cite it."""
MIN_UNITS = 3
"""Sentences with fewer words than this ("Yes.", "Five days.") cite a source only if it holds every
one of them."""

Citation = tuple[int, int, int]
"""(start, end) character span of a sentence in the answer, and the source it cites (1-based)."""

_WORD = re.compile(r"\w+", re.UNICODE)
_CODE = re.compile(r"`([^`\n]+)`")
_ASCII = re.compile(r"(?:--|\.)?[A-Za-z0-9_](?:[A-Za-z0-9_./:\-]*[A-Za-z0-9_])?")
_MARKED = re.compile(r"^--|[0-9_./:]")


def _unspaced(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI", "HANGUL SYLLABLE"))


def units(text: str) -> set[str]:
    """The comparable pieces of ``text``: lower-cased words of 3+ characters (digits: any length), and
    character pairs of the runs written without spaces."""
    out: set[str] = set()
    for word in _WORD.findall(text.lower()):
        chars = [c for c in word if _unspaced(c)]
        if chars:
            out.update(a + b for a, b in zip(chars, chars[1:]))
            rest = "".join(c for c in word if not _unspaced(c))
            if len(rest) >= 3 or (rest and rest.isdigit()):
                out.add(rest)
        elif len(word) >= 3 or word.isdigit():
            out.add(word)
    return out


def anchors(sentence: str) -> set[str]:
    """The words of ``sentence`` that a translation keeps as they are, lower-cased (see the module's
    docstring)."""
    # written in another script than Latin: its Latin words are names and terms kept from the source
    foreign = sum(1 for c in sentence if c.isalpha() and not unicodedata.name(c, "").startswith("LATIN")) >= 4
    out = {token.lower() for code in _CODE.findall(sentence) for token in _ASCII.findall(code) if len(token) >= 3}
    for token in _ASCII.findall(_CODE.sub(" ", sentence)):
        if len(token) < 3:
            continue
        letters_only = token.isalpha()
        if (not letters_only and _MARKED.search(token)) or (token.isupper() and letters_only) or \
                (foreign and letters_only):
            out.add(token.lower())
    return out


def _holds(text: str, anchor: str) -> bool:
    """``anchor`` occurs in ``text`` as a whole word ("add" is not in "address"; ".md" is in "README.md")."""
    left = r"(?<![a-z0-9_])" if anchor[0].isalnum() or anchor[0] == "_" else ""
    return re.search(left + re.escape(anchor) + r"(?![a-z0-9_])", text) is not None


def cite(answer: str, source_texts: Sequence[str], by_anchors: bool = True) -> list[Citation]:
    """The ``[n]`` each sentence of ``answer`` earns from ``source_texts`` (in the order shown): by the
    share of its words a source holds, else (``by_anchors``) by its anchors."""
    if not answer.strip() or not source_texts:
        return []
    sources = [units(t) for t in source_texts]
    lowered = [t.lower() for t in source_texts]
    out: list[Citation] = []
    for start, end in sentence_spans(answer):
        words = units(answer[start:end])
        if not words:
            continue
        shares = [len(words & s) / len(words) for s in sources]
        best = max(range(len(shares)), key=lambda j: shares[j])
        needed = 1.0 if len(words) < MIN_UNITS else MIN_COVER
        if shares[best] >= needed:
            out.append((start, end, best + 1))
            continue
        kept = anchors(answer[start:end]) if by_anchors else set()
        if not kept:
            continue
        held = [sum(_holds(t, a) for a in kept) for t in lowered]
        best = max(range(len(held)), key=lambda j: (held[j], shares[j], -j))
        if held[best] and held[best] * 2 >= len(kept):
            out.append((start, end, best + 1))
    return out


def from_explanation(answer: str, expl: Any) -> list[Citation]:
    """Explain's per-sentence citations as spans of ``answer`` (its sentences found in order)."""
    out: list[Citation] = []
    pos = 0
    for sent in expl.sentences:
        text = sent.text.strip()
        at = answer.find(text, pos) if text else -1
        if at < 0:
            continue
        pos = at + len(text)
        if sent.source:
            out.append((at, pos, int(sent.source)))
    return out


def mark(answer: str, citations: Sequence[Citation], open_mark: str, close_mark: str) -> str:
    """``answer`` with ``open_mark + n + close_mark`` after each cited sentence (placeholders the renderer
    turns into links once the Markdown is HTML); several sentences in a row citing the same source get
    one marker, after the last."""
    spans = sorted(c for c in citations if 0 <= c[0] < c[1] <= len(answer)
                   and answer[:c[1]].count("```") % 2 == 0)  # never inside a code block
    keep = [c for i, c in enumerate(spans)
            if not (i + 1 < len(spans) and spans[i + 1][2] == c[2] and not answer[c[1]:spans[i + 1][0]].strip())]
    out, pos = [], 0
    for start, end, n in keep:
        out.append(answer[pos:end])
        out.append(f"{open_mark}{n}{close_mark}")
        pos = end
    out.append(answer[pos:])
    return "".join(out)
