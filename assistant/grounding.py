"""Numbers an answer states that nothing it was given says: an invented phone number, price, size or date.

A small model asked for a detail its sources lack ("What is the support hotline?", "What is the largest
file I can upload?") often makes one up ("1-800-555-1234", "10 MB") rather than decline.  A number is
the detail a support answer is most often wrong about and the easiest to check: every number the
answer states must appear in what the model was shown (the sources in its prompt, the system prompt,
the user's messages and the earlier answers of the conversation).  ``NumberCheck`` finds the ones
that do not; the engine then gives the fixed "not in my documents" reply instead (``ChatConfig.
check_numbers``).

What counts as a number: a run of decimal digits in any script (Arabic-Indic, Devanagari, full-width
digits read as 0-9), with the separators numbers are written with (``1,500``, ``1.500``, ``1 500``,
``1-800-555-1234``, ``12:30``, ``2024/05/01``), of at least two digits in all (list numbers,
"[3]" and "step 2" pass).
Digits glued to a word before them are a name's (``e5``, ``Qwen2.5``, a hex tag), unless the word is
in a script written without spaces ("最多10个").  It is supported when its digits, with the separators dropped, are those of a number in the given
text, or one of its digit groups; or when each of its groups of two or more digits is a group there.
So "1500" is supported by "1,500" and the reverse, "3.11" by "Python 3.11".

Numbers inside a fenced code block (```` ``` ```` … ```` ``` ````, or one still open while the answer
streams) are not checked: a snippet the model writes to illustrate an answer ("``<iframe
src="http://localhost:7860">``" under "how do I embed the chat?") is an example, not a stated fact, and
declining a right answer over its port cost 2 of the 28 dev-half guide answers (2026-12-05).  The price:
an invented value inside such a block goes out.

What it cannot know: a number written out in words in the source ("five days" answered as "5 days",
"五百" as "500") reads as unsupported; a number that is in the sources but is the wrong one for the
question passes.  Its cost in false refusals is measured by ``bench/answers.py``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

_SEP = r"[.,:/\-\u00a0\u202f' ]"
NUMBER = re.compile(rf"\d+(?:{_SEP}\d+)*")
"""Digits and the separators between them (``numbers`` drops those glued to a word)."""
_GROUP = re.compile(r"\d+")
_PENDING = re.compile(rf"\d(?:\d|{_SEP})*$")


def _unspaced(ch: str) -> bool:
    """A letter of a script written without spaces (CJK, kana, hangul, Thai, Lao, Khmer, Myanmar):
    a number right after it is not part of a word."""
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR"))


def numbers(text: str) -> list[str]:
    """The numbers ``text`` states, as written; digits glued to a word before them ("e5",
    "Qwen2.5", "ce524b09") are part of a name and left out."""
    out = []
    for m in NUMBER.finditer(text):
        before = text[m.start() - 1] if m.start() else ""
        if before and (before.isalpha() and not _unspaced(before)):
            continue
        if before in "._-" and m.start() >= 2 and text[m.start() - 2].isalnum():
            continue  # "v2.5", "gpt-4": the tail of a name
        out.append(m.group(0))
    return out


_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)


def _outside_code(text: str) -> str:
    """``text`` with its fenced code blocks blanked out (an unclosed one to the end)."""
    return _FENCED.sub(lambda m: " " * len(m.group(0)), text)


def _ascii(digits: str) -> str:
    return "".join(c if c.isascii() else str(unicodedata.digit(c, 0)) for c in digits)


def _groups(number: str) -> list[str]:
    return [_ascii(g) for g in _GROUP.findall(number)]


class NumberCheck:
    """The numbers of ``given`` (texts the model was shown); ``unsupported(answer)`` lists the answer's
    numbers that are not among them."""

    def __init__(self, given: Iterable[str]) -> None:
        self.joined: set[str] = set()
        self.groups: set[str] = set()
        for text in given:
            for m in NUMBER.finditer(text or ""):  # every digit run, names' digits too
                groups = _groups(m.group(0))
                self.joined.add("".join(groups))
                self.groups.update(groups)
                # "1,500.25" also stands for "1500" and "1,500"
                for i in range(1, len(groups)):
                    self.joined.add("".join(groups[:i]))

    def supported(self, number: str) -> bool:
        groups = _groups(number)
        joined = "".join(groups)
        if len(joined) < 2:
            return True
        if joined in self.joined or joined in self.groups:
            return True
        return all(g in self.groups for g in groups if len(g) >= 2) and any(len(g) >= 2 for g in groups)

    def unsupported(self, answer: str, final: bool = True) -> list[str]:
        """The answer's numbers that nothing given states.  While the answer is still streaming
        (``final=False``), a number at the end of the text may not be complete yet and waits."""
        text = answer if final else answer[:self.pending(answer)]
        return [n for n in numbers(_outside_code(text)) if not self.supported(n)]

    @staticmethod
    def pending(answer: str) -> int:
        """Where a number that may still be growing starts at the end of ``answer`` (its length when
        none does): a streaming caller sends nothing from there until the number is complete."""
        tail = _PENDING.search(answer)
        return tail.start() if tail else len(answer)
