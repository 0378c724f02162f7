"""Questions asked in a language the documents are not written in: the model rewrites the question into
the documents' language, and retrieval searches with both (``retrieve``, for ``Engine._retrieve``).

A multilingual embedder carries a question across languages only so far (multilingual-e5-small,
Chinese and Arabic questions against English paragraphs: R@1 about 0.7, ``bench/retrieval.py``), and
BM25 cannot match words across languages at all.  The rewritten question meets the documents in their
own language on both sides.  It costs one short generation per turn, only where a question's language
is not the documents'; the user's own question still drives the answer.  Off by default
(``chat.translate_queries``, whose docstring gives the measurements)."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from .config import ChatConfig, GenerationConfig
from .context import retrieve_for_turn
from .prompting import LANGUAGE_NAMES, render
from .types import Conversation, Prompt, Turn

log = logging.getLogger(__name__)

MIN_SHARE = 0.1
"""A question's language counts as one the documents are written in when at least this share of the
chunks is (below it, a few stray chunks in that language would stop the rewrite that finds the rest)."""

DEPTH = 10
"""Hits taken from each search, the question's and the rewrite's, before the two are fused by rank."""

_SYSTEM = ("You translate questions for a search engine. Translate the user's message into {target}. "
           "Keep names, numbers, commands, file names and code exactly as they are. "
           "Reply with the translation only, on one line. Never answer the question.")
_LABEL = re.compile(r"^\s*(translation|translated|{target})\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`“”«»「」『』"
_QUESTION_MARKS = "?？؟"

EXAMPLES = (
    {"en": "How many days does a refund take?",
     "de": "Wie viele Tage dauert eine Rückerstattung?",
     "es": "¿Cuántos días tarda un reembolso?",
     "fr": "Combien de jours prend un remboursement ?",
     "it": "Quanti giorni richiede un rimborso?",
     "pt": "Quantos dias leva um reembolso?",
     "ru": "Сколько дней занимает возврат денег?",
     "zh": "退款需要几天？",
     "ja": "返金には何日かかりますか？",
     "ar": "كم يوماً يستغرق استرداد المبلغ؟"},
    {"en": "Which command lists the files in the `docs` folder?",
     "de": "Welcher Befehl listet die Dateien im Ordner `docs` auf?",
     "es": "¿Qué comando muestra los archivos de la carpeta `docs`?",
     "fr": "Quelle commande affiche les fichiers du dossier `docs` ?",
     "it": "Quale comando elenca i file nella cartella `docs`?",
     "pt": "Qual comando lista os arquivos da pasta `docs`?",
     "ru": "Какая команда выводит список файлов в папке `docs`?",
     "zh": "哪个命令可以列出 `docs` 文件夹中的文件？",
     "ja": "`docs` フォルダーのファイルを一覧表示するコマンドはどれですか？",
     "ar": "ما الأمر الذي يعرض الملفات في المجلد `docs`؟"},
    {"en": "At what temperature does water boil?",
     "de": "Bei welcher Temperatur kocht Wasser?",
     "es": "¿A qué temperatura hierve el agua?",
     "fr": "À quelle température l'eau bout-elle ?",
     "it": "A quale temperatura bolle l'acqua?",
     "pt": "A que temperatura a água ferve?",
     "ru": "При какой температуре кипит вода?",
     "zh": "水在多少度沸腾？",
     "ja": "水は何度で沸騰しますか？",
     "ar": "عند أي درجة حرارة يغلي الماء؟"},
)
"""Worked examples shown before the question (where the target language has them): without them the
1.5B default answered many Arabic questions instead of translating them ("Los Angeles Lakers", "32 years
old").  Their content is neutral on purpose: examples about Austria and Australia leaked those names into
translations."""
_EXAMPLE_SOURCES = ("zh", "de", "ar", "es", "ru", "ja", "fr")


@dataclass
class Rewrite:
    """A question rewritten for retrieval."""

    text: str
    language: str
    seconds: float


def target_language(question_language: str, index_languages: dict[str, int],
                    rewrite_from: Sequence[str] = ()) -> str | None:
    """The language to rewrite a question in ``question_language`` into, or None where none is needed:
    the language most chunks are written in, where the question's own holds under ``MIN_SHARE`` of them.
    ``rewrite_from``: the question languages rewritten at all (empty: every one)."""
    if question_language in ("", "unknown") or question_language not in LANGUAGE_NAMES:
        return None
    if rewrite_from and question_language not in rewrite_from:
        return None
    counts = {lang: n for lang, n in index_languages.items() if lang}
    total = sum(counts.values())
    if not total or counts.get(question_language, 0) / total >= MIN_SHARE:
        return None
    target = max(counts, key=lambda lang: counts[lang])
    return target if target in LANGUAGE_NAMES and target != question_language else None


def rewrite_prompt(tokenizer: Any, question: str, target: str) -> Prompt:
    """The chat prompt that asks the model to translate ``question`` into ``target`` (an ISO code)."""
    messages = [{"role": "system", "content": _SYSTEM.format(target=LANGUAGE_NAMES[target])}]
    if target in EXAMPLES[0]:
        sources = [lang for lang in _EXAMPLE_SOURCES if lang != target]
        for example, lang in zip(EXAMPLES, sources):
            messages += [{"role": "user", "content": example[lang]}, {"role": "assistant", "content": example[target]}]
    messages.append({"role": "user", "content": question.strip()})
    ids = tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"]
    return Prompt(messages=messages, input_ids=list(ids), segments=[])


def settings_for(tokenizer: Any, question: str) -> GenerationConfig:
    """Greedy, with room for a translation up to twice the question's length (scripts differ in tokens)."""
    n = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    return GenerationConfig(max_new_tokens=max(16, min(160, 2 * n + 16)), temperature=0.0,
                            repetition_penalty=1.0)


def clean(text: str, question: str, target: str) -> str | None:
    """The translation in the model's output: its first line, without a label or quotes; None for
    nothing usable (empty, far longer than the question, the question itself, or no question where
    one was asked)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    label = re.compile(_LABEL.pattern.replace("{target}", re.escape(LANGUAGE_NAMES[target])), re.IGNORECASE)
    line = label.sub("", lines[0]).strip().strip(_QUOTES).strip()
    if not re.search(r"\w", line) or len(line) > 3 * len(question.strip()) + 40:
        return None
    if line.casefold() == question.strip().casefold():
        return None
    if question.strip().endswith(tuple(_QUESTION_MARKS)) and not line.endswith(tuple(_QUESTION_MARKS)):
        return None  # a question translated is a question; anything else is the model answering it
    return line


def rewrite(backend: Any, tokenizer: Any, question: str, target: str,
            cancel: threading.Event | None = None) -> Rewrite | None:
    """``question`` translated into ``target`` by the answering model (any backend), or None when the
    model gave nothing usable.  Errors of the backend propagate; the engine treats them as no rewrite."""
    import time

    started = time.perf_counter()
    gen = backend.generate(rewrite_prompt(tokenizer, question, target), settings_for(tokenizer, question),
                           cancel or threading.Event(), None)
    for _ in gen:
        pass
    if gen.result.finish_reason == "cancelled":
        return None
    text = clean(gen.result.text, question, target)
    return Rewrite(text, target, time.perf_counter() - started) if text else None


def fuse(first: Sequence[Any], second: Sequence[Any], k: int, constant: int = 60) -> list[Any]:
    """Reciprocal-rank fusion of two ranked hit lists (by ``chunk_id``), best ``k``: a chunk both find
    comes first; ties keep the first list's order.  Hits carry scores of different queries, so ranks,
    not scores, are compared.  The engine puts the rewrite's hits first: on xquad-dev's dev half (40
    questions each in zh, ar, de, es, ru against the English paragraphs) R@1 went 0.755 → 0.865 with
    them first, 0.820 with the question's first, 0.840 with the rewrite's alone."""
    scores: dict[str, float] = {}
    hit_of: dict[str, Any] = {}
    for hits in (first, second):
        for rank, hit in enumerate(hits):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (constant + rank + 1)
            hit_of.setdefault(hit.chunk_id, hit)
    order = sorted(scores, key=lambda c: -scores[c])  # sorted() is stable: first-list order breaks ties
    return [hit_of[c] for c in order[:k]]


def retrieve(index: Any, chat: ChatConfig, backend: Any, tokenizer: Any, conversation: Conversation, message: str,
             language: str, turn: Turn | None = None,
             cancel: threading.Event | None = None) -> tuple[str, list[Any]]:
    """(query used, hits) for a turn: follow-up aware (``context.retrieve_for_turn``); a question in a
    language the documents are not written in is also searched for rewritten into theirs
    (``chat.translate_queries``), the two fused by rank and the rewrite kept on ``turn``.  A rewrite
    that fails, is stopped or is no translation leaves the question's own hits."""
    lang = None if language == "unknown" else language
    k = chat.retrieval_k
    target = target_language(language, index.languages(), chat.translate_from) if chat.translate_queries else None
    depth = k if target is None else max(k, DEPTH)  # fused by rank: look deeper on both sides
    query, hits = retrieve_for_turn(lambda q, n: index.search(q, k=n, language=lang), conversation, message, depth)
    if target is None:
        return query, hits
    try:
        found = rewrite(backend, tokenizer, query, target, cancel)
    except Exception as exc:  # the rewrite only adds to the search: answer from the question's own hits
        log.warning("rewriting the question into %s for retrieval failed (%s); searching with it as asked",
                    target, exc)
        return query, hits[:k]
    if found is None:
        return query, hits[:k]
    if turn is not None:
        turn.query_rewrite = found.text
        turn.timings["rewrite"] = found.seconds
    return query, fuse(index.search(found.text, k=depth, language=target), hits, k)
