"""Language of a chat message, robust to what chat looks like.

Chat messages are short ("ok", "danke!", "密码忘了"), mix scripts, carry emoji,
code, numbers and URLs.  Detection runs in three steps:

1. **Clean**: URLs, e-mail addresses, code (fenced, inline or code-looking
   lines), numbers and emoji are removed; a message with no letters left has
   no language of its own.
2. **Script rules**: Hangul, Kana, Han, Thai, Greek, Hebrew, Indic scripts
   and others name the language (or a short list of candidates) directly.
3. **Naive Bayes** for the remaining candidates, summing evidence in log
   space: langdetect's n-gram profiles (the same profiles and n-gram
   extraction as ``langdetect``, scored exactly over all n-grams, so it is
   deterministic and needs no random sampling), the frequency of each word in
   each language (``wordfreq``'s lists, shipped inside that package; a word
   absent from a list gets a floor frequency), and three priors — a base rate
   of languages in chat, a small hand-written vocabulary of chat words, and
   the languages of the conversation's earlier turns (``prior``) — so that
   "ok" after three German turns is German.  Capitalised words after the first
   (names, titles: "Finde The House of the Yellow Carpet") count less, and in
   mixed-script messages Latin letters count less than the other script.
   A name or number with a Turkish case ending after an apostrophe
   ("Spotify'da", "6'ya") is evidence for Turkish, and the name itself none
   (both text rules in ``language_names``).
   Kanji-only text is Japanese when its characters are ones Japanese writes
   and simplified Chinese does not (気, 変).

The constants were tuned on one half of xSID dev (``bench/understanding.py``
reports on the other half).

Below a confidence floor the result is ``"unknown"`` with that (low)
confidence rather than a confident guess.

This module knows nothing about intents, retrieval or the LLM; it returns ISO
639-1 codes.  The profiles and word lists (87,598 n-grams, about 1.5 M words)
are arrays in files under the assistant's home, written once and read a row at
a time (``language_tables``: the same values, ~5 MB resident instead of ~100);
there is no other state.  Without ``wordfreq`` installed it falls back to
n-grams alone.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Sequence

import numpy as np

from .language_names import split_names, turkish_suffixes
from .language_tables import tables
from .scripts import (  # noqa: F401 (clean_text is part of this module's API)
    _CYRILLIC_MARKERS, _SCRIPT_CANDIDATES, _SCRIPT_LANGUAGE, clean_text, script_counts, script_of,
)

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
CONFIDENCE_FLOOR = 0.35
"""Below this the answer is ``unknown`` (with the low confidence kept)."""

Source = Literal["script", "model", "prior", "none"]


@dataclass(frozen=True)
class LanguageResult:
    """The detected language of one message."""

    language: str
    """ISO 639-1 code (``en``, ``zh``, ``de`` ...) or ``unknown``."""
    confidence: float
    """0..1; a calibrated-ish posterior of the chosen language."""
    source: Source = "model"
    """What decided: a script rule, the n-gram model, the conversation prior, or nothing."""


# --------------------------------------------------------------------------
# Priors written by hand (not fitted to any benchmark's test split).

# Rough share of chat traffic per language; only matters for short messages.
BASE_RATE: MappingProxyType[str, float] = MappingProxyType({
    "en": 0.20, "es": 0.06, "de": 0.05, "fr": 0.05, "pt": 0.05, "it": 0.04, "ru": 0.05, "zh": 0.06,
    "ja": 0.03, "ar": 0.04, "nl": 0.025, "tr": 0.025, "pl": 0.02, "id": 0.025, "ko": 0.02, "vi": 0.015,
    "uk": 0.01, "sv": 0.01, "da": 0.008, "no": 0.008, "fi": 0.006, "cs": 0.006, "ro": 0.008, "hu": 0.005,
    "el": 0.005, "fa": 0.008, "hi": 0.01, "th": 0.008, "he": 0.004, "bg": 0.003, "hr": 0.003, "sk": 0.003,
    "lt": 0.002, "ca": 0.003, "tl": 0.003, "ur": 0.004,
})
_OTHER_RATE = 0.001
_BASE_RATE_WEIGHT = 1.0
"""Exponent of the base rates (1: as written)."""

# Chat words of each language (lower case).  A word listed under several
# languages supports each of them.
VOCABULARY: MappingProxyType[str, str] = MappingProxyType({
    "en": "hi hello hey thanks thank you ok okay yes no please help bye goodbye sorry what why how where when "
          "who is are the a my your password account order refund problem issue cancel login email phone great "
          "good bad fine sure cool nice lol pls thx agent human need want can't cannot doesn't don't it not work",
    "de": "hallo hi danke bitte ja nein tschüss servus moin guten tag morgen abend gut schlecht passwort konto "
          "bestellung problem hilfe ich du sie wir nicht und oder ist das der die mein meine warum wie wo wann "
          "genau super toll klar alles geht kein keine mensch mitarbeiter vielen dank",
    "fr": "bonjour salut merci oui non s'il vous plaît svp au revoir aide mot de passe compte commande problème "
          "je tu vous nous pas et ou est le la les mon ma mes pourquoi comment où quand d'accord très bien",
    "es": "hola gracias sí si no por favor adiós ayuda contraseña cuenta pedido problema yo tú usted nosotros "
          "y o es el la los las mi mis por qué cómo dónde cuándo vale bueno muy bien buenas días",
    "it": "ciao grazie sì si no per favore arrivederci aiuto password conto ordine problema io tu lei noi non "
          "e o è il la lo gli le mio mia perché come dove quando va bene buongiorno buonasera",
    "pt": "olá oi obrigado obrigada sim não por favor tchau ajuda senha conta pedido problema eu você nós e ou "
          "é o a os as meu minha por que como onde quando tudo bem bom dia",
    "nl": "hallo hoi dank dankjewel bedankt ja nee alsjeblieft doei hulp wachtwoord account bestelling probleem "
          "ik jij u wij niet en of is de het een mijn waarom hoe waar wanneer goed prima",
    "da": "hej tak ja nej farvel hjælp adgangskode konto bestilling problem jeg du vi ikke og eller er det en "
          "min mit hvorfor hvordan hvor hvornår godt fint",
    "no": "hei takk ja nei ha det hjelp passord konto bestilling problem jeg du vi ikke og eller er det en min "
          "mitt hvorfor hvordan hvor når bra fint",
    "sv": "hej tack ja nej hejdå hjälp lösenord konto beställning problem jag du vi inte och eller är det en "
          "min mitt varför hur var när bra",
    "tr": "merhaba selam teşekkürler teşekkür ederim sağol evet hayır lütfen hoşçakal yardım şifre hesap "
          "sipariş sorun ben sen biz değil ve veya bu bir benim neden nasıl nerede ne zaman tamam iyi",
    "id": "halo hai terima kasih ya tidak tolong selamat tinggal bantuan kata sandi akun pesanan masalah saya "
          "kamu anda kami bukan dan atau ini itu apa kenapa bagaimana dimana kapan baik oke",
    "pl": "cześć dzień dobry dziękuję tak nie proszę widzenia pomoc hasło konto zamówienie problem ja ty my "
          "lub jest mój moja dlaczego jak gdzie kiedy dobrze",
    "ru": "привет здравствуйте спасибо да нет пожалуйста пока помощь пароль аккаунт заказ проблема я ты вы мы "
          "не и или это мой моя почему как где когда хорошо",
    "uk": "привіт дякую так ні будь ласка допомога пароль замовлення проблема я ти ви ми не і або це мій "
          "чому як де коли добре",
    "vi": "xin chào cảm ơn vâng không làm ơn tạm biệt giúp mật khẩu tài khoản đơn hàng vấn đề tôi bạn",
    "ro": "salut bună mulțumesc da nu vă rog la revedere ajutor parolă cont comandă problemă eu tu noi și sau",
    "fi": "hei moi kiitos kyllä ei ole apua salasana tili tilaus ongelma minä sinä me ja tai miksi miten",
})


@functools.lru_cache(maxsize=1)
def _vocabulary_index() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for lang, words in VOCABULARY.items():
        for word in words.split():
            index.setdefault(word, set()).add(lang)
    return {w: frozenset(langs) for w, langs in index.items()}


# --------------------------------------------------------------------------
# langdetect profiles


@dataclass(frozen=True)
class _Profiles:
    factory: object  # what langdetect's Detector reads of its factory, over every n-gram (see _ngrams)
    languages: tuple[str, ...]  # ISO codes, zh-cn/zh-tw folded to zh (duplicates kept in place)
    log_base: np.ndarray  # (n_langs,) log base rate


class _EveryNgram:
    """Says yes to every n-gram: langdetect's extraction then gives them all, and ``_evidence`` keeps those
    the profiles have (one vectorised look-up in the mapped tables instead of a dict per n-gram)."""

    def __contains__(self, ngram: object) -> bool:
        return True


@functools.lru_cache(maxsize=1)
def _profiles() -> _Profiles:
    from types import SimpleNamespace

    langlist = tables().languages
    languages = tuple("zh" if code.startswith("zh") else code for code in langlist)
    base = np.array([BASE_RATE.get(code, _OTHER_RATE) for code in languages], dtype=np.float64)
    base[[i for i, c in enumerate(langlist) if c == "zh-tw"]] *= 0.3
    factory = SimpleNamespace(word_lang_prob_map=_EveryNgram(), langlist=list(langlist), seed=0)
    return _Profiles(factory=factory, languages=languages, log_base=_BASE_RATE_WEIGHT * np.log(base))


def _ngrams(text: str) -> list[str]:
    """langdetect's n-grams of ``text`` (its own normalisation and cleaning), every one of them."""
    from langdetect.detector import Detector

    detector = Detector(_profiles().factory)
    detector.append(text + " ")  # the trailing space gives the last word its word-end n-grams ("rà ", "à ")
    detector.cleaning_text()
    return detector._extract_ngrams()  # langdetect's extraction, reused on purpose


