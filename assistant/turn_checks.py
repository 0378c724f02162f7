"""The checks one turn's answer passes before the user sees any of it, built from what the model was
shown: the prompt's data tag taken out (``prompting.TagStripper``), the output guard against a repeated
system prompt or secret (``prompting.LeakGuard``), numbers no source gives, addresses on hosts none
names, the message echoed back and text the user dictated in quotes (``grounding``); where a source is
in another language than the question, whether the answer begins in the user's (``AnswerLanguage``);
and, once the answer is complete, whether its sources made it at all (``support_low``).

``Engine.respond`` builds one ``TurnChecks`` per turn and streams only what ``shown`` lets through;
``apply_result`` and ``decline`` set the finished turn's answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .config import ChatConfig
from .grounding import SUPPORT_SCAN, EchoCheck, LinkCheck, NumberCheck, QuoteCheck, restated, source_support
from .prompting import LANGUAGE_NAMES, NOT_FOUND, LeakGuard, RefusalLocalizer, TagStripper
from .types import Conversation, Prompt, Source, Turn
from .understanding.language import prose_language, prose_letters

log = logging.getLogger(__name__)


@dataclass
class TurnChecks:
    tags: TagStripper
    guard: LeakGuard | None
    """Stops an answer repeating the system prompt or a secret; None when the guard is off."""
    numbers: NumberCheck | None
    """Numbers against what the model was shown (``ChatConfig.check_numbers``); None when off or
    when the turn has no sources (an answer without sources is not from them)."""
    links: LinkCheck | None
    """Addresses on hosts the sources, the system prompt, earlier answers or configured origins name."""
    echo: EchoCheck | None
    quotes: QuoteCheck | None
    """The last two only when the turn answers from sources: a plain chat model may be asked to repeat
    something."""

    @classmethod
    def for_turn(cls, chat: ChatConfig, conversation: Conversation, turn: Turn, prompt: Prompt, *, guard: bool,
                 secrets: Sequence[str] = (), link_origins: Sequence[str] = (),
                 image_origins: Sequence[str] = ()) -> "TurnChecks":
        sources = [s.text for s in turn.sources]
        numbers = None
        if chat.check_numbers and sources:
            given = sources + [chat.system_prompt, turn.user]
            given += [t for past in conversation.turns for t in (past.user, past.answer)]
            given += [str(v) for v in conversation.slots.values()]
            numbers = NumberCheck(given)
        checks = cls(TagStripper.of(prompt), None, numbers, None, None, None)
        if not guard:
            return checks
        checks.guard = LeakGuard([chat.system_prompt.replace("{name}", chat.assistant_name)],
                                 tuple(secrets) + tuple(chat.secrets))
        checks.links = LinkCheck(sources + [chat.system_prompt] + [past.answer for past in conversation.turns]
                                 + [o for o in link_origins if o != "*"], image_origins)
        if sources:
            checks.echo = EchoCheck(turn.user, sources)
            checks.quotes = QuoteCheck(turn.user, sources + [chat.system_prompt])
        return checks

    def parts(self) -> tuple[Any, ...]:
        """(guard, numbers, tags, links, echo, quotes, shown): what ``Engine.respond`` works with."""
        return self.guard, self.numbers, self.tags, self.links, self.echo, self.quotes, self.shown

    def shown(self, raw: str, final: bool = False) -> str:
        """What of ``raw`` (the generated text) the user may see: no data tag, no address on a host
        nothing given names, no passage the user quoted that nothing given says; while streaming,
        nothing from a tag, an address or such a passage still being written."""
        if not final:
            raw = raw[:self.tags.pending(raw)]
        text = self.tags.strip(raw)
        if self.links is not None:
            text = self.links.clean(text if final else text[:self.links.pending(text)])
        if self.quotes is not None:
            text = self.quotes.clean(text if final else text[:self.quotes.pending(text)])
        return text


class AnswerLanguage:
    """Whether an answer comes out in the user's language, where it is at risk: when a source the model
    is shown is written in another one.  A small model that reads an English passage for a German
    question, or a Chinese page for a Japanese one, tends to copy it in the passage's language, the
    system prompt's "always answer in German" notwithstanding (3 of 45 guide answers on the report
    half did).  Asking every such question with "Answer in German." after it fixed those and changed
    answers that were right (2 of 52 guide answers lost), so the reminder is only for a second try:
    the streaming caller holds the answer back while ``pending``, and asks again with
    ``PromptParts.remind`` when ``wrong`` names the answer's language.  Inactive (``watching`` False)
    for an unknown language or sources all in the user's.
    """

    DECIDE_LETTERS = 24
    """Letters of prose (code and file names left out) read before deciding mid-answer, where the detector
    is then sure (``MIN_CONFIDENCE``) that the answer is in the user's language or a source's."""
    MAX_LETTERS = 64
    """Letters read at most while the detector is not sure.  An answer that opens by copying an English
    list into a German sentence ("Markdown (`.md`) und plain text (`.txt`) - web pages ...") reads as
    English at 0.59 after 24 letters and at 0.97 after 40; a Spanish one ("Markdown (`.md`) y plain text")
    as Tagalog after 24 and English after 40, and went out whole in English (guide question es-02,
    2026-12-07; it is asked again now, and the 1.5B model copies the list again)."""
    MIN_CONFIDENCE = 0.6
    """How sure the detector must be of the answer's language."""

    def __init__(self, language: str, sources: Sequence[Source]) -> None:
        self.language = language
        self.foreign = {s.language for s in sources if s.language and s.language != language}
        self.watching = language in LANGUAGE_NAMES and bool(self.foreign)
        self.decided = not self.watching

    def pending(self, text: str) -> bool:
        """Whether ``text`` (the answer so far) is held back: watching, and too little prose yet to tell
        (under ``DECIDE_LETTERS``, or under ``MAX_LETTERS`` with the detector unsure of it)."""
        if self.decided:
            return False
        letters = prose_letters(text)[1]
        if letters < self.DECIDE_LETTERS:
            return True
        found = prose_language(text) if letters < self.MAX_LETTERS else None
        self.decided = found is None or (found.confidence >= self.MIN_CONFIDENCE
                                         and (found.language == self.language or found.language in self.foreign))
        return not self.decided

    def wrong(self, text: str) -> str:
        """The language ``text`` is in when that is one of its sources' instead of the user's, else ""
        (also for an answer with too little prose to tell, and when not watching)."""
        if not self.watching:
            return ""
        found = prose_language(text)
        if found.language in self.foreign and found.confidence >= self.MIN_CONFIDENCE:
            return found.language
        return ""


