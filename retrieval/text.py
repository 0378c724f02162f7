"""Language detection and BM25 tokenization for any script.

Knows nothing about documents or indexes.  Detection is cheap: the script of
the text decides for Han, kana, Hangul, Thai, Arabic, Devanagari, Greek;
langdetect decides among Latin and Cyrillic languages when the text is long
enough to trust it, otherwise the answer is "und" (undetermined).

Tokenization: lower-cased NFKC words for spaced scripts; character bigrams for
CJK and Thai runs (which have no spaces between words).  Measured on
xquad-dev, bigrams bring BM25 Recall@1 in Chinese to about 0.93.
"""

from __future__ import annotations

import functools
import logging
import unicodedata

import regex

log = logging.getLogger(__name__)

TOKENIZER_NAME = "nfkc-lower-words+cjk-thai-bigrams+arabic-light10-v2"
PREVIOUS_TOKENIZERS = ("nfkc-lower-words+cjk-thai-bigrams-v1",)
"""Word tokenizers of earlier versions: an index saved with one gets its word (BM25) index made again from
its stored text when opened, with nothing embedded again (``KnowledgeIndex.load``)."""

# Unspaced scripts: Han, Hiragana, Katakana, Hangul syllables, Thai, Lao, Khmer, Myanmar.
_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_TOKEN = regex.compile(rf"[{_UNSPACED}\p{{M}}]+|[[\p{{L}}\p{{N}}\p{{M}}]--[{_UNSPACED}]]+", regex.V1)
_UNSPACED_START = regex.compile(rf"[{_UNSPACED}]")

_SCRIPTS = {
    "Han": regex.compile(r"\p{Han}"),
    "Kana": regex.compile(r"[\p{Hiragana}\p{Katakana}]"),
    "Hangul": regex.compile(r"\p{Hangul}"),
    "Thai": regex.compile(r"\p{Thai}"),
    "Arabic": regex.compile(r"\p{Arabic}"),
    "Devanagari": regex.compile(r"\p{Devanagari}"),
    "Greek": regex.compile(r"\p{Greek}"),
    "Cyrillic": regex.compile(r"\p{Cyrillic}"),
    "Hebrew": regex.compile(r"\p{Hebrew}"),
    "Latin": regex.compile(r"\p{Latin}"),
}
_SINGLE_LANGUAGE_SCRIPTS = {"Hangul": "ko", "Thai": "th", "Devanagari": "hi", "Greek": "el", "Hebrew": "he"}
MIN_WORDS_FOR_LANGDETECT = 3
MIN_LANGDETECT_PROBABILITY = 0.80


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


_ARABIC_WORD = regex.compile(r"\p{Arabic}[\p{Arabic}\p{Mn}\u0640]*")  # short vowels and tatweel are of no one script
_ARABIC_MARKS = regex.compile("[\u064b-\u0652\u0640\u0670]")  # short vowels, shadda, sukun, tatweel, dagger alef
_ARABIC_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_ARABIC_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")


