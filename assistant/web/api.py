"""The OpenAI-compatible HTTP API: ``GET /v1/models`` and ``POST /v1/chat/completions``
(plain JSON and streaming server-sent events), behind API keys with per-key
rate limits.

Mapping onto the engine: the last ``user`` message of ``messages`` is the new
message; earlier user/assistant pairs seed a fresh conversation owned by the
key (a hash of it — keys are never stored or logged).  The answer's sources
ride in an extra top-level field ``sources``, which sentence came from which in ``citations`` (both
also in the final SSE chunk).

Knows the engine, the store and FastAPI; holds no conversation logic itself.
Domain errors become HTTP statuses here and only here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..engine import TokenEvent, TurnFinished, TurnStarted
from ..errors import AssistantError, AuthError, BusyError, InputError
from ..types import Turn
from ..understanding.message import clean_text
from .streaming import stream_in_thread

log = logging.getLogger(__name__)


# -- keys and rate limits ---------------------------------------------------
def key_owner(key: str) -> str:
    """The store owner of conversations made with ``key``: a hash, never the key."""
    return "api:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


class RateLimiter:
    """Sliding one-minute window per key.  ``check`` returns 0 when allowed, else seconds to wait."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key_id, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return 0


class KeyRing:
    """The configured API keys; compares in constant time."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(k for k in keys if k)

    def authenticate(self, authorization: str | None, x_api_key: str | None = None) -> str:
        """Return the key's owner id, or raise ``AuthError``."""
        if not self._keys:
            raise AuthError("the API is disabled: no API keys are configured "
                            "(set ASSISTANT_API_KEYS or api_keys in the config file)")
        given = x_api_key or ""
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        if not given:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        for key in self._keys:
            if hmac.compare_digest(given.encode(), key.encode()):
                return key_owner(key)
        raise AuthError("invalid API key")


# -- request schema -----------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text parts
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass
class Exchange:
    """A request mapped onto the engine: prior pairs and the new message."""

    history: list[tuple[str, str]] = field(default_factory=list)
    message: str = ""


def to_exchange(messages: list[ChatMessage]) -> Exchange:
    """Split OpenAI ``messages`` into prior user/assistant pairs and the last user message.

    System messages are ignored (the server's own system prompt applies).
    """
    if messages[-1].role != "user":
        raise InputError(f"the last message must have role 'user'; got {messages[-1].role!r}")
    ex = Exchange(message=messages[-1].text())
    pending: str | None = None
    for m in messages[:-1]:
        if m.role == "user":
            pending = m.text() if pending is None else pending + "\n" + m.text()
        elif m.role == "assistant":
            ex.history.append((clean_text(pending or ""), clean_text(m.text())))
            pending = None
    if pending:  # consecutive user messages: fold them into the new one
        ex.message = pending + "\n" + ex.message
    return ex


def source_dicts(turn: Turn) -> list[dict[str, Any]]:
    return [{"title": s.title, "heading": s.heading, "source": s.source, "score": round(float(s.score), 4),
             "text": s.text} for s in turn.sources]


def citation_dicts(turn: Turn) -> list[dict[str, Any]]:
    """The answer's ``[n]`` markers: characters ``[start, end)`` of the answer come from ``sources[source - 1]``."""
    return [{"start": a, "end": b, "source": n} for a, b, n in turn.citations if 1 <= n <= len(turn.sources)]


def openai_finish(reason: str) -> str:
    return {"length": "length", "filtered": "content_filter"}.get(reason, "stop")


# -- the router -----------------------------------------------------------------
def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