def apply_result(turn: Turn, result: Any, started: float, shown: Callable[..., str]) -> None:
    """The finished generation ``result`` (a ``GenerationResult``) on ``turn``: the answer as shown, its
    tokens and their log-probabilities, and its times (counted from a first try in another language, if
    there was one: ``AnswerLanguage``)."""
    turn.answer = shown(result.text, final=True)
    turn.answer_ids, turn.answer_logprobs = list(result.token_ids), list(result.logprobs)
    turn.finish_reason = result.finish_reason
    first = turn.timings.get("language_retry_after", 0.0)
    turn.timings["first_token"] = result.time_to_first_token + first
    turn.timings["generate"] = result.total_time + first
    turn.timings["cached_tokens"] = float(result.cached_tokens)
    turn.timings["total"] = time.perf_counter() - started


def decline(turn: Turn) -> None:
    """An answer a check refused: the fixed "not in my documents" reply in the user's language instead."""
    turn.answer = NOT_FOUND.get(turn.language, NOT_FOUND["en"])
    turn.answer_ids, turn.answer_logprobs = [], []
    turn.finish_reason = "filtered"


def support_low(chat: ChatConfig, score: Callable[..., list[float]] | None, turn: Turn,
                bare_prompt: Callable[[], list[int]], question_ids: Callable[[], list[int]] = list,
                adapter: bool = False) -> bool:
    """Whether the finished turn's answer is one its sources hardly made more likely (``ChatConfig.
    check_support``, ``grounding.source_support``): ``score`` (the backend's, None where it cannot score)
    rescores the answer's first ``SUPPORT_SCAN`` tokens after ``bare_prompt()``, the turn's prompt without its
    sources; the tokens restating ``question_ids()`` (the user's message) are left out.  The support goes
    into ``turn.timings["support"]`` (``support_first``: the first ``SUPPORT_TOKENS`` tokens, none left
    out), the time it took into ``support_check``.  ``adapter``: the retry adapter wrote the answer (after
    the model declined), and rescores it too, so that both sides of the measure are the same model's.
    False where there is nothing to check (no sources, a decline, a cancelled turn) or the check fails
    (the answer stands)."""
    if (not chat.check_support or score is None or not turn.sources or not turn.answer_ids
            or turn.finish_reason == "cancelled" or RefusalLocalizer.refused(turn.answer)):
        return False
    started = time.perf_counter()
    try:
        answer = turn.answer_ids[:SUPPORT_SCAN]
        without = score(bare_prompt(), answer, adapter=True) if adapter else score(bare_prompt(), answer)
        skip = restated(answer, question_ids())
    except Exception:  # a failed check must not cost the answer
        log.exception("turn %s: the support check failed; the answer stands", turn.id)
        return False
    turn.timings["support"] = source_support(turn.answer_logprobs, without, skip)
    turn.timings["support_first"] = source_support(turn.answer_logprobs, without)
    turn.timings["support_check"] = time.perf_counter() - started
    return turn.timings["support"] < chat.support_min
