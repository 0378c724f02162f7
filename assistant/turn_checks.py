"""The checks one turn's answer passes before the user sees any of it, built from what the model was
shown: the prompt's data tag taken out (``prompting.TagStripper``), the output guard against a repeated
system prompt or secret (``prompting.LeakGuard``), numbers no source gives, addresses on hosts none
names, the message echoed back and text the user dictated in quotes (``grounding``).

``Engine.respond`` builds one ``TurnChecks`` per turn and streams only what ``shown`` lets through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .config import ChatConfig
from .grounding import EchoCheck, LinkCheck, NumberCheck, QuoteCheck
from .prompting import LeakGuard, TagStripper
from .types import Conversation, Prompt, Turn


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