def create_router(rt: Any, inflight: Any = None) -> APIRouter:
    """The ``/v1`` routes over ``rt.engine`` / ``rt.store`` (``rt`` is a ``Runtime``)."""
    config = rt.config
    keys = KeyRing(tuple(config.api_keys))
    limiter = RateLimiter(config.rate_limit_per_minute)
    slots = threading.BoundedSemaphore(config.max_queue)
    router = APIRouter(prefix="/v1")

    def authorize(request: Request) -> str | JSONResponse:
        try:
            owner = keys.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
        except AuthError as exc:
            return _error(401, str(exc), "invalid_request_error")
        wait = limiter.check(owner)
        if wait:
            log.info("rate limit reached for %s; retry in %ss", owner, wait)
            return _error(429, f"rate limit of {config.rate_limit_per_minute} requests per minute reached; "
                               f"retry in {wait} s", "rate_limit_exceeded", {"Retry-After": str(wait)})
        return owner

    @router.get("/models")
    def models(request: Request) -> Any:
        owner = authorize(request)
        if isinstance(owner, JSONResponse):
            return owner
        return {"object": "list", "data": [
            {"id": rt.lm.name, "object": "model", "created": 0, "owned_by": "offline-assistant"}]}

    @router.post("/chat/completions")
    def chat_completions(body: ChatRequest, request: Request) -> Any:
        owner = authorize(request)
        if isinstance(owner, JSONResponse):
            return owner
        try:
            exchange = to_exchange(body.messages)
            text = rt.engine.validate(exchange.message)
            settings = _settings(rt.engine.generation, body)
        except AssistantError as exc:
            return _error(400, str(exc), "invalid_request_error")
        if not slots.acquire(blocking=False):
            return _error(503, str(BusyError("the server is at capacity; try again shortly")), "server_busy",
                          {"Retry-After": "5"})
        try:
            conv = rt.store.create(owner)
            for user, answer in exchange.history:
                # The client replays earlier messages; one that tries to take the assistant over would
                # reach the model through the history, so its exchange is left out (and listed for the admin).
                if findings := rt.engine.takeover(user):
                    log.warning("api turn: an earlier message of the request tries to take the assistant over "
                                "(%s); left out of the history", "; ".join(findings))
                    rt.store.record_event("takeover", conv.id, {"message": user, "findings": findings,
                                                                "where": "history"})
                    continue
                prior = Turn(user=user, answer=answer, model="client-history")
                conv.turns.append(prior)
                rt.store.append_turn(conv, prior)
        except AssistantError as exc:
            slots.release()
            return _error(500, str(exc), "server_error")
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        log.info("api turn: conversation %s, %d prior pairs, stream=%s", conv.id, len(exchange.history),
                 body.stream)
        cancel = threading.Event()
        events = stream_in_thread(rt.engine.respond(conv, text, settings=settings, cancel=cancel), cancel,
                                  inflight, owner)
        try:  # the turn refuses bad input (a message over the token budget) before its first event
            first = next(events)
        except AssistantError as exc:
            events.close()
            slots.release()
            return _error(400, str(exc), "invalid_request_error")
        events = _prepend(first, events)
        if body.stream:
            return StreamingResponse(_sse(events, cid, created, rt.lm.name, conv.id, slots),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finished = None
        try:
            for event in events:
                if isinstance(event, TurnFinished):
                    finished = event
        finally:
            events.close()
            slots.release()
        assert finished is not None
        if finished.error:
            return _error(500, finished.error, "server_error")
        turn = finished.turn
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": rt.lm.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.answer},
                         "finish_reason": openai_finish(turn.finish_reason)}],
            "usage": {"prompt_tokens": len(turn.prompt_ids), "completion_tokens": len(turn.answer_ids),
                      "total_tokens": len(turn.prompt_ids) + len(turn.answer_ids)},
            "sources": source_dicts(turn), "citations": citation_dicts(turn), "conversation_id": conv.id,
            "intent": turn.intent, "language": turn.language,
        }

    return router


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # type: ignore[attr-defined]


def _settings(base: Any, body: ChatRequest) -> Any:
    changes: dict[str, Any] = {}
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        changes["max_new_tokens"] = limit
    if body.temperature is not None:
        changes["temperature"] = body.temperature
    if body.top_p is not None:
        changes["top_p"] = body.top_p
    if body.seed is not None:
        changes["seed"] = body.seed
    try:
        return replace(base, **changes)  # GenerationConfig rejects bad values with a ConfigError
    except TypeError as exc:
        raise InputError(str(exc)) from None


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
           **extra: Any) -> str:
    data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse(events: Iterator[Any], cid: str, created: int, model: str, conversation_id: str,
         slots: threading.BoundedSemaphore) -> Iterator[str]:
    try:
        for event in events:
            if isinstance(event, TurnStarted):
                yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
            elif isinstance(event, TokenEvent):
                yield _chunk(cid, created, model, {"content": event.text})
            elif isinstance(event, TurnFinished):
                turn = event.turn
                extra: dict[str, Any] = {"sources": source_dicts(turn), "citations": citation_dicts(turn),
                                         "conversation_id": conversation_id}
                if event.error:
                    extra["error"] = {"message": event.error, "type": "server_error"}
                yield _chunk(cid, created, model, {}, openai_finish(turn.finish_reason), **extra)
        yield "data: [DONE]\n\n"
    finally:
        events.close()  # type: ignore[attr-defined]  # a client that left: the turn is cancelled and stored
        slots.release()