_WORD_RE = re.compile(r"[^\W\d_]+")


def _word_log_likelihood(words: Sequence[str], n_langs: int) -> np.ndarray | None:
    """(n_langs,) summed log-frequency of ``words`` per language; the median language for uncovered ones."""
    lexicon = tables()
    if not len(lexicon.word_keys) or not words:
        return None
    covered = np.asarray(lexicon.covered)
    total = np.zeros(n_langs)
    for word in words:
        row = np.full(n_langs, _WORD_FLOOR_LOG10)
        cols, log10_freq = lexicon.word_entries(word)
        if len(cols):
            cols = np.asarray(cols)
            row[cols] = np.maximum(row[cols], np.log10(10.0 ** np.asarray(log10_freq) + 10.0 ** _WORD_FLOOR_LOG10))
        row[~covered] = np.median(row[covered])
        total += row
    return total * _WORD_WEIGHT * math.log(10.0)


_WORD_FLOOR_LOG10 = -8.0
"""log10 frequency given to a word absent from a language's list (the lists stop near 1e-6)."""
_WORD_WEIGHT = 1.5
"""Natural-log units of evidence per decade of word frequency."""


_LIKELIHOOD_TEMPERATURE = 3.0
"""Log-likelihoods of n-grams are not independent; dividing by this keeps confidences honest."""
_MAX_NGRAMS = 600
_MIN_NGRAM = 2
"""Single characters say little about a Latin-script language and swamp short texts."""
_NAME_WEIGHT = 0.2
"""Weight of the evidence of name- or title-like words (see ``language_names.split_names``)."""
_VOCABULARY_BONUS = math.log(30.0)
"""Log-odds added for a one-word message listed in VOCABULARY."""
_SMALL_BONUS = math.log(4.0)
"""Log-odds added per listed word of a 2-3 word message."""


