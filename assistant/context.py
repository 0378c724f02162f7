"""Multi-turn context: the retrieval query of a follow-up turn, references to
earlier sources ("the second one"), and the running summary that stands in
for turns that no longer fit the model's context.

Knows conversations and messages; not models, indexes or the UI.  The summary
is extractive (the user's questions and the first sentence of each answer),
so it costs no generation and never invents anything.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .types import Conversation, Turn

# Words that make a message lean on what came before.
_FOLLOWUP_EN = {
    "it", "its", "it's", "they", "them", "their", "theirs", "this", "that", "these", "those", "he", "she", "him",
    "her", "his", "hers", "there", "one", "ones", "same", "also", "too", "else", "former", "latter",
}
_FOLLOWUP_LEADS = ("and ", "what about", "how about", "but ", "so ", "also ", "then ", "why ", "ok ", "okay ")
_FOLLOWUP_ZH = ("它", "他", "她", "其", "这", "那", "该", "此", "还有", "那么", "呢", "这个", "那个", "他们", "它们", "她们")
_STOP_EN = {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "do", "does", "did", "what", "which", "who", "whom",
    "when", "where", "why", "how", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or", "not",
    "i", "you", "we", "my", "your", "our", "me", "can", "could", "would", "should", "will", "please", "about",
    "many", "much", "did", "has", "have", "had", "as", "than", "into", "there", "after", "before", "during",
} | _FOLLOWUP_EN
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4,
    "第一": 1, "第二": 2, "第三": 3, "第四": 4, "第五": 5,
}
_WORD = re.compile(r"[\w'-]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff\u3040-\u30ff\uac00-\ud7af]")


def is_followup(message: str) -> bool:
    """Does the message lean on earlier turns (pronoun, elision, very short)?"""
    text = message.strip().lower()
    if not text:
        return False
    if _CJK.search(text):
        return any(m in text for m in _FOLLOWUP_ZH) or len(_CJK.findall(text)) <= 6
    if text.startswith(_FOLLOWUP_LEADS):
        return True
    words = _WORD.findall(text)
    if any(w in _FOLLOWUP_EN for w in words):
        return True
    content = [w for w in words if w not in _STOP_EN]
    return len(content) <= 1


def key_terms(text: str, limit: int = 8) -> list[str]:
    """Content words of a message (CJK text is kept whole: BM25 bigrams handle it)."""
    if _CJK.search(text):
        cleaned = re.sub(r"[？?！!。，,、：:；;\s]+", " ", text).strip()
        for marker in ("什么", "怎么", "如何", "多少", "哪里", "哪个", "为什么", "吗", "呢", "是", "的", "了"):
            cleaned = cleaned.replace(marker, " ")
        return [w for w in cleaned.split() if w][:limit]
    seen: list[str] = []
    for w in _WORD.findall(text):
        lw = w.lower()
        if lw not in _STOP_EN and len(lw) > 1 and lw not in (s.lower() for s in seen):
            seen.append(w)
    return seen[:limit]


def _last_answered(conversation: Conversation) -> Turn | None:
    for turn in reversed(conversation.turns):
        if turn.route == "answer":
            return turn
    return None


def referenced_source(conversation: Conversation, message: str) -> Any | None:
    """The earlier source an ordinal refers to: "and the second one?" → source [2] of the last answer."""
    last = _last_answered(conversation)
    if last is None or not last.sources:
        return None
    text = message.lower()
    for word, n in _ORDINALS.items():
        if word in text and n <= len(last.sources):
            return last.sources[n - 1]
    match = re.search(r"\[(\d)\]", text)
    if match and 1 <= int(match.group(1)) <= len(last.sources):
        return last.sources[int(match.group(1)) - 1]
    return None


def followup_query(conversation: Conversation, message: str) -> str:
    """The search query for ``message``: the message itself when it stands
    alone; otherwise the message plus the key terms of the subject it leans on
    (the last answered turn's query) — and the title of a source it names."""
    source = referenced_source(conversation, message)
    if source is not None:
        return f"{message} {source.title} {source.heading}".strip()
    last = _last_answered(conversation)
    if last is None or not is_followup(message):
        return message
    context = last.query or last.user
    terms = key_terms(context)
    if not terms:
        return message
    return f"{message} {' '.join(terms)}"


def retrieve_for_turn(search: Callable[[str, int], list[Any]], conversation: Conversation, message: str,
                      k: int, agree_k: int = 10) -> tuple[str, list[Any]]:
    """Retrieve for a turn; returns (query used, hits).

    A follow-up's augmented query is trusted only when its best hit is also
    among the ``agree_k`` best hits of the message alone (or the message alone
    finds nothing): a standalone question that merely contains "it" after an
    unrelated turn keeps its own results.  Chosen by measurement on the
    xquad-dev two-turn cases (bench/multiturn.py): it closes the follow-up gap
    without losing standalone recall, where always augmenting lost 7-8 points.
    """
    augmented = followup_query(conversation, message)
    if augmented == message:
        return message, search(message, k)
    alone = search(message, max(k, agree_k))
    boosted = search(augmented, k)
    if not alone:
        return augmented, boosted
    if boosted and boosted[0].chunk_id in {h.chunk_id for h in alone[:agree_k]}:
        return augmented, boosted
    return message, alone[:k]


# -- summary memory ---------------------------------------------------------

def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    match = re.search(r"(.+?[.!?。！？])(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def summary_line(turn: Turn) -> str:
    line = f"User asked: {_first_sentence(turn.user, 120)}"
    if turn.answer:
        line += f" — Assistant: {_first_sentence(turn.answer)}"
    return line


def fold_summary(conversation: Conversation, turn_ids: list[str], count_tokens: Callable[[str], int],
                 budget_tokens: int) -> bool:
    """Fold the given turns into ``conversation.summary``; keep it within ``budget_tokens``.

    The newest folded lines are kept when the summary outgrows its budget
    (the oldest lines go first).  Returns True when the summary changed.
    """
    new = [t for t in conversation.turns if t.id in set(turn_ids) and t.id not in conversation.summarized_turns]
    if not new:
        return False
    lines = [l for l in conversation.summary.split("\n") if l.strip()] + [summary_line(t) for t in new]
    while lines and count_tokens("\n".join(lines)) > budget_tokens:
        if len(lines) == 1:
            words = lines[0].split()
            lines[0] = " ".join(words[: max(1, int(len(words) * 0.8))]) + "…"
            if len(words) <= 2:
                lines = []
        else:
            lines.pop(0)
    conversation.summary = "\n".join(lines)
    conversation.summarized_turns.extend(t.id for t in new)
    return True
