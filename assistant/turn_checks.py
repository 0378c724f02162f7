"""The checks one turn's answer passes before the user sees any of it, built from what the model was
shown: the prompt's data tag taken out (``prompting.TagStripper``), the output guard against a repeated
system prompt or secret (``prompting.LeakGuard``), numbers no source gives, addresses on hosts none
names, the message echoed back and text the user dictated in quotes (``grounding``); and, once the
answer is complete, whether its sources made it at all (``support_low``).

``Engine.respond`` builds one ``TurnChecks`` per turn and streams only what ``shown`` lets through.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from .config import ChatConfig
from .grounding import SUPPORT_TOKENS, EchoCheck, LinkCheck, NumberCheck, QuoteCheck, source_support
from .prompting import LeakGuard, RefusalLocalizer, TagStripper
from .types import Conversation, Prompt, Turn

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


def support_low(chat: ChatConfig, score: Callable[[list[int], list[int]], list[float]] | None, turn: Turn,
                bare_prompt: Callable[[], list[int]]) -> bool:
    """Whether the finished turn's answer is one its sources hardly made more likely (``ChatConfig.
    check_support``, ``grounding.source_support``): ``score`` (the backend's, None where it cannot score)
    rescores the answer's first tokens after ``bare_prompt()``, the turn's prompt without its sources.  The
    support goes into ``turn.timings["support"]``, the time it took into ``support_check``.  False where there
    is nothing to check (no sources, a decline, a cancelled turn) or the check fails (the answer stands)."""
    if (not chat.check_support or score is None or not turn.sources or not turn.answer_ids
            or turn.finish_reason == "cancelled" or RefusalLocalizer.refused(turn.answer)):
        return False
    started = time.perf_counter()
    try:
        without = score(bare_prompt(), turn.answer_ids[:SUPPORT_TOKENS])
    except Exception:  # a failed check must not cost the answer
        log.exception("turn %s: the support check failed; the answer stands", turn.id)
        return False
    turn.timings["support"] = source_support(turn.answer_logprobs, without)
    turn.timings["support_check"] = time.perf_counter() - started
    return turn.timings["support"] < chat.support_min