_TURKISH_SUFFIX_BONUS = math.log(1e4)
"""Log-odds for Turkish per name, abbreviation or number with a Turkish case ending."""


def _evidence(text: str, n_langs: int) -> np.ndarray | None:
    """(n_langs,) log-likelihood of ``text`` per language: n-grams plus word frequencies."""
    every = _ngrams(text)
    known = [(g, r) for g, r in zip(every, tables().ngram_rows(every).tolist()) if r >= 0][:_MAX_NGRAMS]
    rows = [r for g, r in known if len(g) >= _MIN_NGRAM]
    if not rows:
        return None
    # each row: log(p + langdetect's ALPHA_DEFAULT / BASE_FREQ smoothing), precomputed (language_tables)
    loglik = tables().ngram_loglik.rows(rows).sum(axis=0) / _LIKELIHOOD_TEMPERATURE
    wordlik = _word_log_likelihood(_WORD_RE.findall(unicodedata.normalize("NFC", text.lower())), n_langs)
    return loglik if wordlik is None else loglik + wordlik


def _score(text: str, candidates: Sequence[str] | None, prior: Sequence[str],
           turkish_endings: int = 0) -> dict[str, float]:
    """Posterior over candidate languages (all langdetect languages when None)."""
    profiles = _profiles()
    n_langs = len(profiles.languages)
    body, names = split_names(text)
    loglik = _evidence(body, n_langs) if body else None
    if loglik is None:
        if not turkish_endings:
            return {}
        loglik = np.zeros(n_langs)
    if names:
        name_loglik = _evidence(names, n_langs)
        if name_loglik is not None:
            loglik = loglik + _NAME_WEIGHT * name_loglik
    words = re.findall(r"[^\W\d_][\w']*", text.lower())
    score = loglik + profiles.log_base
    if len(words) <= 3:
        vocab = _vocabulary_index()
        bonus = _VOCABULARY_BONUS if len(words) == 1 else _SMALL_BONUS
        for word in words:
            for lang in vocab.get(word, ()):
                score[[i for i, c in enumerate(profiles.languages) if c == lang]] += bonus
    if turkish_endings:
        score[[i for i, c in enumerate(profiles.languages) if c == "tr"]] += _TURKISH_SUFFIX_BONUS * turkish_endings
    score += _conversation_log_prior(profiles.languages, prior, n_words=len(words))
    if candidates is not None:
        mask = np.array([c in candidates for c in profiles.languages])
        if mask.any():
            score = np.where(mask, score, -np.inf)
    score -= score.max()
    probs = np.exp(score)
    probs /= probs.sum()
    out: dict[str, float] = {}
    for code, p in zip(profiles.languages, probs):
        out[code] = out.get(code, 0.0) + float(p)
    return out