def arabic_stem(word: str) -> str:
    """Larkey, Ballesteros and Connell's light stemmer ("light10", 2007), for BM25: the marks that are
    optional in writing dropped and the letters written several ways made one, then the article with
    its fused prepositions ("بالمدينة" → "مدينه") and "و" (and) taken off the front, and the commonest
    pronoun, dual, plural and feminine endings off the back, keeping at least two letters.  Arabic
    writes these into the word, so without it "المدينة" (the city), "بالمدينة" (in the city) and "مدينة"
    (a city) share no word.  A one-letter preposition before a word without the article ("بكاليفورنيا",
    in California) stays: light10 leaves it, and taking it off as well measured no better (xquad-dev)."""
    word = _ARABIC_MARKS.sub("", word).translate(_ARABIC_LETTERS)
    if len(word) > 3 and word.startswith("و"):
        word = word[1:]
    for prefix in _ARABIC_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 2:
            word = word[len(prefix):]
            break
    for suffix in _ARABIC_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            word = word[:-len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    """BM25 tokens: words (Arabic ones light-stemmed: ``arabic_stem``), plus character bigrams inside
    CJK/Thai runs."""
    out: list[str] = []
    for match in _TOKEN.finditer(normalise(text)):
        token = match.group()
        if _ARABIC_WORD.fullmatch(token):
            out.append(arabic_stem(token))
        elif _UNSPACED_START.match(token):
            chars = [c for c in token if not unicodedata.category(c).startswith("M")]
            # Keep combining marks attached to the preceding base character (Thai vowels/tones).
            units = _graphemes(token) if len(chars) != len(token) else chars
            if len(units) == 1:
                out.append(units[0])
            else:
                out.extend(units[i] + units[i + 1] for i in range(len(units) - 1))
        else:
            out.append(token)
    return out


def _graphemes(token: str) -> list[str]:
    return regex.findall(r"\X", token)


def token_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the units ``count_tokens`` counts, in order."""
    spans: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(text):
        if _UNSPACED_START.match(match.group()):
            spans.extend((match.start() + i, match.start() + i + 1) for i in range(len(match.group())))
        else:
            spans.append(match.span())
    return spans


def count_tokens(text: str) -> int:
    """Length measure used by chunking: words, with one CJK/Thai character counted as one token."""
    n = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        n += len(token) if _UNSPACED_START.match(token) else 1
    return n


def script_counts(text: str) -> dict[str, int]:
    return {name: len(pattern.findall(text)) for name, pattern in _SCRIPTS.items()}


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``, or "und" when it cannot be told cheaply and reliably."""
    sample = text[:2000]
    counts = script_counts(sample)
    letters = sum(counts.values())
    if letters == 0:
        return "und"
    script, top = max(counts.items(), key=lambda kv: kv[1])
    if counts["Kana"] > 0 and counts["Kana"] + counts["Han"] >= 0.3 * letters:
        return "ja"
    if counts["Han"] >= 0.3 * letters:
        return "zh"
    if script in _SINGLE_LANGUAGE_SCRIPTS:
        return _SINGLE_LANGUAGE_SCRIPTS[script]
    if script == "Arabic":
        return _langdetect(sample, allowed=("ar", "fa", "ur")) or "ar"
    if script == "Cyrillic":
        return _langdetect(sample, allowed=("ru", "uk", "bg", "mk", "sr")) or "ru"
    if _looks_english(sample):
        return "en"
    return _langdetect(sample) or "und"


# Frequent English function words: langdetect often mislabels short English
# questions ("How long does delivery take?" -> Afrikaans), so short Latin-script
# text with enough of these is taken as English first.
_ENGLISH_WORDS = frozenset(
    "the is are was were been does did how what when where why who which can could would should "
    "will you your we our it this that of with from and or not there have has".split())
# (Words that are also common in other Latin-script languages — a, in, no, do, to, me — are left out.)
SHORT_TEXT_WORDS = 12


def _looks_english(text: str) -> bool:
    words = regex.findall(r"\p{L}+", text.lower())
    if not words or len(words) > SHORT_TEXT_WORDS:
        return False
    return sum(w in _ENGLISH_WORDS for w in words) / len(words) >= 0.3


def _langdetect(text: str, allowed: tuple[str, ...] | None = None) -> str | None:
    if len(text.split()) < MIN_WORDS_FOR_LANGDETECT:
        return None
    detector = _detector_factory()
    if detector is None:
        return None
    from langdetect.lang_detect_exception import LangDetectException

    try:
        d = detector.create()
        d.append(text)
        best = d.get_probabilities()
    except LangDetectException:
        return None
    for candidate in best:
        lang = candidate.lang.split("-")[0]
        if allowed and lang not in allowed:
            continue
        return lang if candidate.prob >= MIN_LANGDETECT_PROBABILITY else None
    return None


@functools.lru_cache(maxsize=1)
def _detector_factory():
    try:
        from langdetect import DetectorFactory, detector_factory
    except ImportError:  # optional: without langdetect, Latin text stays "und"
        log.warning("langdetect is not installed; Latin-script languages are reported as 'und'")
        return None
    DetectorFactory.seed = 0
    detector_factory.init_factory()
    return detector_factory._factory
