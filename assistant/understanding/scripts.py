"""What a chat message is written in, before any language model looks at it:
cleaning (URLs, e-mail addresses, mentions, code blocks and code-looking lines
removed) and Unicode scripts (per-character script, weighted script counts, the
languages a script implies).

Knows nothing about language detection itself; ``assistant.understanding.language`` uses it.
"""

from __future__ import annotations

import re
import unicodedata
from types import MappingProxyType


# --------------------------------------------------------------------------
# Cleaning

_URL_RE = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_FENCE_RE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_INLINE_CODE_RE = re.compile(r"`[^`\n]*`")
_MENTION_RE = re.compile(r"[@#]\w+")
_CODE_CHARS = set("{}()[];=<>$\\|&*/_^%~")
_CODE_WORDS = re.compile(
    r"\b(?:def|return|import|from|class|function|var|let|const|public|static|void|int|"
    r"printf?|console\.log|SELECT|FROM|WHERE|self|null|None|True|False|elif|lambda)\b"
)


def _looks_like_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    symbols = sum(ch in _CODE_CHARS for ch in stripped)
    if symbols / len(stripped) >= 0.12 and symbols >= 2:
        return True
    return bool(_CODE_WORDS.search(stripped)) and symbols >= 1 and any(c in stripped for c in "(=:{")


def clean_text(text: str) -> str:
    """The text with URLs, e-mails, mentions, code, digits and symbols replaced by spaces."""
    text = _FENCE_RE.sub(" ", text)
    text = _INLINE_CODE_RE.sub(" ", text)
    text = _URL_RE.sub(" ", text)
    text = _EMAIL_RE.sub(" ", text)
    text = _MENTION_RE.sub(" ", text)
    lines = [line for line in text.splitlines() if not _looks_like_code(line)]
    kept = []
    for ch in " ".join(lines):
        cat = unicodedata.category(ch)
        # Letters and combining marks (needed by Indic scripts and Thai) stay.
        kept.append(ch if cat[0] in "LM" or ch == "'" else " ")
    return re.sub(r"\s+", " ", "".join(kept)).strip()


# --------------------------------------------------------------------------
# Scripts

# (first code point, last code point, script name)
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "latin"), (0x1E00, 0x1EFF, "latin"),
    (0x0370, 0x03FF, "greek"), (0x1F00, 0x1FFF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0530, 0x058F, "armenian"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"), (0x0750, 0x077F, "arabic"), (0xFB50, 0xFDFF, "arabic"), (0xFE70, 0xFEFF, "arabic"),
    (0x0900, 0x097F, "devanagari"), (0x0980, 0x09FF, "bengali"), (0x0A00, 0x0A7F, "gurmukhi"),
    (0x0A80, 0x0AFF, "gujarati"), (0x0B00, 0x0B7F, "oriya"), (0x0B80, 0x0BFF, "tamil"),
    (0x0C00, 0x0C7F, "telugu"), (0x0C80, 0x0CFF, "kannada"), (0x0D00, 0x0D7F, "malayalam"),
    (0x0D80, 0x0DFF, "sinhala"), (0x0E00, 0x0E7F, "thai"), (0x0E80, 0x0EFF, "lao"),
    (0x0F00, 0x0FFF, "tibetan"), (0x1000, 0x109F, "myanmar"), (0x10A0, 0x10FF, "georgian"),
    (0x1200, 0x139F, "ethiopic"), (0x1780, 0x17FF, "khmer"),
    (0x1100, 0x11FF, "hangul"), (0x3130, 0x318F, "hangul"), (0xAC00, 0xD7AF, "hangul"),
    (0x3040, 0x309F, "kana"), (0x30A0, 0x30FF, "kana"), (0x31F0, 0x31FF, "kana"), (0xFF66, 0xFF9F, "kana"),
    (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"), (0xF900, 0xFAFF, "han"), (0x20000, 0x2FA1F, "han"),
)

# A script that names one language outright.
_SCRIPT_LANGUAGE: MappingProxyType[str, str] = MappingProxyType({
    "hangul": "ko", "kana": "ja", "han": "zh", "thai": "th", "greek": "el", "hebrew": "he",
    "armenian": "hy", "georgian": "ka", "lao": "lo", "khmer": "km", "myanmar": "my",
    "ethiopic": "am", "sinhala": "si", "tibetan": "bo", "bengali": "bn", "gurmukhi": "pa",
    "gujarati": "gu", "oriya": "or", "tamil": "ta", "telugu": "te", "kannada": "kn", "malayalam": "ml",
})
# A script shared by several languages: the n-gram model chooses among these.
_SCRIPT_CANDIDATES = {
    "arabic": ("ar", "fa", "ur"),
    "cyrillic": ("ru", "uk", "bg", "mk"),
    "devanagari": ("hi", "mr", "ne"),
}
# CJK characters carry more information each than a Latin letter.
# Latin words inside other scripts are mostly names and product terms.
_SCRIPT_WEIGHT = {"latin": 0.5, "other": 1.0, "han": 5.0, "kana": 5.0, "hangul": 4.0}
_DEFAULT_SCRIPT_WEIGHT = 3.0

SCRIPT_RANGES = _SCRIPT_RANGES
"""(first code point, last code point, script) of the scripts ``script_of`` names."""

_LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{language: frozenset({script}) for script, language in _SCRIPT_LANGUAGE.items()},
    **{language: frozenset({script}) for script, languages in _SCRIPT_CANDIDATES.items() for language in languages},
    **{language: frozenset({"cyrillic"}) for language in ("sr", "kk", "be", "ky", "mn", "tg")},
    **{language: frozenset({"arabic"}) for language in ("ps", "sd", "ug", "ku")},
    "ja": frozenset({"kana", "han"}), "ko": frozenset({"hangul", "han"}), "yi": frozenset({"hebrew"}),
}


def language_scripts(language: str) -> frozenset[str]:
    """The scripts other than Latin that ``language`` (ISO 639-1) is written in; empty for Latin-script
    languages and unknown codes."""
    return _LANGUAGE_SCRIPTS.get(language, frozenset())


_CYRILLIC_MARKERS = (("kk", set("әғқңөұүһӘҒҚҢӨҰҮҺ")), ("sr", set("ђћџЂЋЏ")), ("uk", set("їєґЇЄҐ")),
                     ("mk", set("ѓќѕЃЌЅ")))


def script_of(ch: str) -> str | None:
    """The script of one character, or None for digits, punctuation, emoji."""
    cp = ord(ch)
    for lo, hi, name in _SCRIPT_RANGES:
        if lo <= cp <= hi:
            return name if ch.isalpha() or unicodedata.category(ch)[0] == "M" else None
    return "other" if ch.isalpha() else None


def script_counts(text: str) -> dict[str, float]:
    """Weighted letter counts per script."""
    counts: dict[str, float] = {}
    for ch in text:
        script = script_of(ch)
        if script:
            counts[script] = counts.get(script, 0.0) + _SCRIPT_WEIGHT.get(script, _DEFAULT_SCRIPT_WEIGHT)
    return counts