def _conversation_log_prior(languages: Sequence[str], prior: Sequence[str], n_words: int) -> np.ndarray:
    """Log prior from earlier turns: recent turns weigh more; fades as the message gets longer."""
    known = [p for p in prior if p and p != UNKNOWN]
    if not known:
        return np.zeros(len(languages))
    share: dict[str, float] = {}
    total = 0.0
    for age, lang in enumerate(reversed(known)):
        w = 0.7 ** age
        share[lang] = share.get(lang, 0.0) + w
        total += w
    strength = 3.0 / max(1.0, n_words / 2.0)  # strong for "ok", weak for a paragraph
    return np.array([strength * math.log(0.05 + share.get(c, 0.0) / total) for c in languages])


def _japanese_only_share(text: str) -> float:
    """Among Han characters that only one of Japanese and simplified Chinese writes, the share Japanese writes.

    Traditional forms (設, 時) count as Japanese here: without other evidence,
    Japanese is the likelier writer of them (base rates: ja 3%, traditional zh
    about a fifth of zh's 6%); the conversation prior overrides this.
    """
    ja_only, zh_only = tables().ja_only, tables().zh_only
    n_ja = sum(ch in ja_only for ch in text)
    n_zh = sum(ch in zh_only for ch in text)
    return n_ja / (n_ja + n_zh) if n_ja + n_zh else 0.0


# --------------------------------------------------------------------------
# Public


