"""The conversation engine: one turn from message to stored answer.

    message → language → intent + entities → route
            → (question) follow-up aware query → retrieval → prompt → generation
            → Turn, committed to the store

The engine takes a ``Conversation`` and a message and yields events (``types.TurnStarted``,
``TokenEvent``, ``TurnFinished``, importable from here too); it does
not know Gradio, HTTP or the terminal.  Heavy parts (model, index, intent
model, store) are loaded once by the caller and passed in; per-conversation
state lives in the ``Conversation`` and the store, never in module globals.
The message is checked and read by ``understanding.message``; the answer's checks are ``turn_checks``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from . import scope
from .config import ChatConfig, GenerationConfig
from .errors import AssistantError, InputError
from .explain import citations
from .backends import Backend, LocalBackend
from .generation.local import GenerationResult, PrefixCache
from .generation.models import LoadedModel
from .generation.script_mask import allowed_scripts
from .prompting import (DECLINED_TAKEOVER, NOT_FOUND, WITHHELD_ANSWER, PromptParts, RefusalLocalizer, build_prompt,
                        system_text)
from .store import Store
from .turn_checks import AnswerLanguage, TurnChecks, apply_result, decline, support_low
from .types import Conversation, EngineEvent, Prompt, Source, TokenEvent, Turn, TurnFinished, TurnStarted
from .understanding.message import Understanding, looked_up, read, validate

log = logging.getLogger(__name__)

class Engine:
    """Runs turns.  Thread-safe for different conversations; one turn at a time per conversation."""

    def __init__(
        self,
        lm: LoadedModel,
        store: Store,
        chat: ChatConfig | None = None,
        generation: GenerationConfig | None = None,
        index: Any = None,
        intents: Any = None,
        intent_spec: Any = None,
        backend: Backend | None = None,
        max_cached_conversations: int = 8,
        secrets: tuple[str, ...] = (),
        guard: bool = True,
        link_origins: tuple[str, ...] = (),
        image_origins: tuple[str, ...] = (),
    ) -> None:
        self.lm = lm
        self.store = store
        self.chat = chat or ChatConfig()
        self.generation = generation or GenerationConfig()
        self.index = index
        self.intents = intents
        self.intent_spec = intent_spec
        self.backend: Backend = backend or LocalBackend(lm)
        self.secrets = secrets
        """Strings that must never appear in an answer (API and admin keys; the server sets them)."""
        self.guard = guard
        """Stop and withhold an answer that repeats the system prompt or a secret (``LeakGuard``), take out
        addresses no source names (``LinkCheck``), decline an answer that echoes the message (``EchoCheck``)."""
        self.link_origins = link_origins
        """Origins answers may link to besides the hosts the sources name (the configured image origins and
        the sites embedding the chat; the server sets them)."""
        self.image_origins = image_origins
        """The only origins an image in an answer may come from (``allowed_image_origins``)."""
        self._caches: OrderedDict[str, PrefixCache] = OrderedDict()
        self._max_cached = max_cached_conversations
        self._lock = threading.Lock()

    def use_model(self, lm: LoadedModel) -> None:
        """Generate with ``lm`` from the next turn on (another adapter chosen in the admin area).  The
        conversations' KV caches hold the old weights' keys and values, so they are dropped."""
        with self._lock:
            self.lm = lm
            if isinstance(self.backend, LocalBackend):
                self.backend = LocalBackend(lm)
            self._caches.clear()

    # -- understanding -------------------------------------------------
    def understand(self, message: str, conversation: Conversation) -> Understanding:
        """What ``message`` says (``understanding.message.read``), the conversation's last languages as prior."""
        return read(message, conversation.languages[-3:], self.intents, self.intent_spec)

    # -- one turn ------------------------------------------------------
    def validate(self, message: str) -> str:
        return validate(message, self.chat.max_message_chars)

    def respond(
        self,
        conversation: Conversation,
        message: str,
        settings: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[EngineEvent]:
        """Run one turn; yields ``TurnStarted``, ``TokenEvent``s, then ``TurnFinished``.

        The finished turn is appended to ``conversation`` and committed to the
        store before ``TurnFinished`` is yielded — also when generation is
        cancelled or fails, so no turn is ever lost.
        """
        text = self.validate(message)
        settings = settings or self.generation
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        u = self.understand(text, conversation)
        turn = Turn(
            user=text, language=u.language, language_confidence=u.language_confidence, intent=u.intent,
            intent_confidence=u.intent_confidence, intents=u.intents, entities=u.entities, route=u.route,
            model=self.backend.name,
        )
        self._update_slots(conversation, u.entities)
        turn.timings["understand"] = time.perf_counter() - started
        takeover = self.takeover(text)
        if takeover:
            # Answered without the model: a model that follows instructions would follow these.
            turn.route, turn.answer = "declined", DECLINED_TAKEOVER.get(turn.language, DECLINED_TAKEOVER["en"])
            log.warning("turn %s: the message tries to take the assistant over (%s); declined", turn.id,
                        "; ".join(takeover))
            self.store.record_event("takeover", conversation.id,
                                    {"turn_id": turn.id, "message": text, "findings": takeover})
            yield TurnStarted(turn)
            yield TokenEvent(turn.answer)
            yield self._finish(conversation, turn, None)
            return
        retrieved: tuple[str, list[Any]] | None = None
        t0 = time.perf_counter()
        if looked_up(u.route, u.intent_confidence, self.chat) and self.index is not None:
            retrieved = self._retrieve(conversation, text, u.language, turn, cancel)
            if retrieved[1]:
                u.route = turn.route = "answer"
            elif u.route == "fallback":
                self.store.record_event("no_source", conversation.id, {"turn_id": turn.id, "query": text})
        if u.route != "answer" and u.reply:
            # "{topics}" in a reply: the titles of the documents loaded (assistant.scope)
            turn.answer = scope.fill(u.reply, self.index, u.language)
            if u.route == "handoff":
                self.store.record_event("handoff", conversation.id, {"turn_id": turn.id, "message": text})
            yield TurnStarted(turn)
            yield TokenEvent(turn.answer)
            yield self._finish(conversation, turn, None)
            return

        turn.query, hits = retrieved or self._retrieve(conversation, text, u.language, turn, cancel)
        turn.sources = [Source.from_hit(h) for h in hits]
        turn.timings["retrieve"] = time.perf_counter() - t0
        if self.index is not None and not hits:
            self.store.record_event("no_source", conversation.id, {"turn_id": turn.id, "query": turn.query})
            if not self.chat.answer_without_sources and self.chat.retrieval_k > 0:
                turn.answer = NOT_FOUND.get(turn.language, NOT_FOUND["en"])
                yield TurnStarted(turn)
                yield TokenEvent(turn.answer)
                yield self._finish(conversation, turn, None)
                return
        question = text  # ``text`` is the answer's from here on
        if self.chat.keep_scripts and not settings.scripts:  # no Chinese in the middle of a German answer
            settings = replace(settings, scripts=tuple(sorted(allowed_scripts(turn.language, question))))
        prompt = self._prompt_for(conversation, question, turn)
        error = leak = localized = None
        invented: list[str] = []
        gen = stream = None
        guard, numbers, tags, links, echo, quotes, shown = self._checks(conversation, turn, prompt).parts()
        # An answer that starts in its sources' language instead of the user's is asked again, once,
        # with "Answer in <the user's language>." after the question; held back until its language shows.
        # The retry adapter's answer after a decline is watched the same way.
        def watched() -> AnswerLanguage:
            return AnswerLanguage(turn.language if self.chat.answer_in_language else "", turn.sources)

        spoken = watched()
        # A decline of a question with sources may be answered again by the retry adapter: hold it back.
        retry = self.chat.retry_declines and bool(turn.sources) and getattr(self.backend, "can_retry", False)
        refusal = RefusalLocalizer(turn.language, hold_own=retry)
        echoed = only_dictated = False
        adapter = False

        try:
            yield TurnStarted(turn)
            while True:  # the base model's answer; once more with the retry adapter after a decline
                gen = self.backend.generate(prompt, settings, cancel, self._cache_for(conversation.id),
                                            **({"adapter": True} if adapter else {}))
                stream = iter(gen)
                raw, text, sent = "", "", 0
                again = ""  # the answer's language, when it is its sources' and not the user's
                for delta in stream:
                    if not delta.text:
                        continue
                    raw += delta.text
                    text = shown(raw)
                    leak = guard.check(text) if guard is not None else None
                    if leak:  # stop generating; what went out held fewer than min_words of it
                        cancel.set()
                        break
                    invented = numbers.unsupported(text, final=False) if numbers is not None else []
                    if invented:  # stop generating; the number itself never went out
                        cancel.set()
                        break
                    # Held back: the tail that could be the start of a secret, a number still being
                    # written, or all of a possible refusal in another language (replaced at the end).
                    # Also, where a source is in another language, the start until its language shows.
                    held = (refusal.pending(text) or (echo is not None and echo.pending(text))
                            or spoken.pending(text))
                    if not held and sent == 0 and (again := spoken.wrong(text)):
                        break
                    end = sent if held else len(text) - (guard.holdback if guard is not None else 0)
                    if numbers is not None:
                        end = min(end, numbers.pending(text))
                    if end > sent:
                        yield TokenEvent(text[sent:end])
                        sent = end
                if (not again and not leak and not invented and sent == 0 and not cancel.is_set()
                        and not refusal.pending(text)):
                    again = spoken.wrong(shown(raw, final=True))  # a short answer, held to its end
                if again:
                    stream.close()
                    turn.timings["language_retry_after"] = gen.result.total_time
                    log.info("turn %s: the answer began in %s, its sources' language, not in %s; asking again",
                             turn.id, again, turn.language)
                    spoken = AnswerLanguage("", ())  # the second answer stands
                    prompt = self._prompt_for(conversation, question, turn, remind=turn.language)
                    guard, numbers, tags, links, echo, quotes, shown = self._checks(conversation, turn, prompt).parts()
                    continue
                text = shown(raw, final=True)
                if not leak and not invented and numbers is not None:
                    invented = numbers.unsupported(text)
                echoed = not leak and not invented and echo is not None and echo.echo(text)
                # an answer that was only the dictated passage: nothing of it is left to show
                only_dictated = (not leak and not invented and not echoed and not text.strip() and quotes is not None
                                 and bool(quotes.dictated(tags.strip(raw))))
                echoed = echoed or only_dictated
                if (retry and not adapter and not leak and not invented and not echoed and sent == 0
                        and refusal.refused(text) and not cancel.is_set()):
                    turn.timings["declined_after"] = gen.result.total_time
                    log.info("turn %s: the model declined although sources were shown; asking the retry adapter",
                             turn.id)
                    adapter = True
                    if "language_retry_after" not in turn.timings:  # once per turn: not after a reminded try
                        spoken = watched()
                    continue
                if not leak and not invented and not echoed and sent < len(text):
                    localized = refusal.final(text)
                    yield TokenEvent(localized or text[sent:])
                break
        except GeneratorExit:
            # The caller stopped listening (UI stop button, closed connection):
            # keep what was produced, store the turn, then let the generator close.
            cancel.set()
            if gen is not None and stream is not None:
                stream.close()
                apply_result(turn, gen.result, started, shown)
                if adapter:
                    self._note_retry(conversation, turn, gen.result)
            turn.finish_reason = "cancelled"
            self._finish(conversation, turn, None)
            raise
        except AssistantError as exc:
            error = str(exc)
        except Exception as exc:  # a model failure must not lose the turn; the edge shows `error`
            log.exception("generation failed")
            error = f"generation failed: {exc}"
        if gen is not None:
            if leak or invented:
                stream.close()
            apply_result(turn, gen.result, started, shown)
            if adapter:  # the second try: its times count from the first one's start
                self._note_retry(conversation, turn, gen.result)
            if links is not None and (foreign := links.foreign(tags.strip(gen.result.text))):
                log.warning("turn %s: the answer linked to %s, which no source names; address removed", turn.id,
                            ", ".join(foreign))
                self.store.record_event("foreign_link", conversation.id,
                                        {"turn_id": turn.id, "message": turn.user, "addresses": foreign})
            if quotes is not None and (dictated := quotes.dictated(tags.strip(gen.result.text))):
                log.warning("turn %s: the answer wrote out text the user quoted, which no source says; taken out",
                            turn.id)
                self.store.record_event("dictated", conversation.id,
                                        {"turn_id": turn.id, "message": turn.user, "passages": dictated})
        unsupported = (gen is not None and not error and not leak and not invented and not echoed and not localized
                       and support_low(
                           self.chat, getattr(self.backend, "score", None), turn,
                           lambda: self.build_prompt(conversation, turn.user, replace(turn, sources=[])).input_ids,
                           lambda: list(self.lm.tokenizer(turn.user, add_special_tokens=False)["input_ids"]),
                           adapter=adapter))
        if localized and not error:
            log.info("turn %s: the refusal came in another language than %s; replaced", turn.id, turn.language)
            turn.answer, turn.answer_ids, turn.answer_logprobs = localized, [], []
        if leak:
            log.warning("turn %s: the answer repeated the %s; withheld", turn.id, leak)
            turn.answer, turn.answer_ids, turn.answer_logprobs = WITHHELD_ANSWER, [], []
            turn.finish_reason = "filtered"
        elif invented and not error:
            log.warning("turn %s: the answer states %s, which no source gives; declined", turn.id,
                        ", ".join(invented))
            self.store.record_event("invented_number", conversation.id,
                                    {"turn_id": turn.id, "message": turn.user, "answer": text,  # what was generated
                                     "numbers": invented})
            decline(turn)
        elif echoed and not error:
            if only_dictated:  # its "dictated" event is recorded above
                log.warning("turn %s: the answer was only text the user quoted; declined", turn.id)
            else:
                log.warning("turn %s: the answer repeated the user's message; declined", turn.id)
                self.store.record_event("echo", conversation.id, {"turn_id": turn.id, "message": turn.user,
                                                                  "answer": turn.answer})
            decline(turn)
            yield TokenEvent(turn.answer)
        elif unsupported:
            # routine with the check on by default: recorded for the admin area below, not a terminal warning
            log.info("turn %s: the sources hardly made the answer more likely (%.3f nats a token); declined",
                     turn.id, turn.timings.get("support", float("nan")))
            self.store.record_event("unsupported", conversation.id,
                                    {"turn_id": turn.id, "message": turn.user, "answer": turn.answer,
                                     "support": round(turn.timings.get("support", 0.0), 4)})
            decline(turn)
        if error:
            turn.finish_reason = "error"
        yield self._finish(conversation, turn, error)

    def takeover(self, message: str) -> list[str]:
        """Why ``message`` reads as an attempt to take the assistant over ([] when it does not, or when the
        check is off: ``ChatConfig.screen_messages``, or the guard)."""
        if not (self.guard and self.chat.screen_messages):
            return []
        from retrieval.screening import screen_message

        return [str(f) for f in screen_message(message)]

    def _note_retry(self, conversation: Conversation, turn: Turn, result: GenerationResult) -> None:
        """A turn the retry adapter answered again after the model declined: times from the first try's
        start, the adapter named with the model, and an event for the admin area."""
        first = turn.timings.get("declined_after", 0.0)
        for key in ("first_token", "generate"):
            if turn.timings.get(key) is not None:
                turn.timings[key] += first
        turn.model = f"{turn.model} + retry adapter {Path(self.lm.retry_adapter or 'adapter').name}"
        answered = not RefusalLocalizer.refused(result.text)
        self.store.record_event("retried", conversation.id, {"turn_id": turn.id, "message": turn.user,
                                                             "answered": answered})

    def run_turn(self, conversation: Conversation, message: str, **kwargs: Any) -> Turn:
        """Convenience: run a turn to the end and return it."""
        finished = None
        for event in self.respond(conversation, message, **kwargs):
            if isinstance(event, TurnFinished):
                finished = event
        assert finished is not None
        return finished.turn

    # -- pieces --------------------------------------------------------
    def _retrieve(self, conversation: Conversation, message: str, language: str,
                  turn: Turn | None = None, cancel: threading.Event | None = None) -> tuple[str, list[Any]]:
        """(query used, hits): ``crosslingual.retrieve`` over this engine's index and model."""
        from . import crosslingual

        if self.index is None or self.chat.retrieval_k == 0:
            return message, []
        return crosslingual.retrieve(self.index, self.chat, self.backend, self.lm.tokenizer, conversation, message,
                                     language, turn, cancel)

    def budget(self, settings: GenerationConfig | None = None) -> int:
        settings = settings or self.generation
        context = min(self.chat.context_tokens, self.lm.context_length)
        return context - settings.max_new_tokens

    def _prompt_for(self, conversation: Conversation, message: str, turn: Turn, remind: str = "") -> Prompt:
        """``build_prompt``, recorded on ``turn``; sources that did not fit the budget were left out of the
        prompt (lowest-ranked first), so the turn lists only those the model saw."""
        prompt = self.build_prompt(conversation, message, turn, remind)
        turn.prompt_ids, turn.segments, turn.dropped_turns = prompt.input_ids, prompt.segments, prompt.dropped_turns
        turn.sources = turn.sources[:sum(1 for s in prompt.segments if s.kind == "source")]
        return prompt

    def _checks(self, conversation: Conversation, turn: Turn, prompt: Prompt) -> TurnChecks:
        return TurnChecks.for_turn(self.chat, conversation, turn, prompt, guard=self.guard, secrets=self.secrets,
                                   link_origins=self.link_origins, image_origins=self.image_origins)

    def build_prompt(self, conversation: Conversation, message: str, turn: Turn, remind: str = "") -> Prompt:
        """The turn's prompt.  Turns that no longer fit are folded into the
        conversation's running summary (``chat.summary_tokens`` > 0) instead of
        silently vanishing; ``Prompt.dropped_turns`` lists every turn outside
        the context window, summarised or not.  ``remind``: a language the
        question is followed by "Answer in …" for (``PromptParts.remind``)."""
        from .context import fold_summary
        from .prompting import count_tokens

        base = self.chat.system_prompt.replace("{name}", self.chat.assistant_name)
        tokenizer = self.lm.tokenizer
        for _ in range(4):
            folded = set(conversation.summarized_turns)
            parts = PromptParts(
                system=system_text(base, turn.language, conversation.slots),
                message=message,
                history=[t for t in conversation.turns if t.finish_reason != "error" and t.id not in folded],
                sources=turn.sources,
                summary=conversation.summary,
                remind=remind,
            )
            prompt = build_prompt(tokenizer, parts, self.budget())
            if not prompt.dropped_turns or self.chat.summary_tokens == 0:
                break
            if not fold_summary(conversation, prompt.dropped_turns, lambda t: count_tokens(tokenizer, t),
                                self.chat.summary_tokens):
                break
        folded = list(conversation.summarized_turns)
        prompt.dropped_turns = folded + [t for t in prompt.dropped_turns if t not in folded]
        return prompt

    def branch(self, conversation: Conversation, turn_id: str) -> Conversation:
        """A new conversation that stops just before the turn ``turn_id`` (copies of the turns before
        it, their slots and, where it still fits, their summary), so that turn's question can be asked
        again there; ``conversation`` is left whole."""
        at = next((i for i, t in enumerate(conversation.turns) if t.id == turn_id), None)
        if at is None:
            raise InputError("that answer is not in this conversation any more; reload the page")
        title = f"{conversation.title or 'New conversation'} (branch)"[:120]
        new = self.store.branch(conversation, at, title)
        for turn in new.turns:
            self._update_slots(new, turn.entities)
        self.store.save_state(new)
        return new

    def _update_slots(self, conversation: Conversation, found: list[dict[str, Any]]) -> None:
        for entity in found:
            conversation.slots[entity["kind"]] = entity["value"]

    def _cache_for(self, conversation_id: str) -> PrefixCache:
        with self._lock:
            cache = self._caches.pop(conversation_id, None) or PrefixCache()
            self._caches[conversation_id] = cache
            while len(self._caches) > self._max_cached:
                self._caches.popitem(last=False)
            return cache

    def forget(self, conversation_id: str) -> None:
        """Drop the KV cache of a conversation (after an edit/undo)."""
        with self._lock:
            self._caches.pop(conversation_id, None)

    def _finish(self, conversation: Conversation, turn: Turn, error: str | None) -> TurnFinished:
        if turn.sources and turn.answer and not turn.citations:
            turn.citations = citations.cite(turn.answer, [s.text for s in turn.sources])
            turn.citations_by = "overlap" if turn.citations else ""
        conversation.turns.append(turn)
        self.store.append_turn(conversation, turn)
        return TurnFinished(turn, error)