def detect(text: str, prior: Sequence[str] = ()) -> LanguageResult:
    """Language of ``text``; ``prior`` lists the languages of earlier user turns, oldest first."""
    if not isinstance(text, str):
        from ..errors import InputError

        raise InputError(f"language.detect: text must be a string; got {type(text).__name__}")
    cleaned = clean_text(text)
    body, names = split_names(cleaned)
    counts = script_counts(body)
    for script, count in script_counts(names).items():  # a Latin title in a Chinese sentence is not the language
        counts[script] = counts.get(script, 0.0) + _NAME_WEIGHT * count
    if not counts:
        return _from_prior(prior)
    script = max(counts, key=counts.get)
    total = sum(counts.values())
    share = counts[script] / total
    if script == "han" and counts.get("kana", 0) > 0:
        script = "kana"  # Japanese mixes Kanji with Kana
    if script == "han" and _last_known(prior) != "zh" and _japanese_only_share(cleaned) > 0.5:
        script = "kana"  # Kanji only, in forms that Chinese does not write (気, 変, 駅...)
    if script in _SCRIPT_LANGUAGE:
        return LanguageResult(_SCRIPT_LANGUAGE[script], round(0.5 + 0.49 * share, 4), "script")
    if script == "cyrillic":
        for lang, markers in _CYRILLIC_MARKERS:
            if any(ch in markers for ch in cleaned):
                return LanguageResult(lang, round(0.5 + 0.45 * share, 4), "script")
    candidates = _SCRIPT_CANDIDATES.get(script)
    if script == "latin":
        turkish, rest = turkish_suffixes(text)
        latin = clean_text(rest) if turkish else cleaned
        only = "".join(ch for ch in latin if script_of(ch) in ("latin", None)).strip()
        posterior = _score(only, None, prior, turkish)
        posterior = {k: v for k, v in posterior.items() if k not in _NON_LATIN_LANGS}
        norm = sum(posterior.values()) or 1.0
        posterior = {k: v / norm for k, v in posterior.items()}
    else:
        posterior = _score(cleaned, candidates, prior)
    if not posterior:
        return _from_prior(prior)
    lang = max(posterior, key=posterior.get)
    confidence = posterior[lang] * (0.6 + 0.4 * share)
    if confidence < CONFIDENCE_FLOOR:
        return LanguageResult(UNKNOWN, round(confidence, 4), "model")
    return LanguageResult(lang, round(confidence, 4), "model")


_NON_LATIN_LANGS = frozenset(
    "ar bg bn el fa gu he hi ja kn ko mk ml mr ne pa ru ta te th uk ur zh".split()
)


def _last_known(prior: Sequence[str]) -> str | None:
    return next((p for p in reversed(prior) if p and p != UNKNOWN), None)


def _from_prior(prior: Sequence[str]) -> LanguageResult:
    """No letters: the conversation's most recent known language, else unknown."""
    known = [p for p in prior if p and p != UNKNOWN]
    if not known:
        return LanguageResult(UNKNOWN, 0.0, "none")
    last = known[-1]
    agreeing = sum(1 for p in known[-3:] if p == last) / min(3, len(known))
    return LanguageResult(last, round(0.3 + 0.4 * agreeing, 4), "prior")


_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_TECHNICAL = re.compile(r"\S*[0-9_./:\\=<>\-]\S*")
MIN_PROSE_LETTERS = 12
"""Letters of prose a text needs, code and file names left out, for ``prose_language`` to name its language."""


def prose_letters(text: str) -> tuple[str, int]:
    """``text`` with its code, commands, file names and variables blanked out, and the letters left."""
    prose = _TECHNICAL.sub(" ", _CODE.sub(" ", text))
    return prose, sum(c.isalpha() for c in prose)


def prose_language(text: str, min_letters: int = MIN_PROSE_LETTERS) -> LanguageResult:
    """The language of an answer's prose, with its code, commands, file names and variables left out
    (`` `ASSISTANT_ADMIN_KEY` `` is in no language); unknown when under ``min_letters`` letters remain."""
    prose, letters = prose_letters(text)
    if letters < min_letters:
        return LanguageResult(UNKNOWN, 0.0, "none")
    return detect(prose)
