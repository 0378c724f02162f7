"""The admin area's logic: settings, analytics, the conversation browser and
exports — plain functions over the ``Store`` (and the engine, for applying
settings).  Knows nothing about Gradio or HTTP; ``assistant.web.admin_page`` and
``assistant.web.server`` call these.

Export format (what ``assistant finetune`` reads): chat JSONL, one object a
line, ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``;
rated answers add ``"rating"`` (1 or -1) and ``"reason"``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import InputError
from ..store import Store
from ..types import Conversation, Turn

log = logging.getLogger(__name__)

SETTING_KEYS = ("assistant_name", "welcome_message", "system_prompt", "allowed_origins")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


# -- settings ------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What support teams can change at run time (stored in the database, over the config file)."""

    assistant_name: str
    welcome_message: str
    system_prompt: str
    allowed_origins: tuple[str, ...]
    """Origins (``https://example.com``) allowed to embed the chat; ``*`` allows any."""

    def resolved_system_prompt(self) -> str:
        return self.system_prompt.replace("{name}", self.assistant_name)


def load_settings(store: Store, config: Any) -> Settings:
    """Stored settings over the configuration's defaults."""
    origins = store.get_setting("allowed_origins")
    return Settings(
        assistant_name=store.get_setting("assistant_name") or config.chat.assistant_name,
        welcome_message=store.get_setting("welcome_message") or config.welcome_message,
        system_prompt=store.get_setting("system_prompt") or config.chat.system_prompt,
        allowed_origins=tuple(json.loads(origins)) if origins is not None else
        tuple(o.rstrip("/").lower() for o in config.allowed_origins),
    )


def parse_origins(text: str) -> tuple[str, ...]:
    """Origins separated by commas, spaces or new lines; each ``http(s)://host[:port]`` or ``*``."""
    out: list[str] = []
    for raw in re.split(r"[\s,]+", text or ""):
        origin = raw.strip().rstrip("/").lower()
        if not origin:
            continue
        if origin != "*" and not _ORIGIN.match(origin):
            raise InputError(f"allowed origin {raw!r} must look like https://example.com (scheme and host, "
                             "optional port, no path) or be *")
        if origin not in out:
            out.append(origin)
    return tuple(out)


def save_settings(store: Store, assistant_name: str, welcome_message: str, system_prompt: str,
                  allowed_origins: str | tuple[str, ...]) -> Settings:
    name = (assistant_name or "").strip()
    if not name:
        raise InputError("assistant name is empty: give the assistant a name")
    if len(name) > 80:
        raise InputError(f"assistant name is too long ({len(name)} characters; at most 80)")
    prompt = (system_prompt or "").strip()
    if not prompt:
        raise InputError("system prompt is empty: write at least one sentence")
    origins = parse_origins(allowed_origins) if isinstance(allowed_origins, str) else parse_origins(
        " ".join(allowed_origins))
    settings = Settings(name, (welcome_message or "").strip(), prompt, origins)
    store.set_setting("assistant_name", settings.assistant_name)
    store.set_setting("welcome_message", settings.welcome_message)
    store.set_setting("system_prompt", settings.system_prompt)
    store.set_setting("allowed_origins", json.dumps(list(settings.allowed_origins)))
    return settings


def apply_settings(engine: Any, settings: Settings) -> None:
    """Make the engine use the stored name and system prompt from the next turn on."""
    engine.chat = dataclasses.replace(engine.chat, assistant_name=settings.assistant_name,
                                      system_prompt=settings.system_prompt)


# -- adapter ---------------------------------------------------------------------
NO_ADAPTER = "none (base model)"


def adapter_choices(home: Path, model_name: str, current: Sequence[str] = ()) -> list[str]:
    """Adapters the admin can switch to: none, the shipped one, folders under ``HOME/adapters``
    (where ``assistant finetune --out`` is pointed for the app), and the ones in use."""
    from ..generation.models import shipped_adapters

    found = [*shipped_adapters(model_name), *current]
    folder = Path(home) / "adapters"
    if folder.is_dir():
        found += [str(d) for d in sorted(folder.iterdir()) if (d / "adapter_config.json").is_file()]
    return [NO_ADAPTER, *dict.fromkeys(found)]


def switch_adapter(rt: Any, choice: str) -> str:
    """Load the base model with the chosen adapter and make the engine answer with it from the next
    turn on (until restart; ``ASSISTANT_ADAPTER`` makes it permanent)."""
    from ..generation.models import load_model

    adapters: tuple[str, ...] = () if choice in ("", NO_ADAPTER) else (choice,)
    if adapters and choice not in adapter_choices(rt.config.home, rt.lm.name, rt.lm.adapters):
        raise InputError(f"unknown adapter {choice!r}: pick one from the list")
    if tuple(rt.lm.adapters) == adapters:
        return f"Already answering with {choice or NO_ADAPTER}."
    lm = load_model(dataclasses.replace(rt.config.model, adapters=adapters), home=rt.config.home)
    rt.lm = lm
    rt.engine.use_model(lm)
    log.info("admin switched the adapter to %s", adapters[0] if adapters else "none")
    return f"Answers now come from {lm.name} with {adapters[0] if adapters else 'no adapter'} (until restart)."


# -- conversation browser ----------------------------------------------------------
def parse_date(text: str | None, end: bool = False) -> float | None:
    """``YYYY-MM-DD`` (UTC) → timestamp; the end of that day when ``end``."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise InputError(f"date {text!r} must be written YYYY-MM-DD") from None
    return (day + dt.timedelta(days=1)).timestamp() - 1e-3 if end else day.timestamp()


def parse_rating(text: str | None) -> int | None:
    value = (text or "").strip().lower()
    if value in ("", "any", "all"):
        return None
    if value in ("up", "+1", "1", "👍"):
        return 1
    if value in ("down", "-1", "👎"):
        return -1
    raise InputError(f"rating must be 'up', 'down' or 'any'; got {text!r}")


def search(store: Store, text: str = "", intent: str = "", language: str = "", rating: str = "",
           since: str = "", until: str = "", limit: int = 200) -> list[dict[str, Any]]:
    """Turns matching the filters, newest first, as table rows."""
    rows = store.search_turns(text=text.strip(), intent=intent.strip(), language=language.strip(),
                              rating=parse_rating(rating), since=parse_date(since), until=parse_date(until, True),
                              limit=limit)
    for row in rows:
        row["when"] = _when(row.pop("created_at"))
    return rows


def conversation_html(store: Store, conversation_id: str, image_origins: Sequence[str] = ()) -> str:
    """A read-only transcript of any conversation (admin view), as HTML: answers rendered like the chat
    shows them (``safe_markdown``: images load only from ``image_origins``), everything else as text."""
    from ..safe_markdown import escape_html as esc, render_markdown

    conv = store.get(conversation_id.strip(), owner=None) if conversation_id.strip() else None
    if conv is None:
        return "<p>No such conversation.</p>"
    ratings = {f.turn_id: f for f in store.feedback()}
    out = [f"<h3>{esc(conv.title or conv.id)}</h3>", f"<p><code>{esc(conv.id)}</code> · {len(conv.turns)} turns</p>"]
    for t in conv.turns:
        fb = ratings.get(t.id)
        rated = f" · rated {'👍' if fb.rating > 0 else '👎'} {esc(fb.reason)}" if fb else ""
        out.append(f"<p><strong>User</strong> ({_when(t.created_at)} · {esc(t.language)} · {esc(t.intent)}{rated})"
                   f"</p>\n<p style=\"white-space: pre-wrap\">{esc(t.user)}</p>")
        out.append(f"<p><strong>Assistant</strong> ({len(t.sources)} sources)</p>\n"
                   f"<div class=\"turn-answer\">{render_markdown(t.answer, image_origins)}</div>")
    return "\n".join(out)


def handoffs(store: Store) -> list[dict[str, Any]]:
    return [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
             "message": str(e.data.get("message", ""))} for e in store.events("handoff")]


def takeovers(store: Store) -> list[dict[str, Any]]:
    """Messages declined as attempts to take the assistant over (the engine's ``takeover`` events)."""
    return [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
             "message": str(e.data.get("message", "")), "why": "; ".join(e.data.get("findings", []))}
            for e in store.events("takeover")]


def invented_numbers(store: Store) -> list[dict[str, Any]]:
    """Answers replaced by the "not in my documents" reply because they stated a number no source gives
    (the engine's ``invented_number`` events, ``assistant.grounding``): what was asked, what the model
    would have said, and the numbers.  A fact the documents should hold, or a model making things up."""
    return [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
             "question": str(e.data.get("message", "")), "withheld answer": str(e.data.get("answer", "")),
             "numbers": ", ".join(e.data.get("numbers", []))}
            for e in store.events("invented_number")]


def answer_checks(store: Store) -> list[dict[str, Any]]:
    """Answers an output check changed (``assistant.grounding``): addresses taken out because no source
    names their host (the engine's ``foreign_link`` events: an injected image or link, or one the model
    made up), answers that repeated the user's message back (``echo``: replaced by the "not in my
    documents" reply), answers the sources did not make more likely (``unsupported``: replaced by that
    reply, ``ChatConfig.check_support``), text the user quoted that an answer wrote out although no source
    says it (``dictated``: taken out), and declines the retry adapter answered again (``retried``; support teams
    check those answers first), newest last."""
    rows = [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
             "question": str(e.data.get("message", "")), "check": "address removed",
             "detail": ", ".join(e.data.get("addresses", [])), "at": e.created_at}
            for e in store.events("foreign_link")]
    rows += [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
              "question": str(e.data.get("message", "")), "check": "repeated the message",
              "detail": str(e.data.get("answer", "")), "at": e.created_at}
             for e in store.events("echo")]
    rows += [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
              "question": str(e.data.get("message", "")), "check": "not from the sources, declined",
              "detail": str(e.data.get("answer", "")), "at": e.created_at}
             for e in store.events("unsupported")]
    rows += [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
              "question": str(e.data.get("message", "")), "check": "quoted text taken out",
              "detail": " · ".join(e.data.get("passages", [])), "at": e.created_at}
             for e in store.events("dictated")]
    rows += [{"when": _when(e.created_at), "conversation_id": e.conversation_id or "",
              "question": str(e.data.get("message", "")), "check": "declined, asked the retry adapter",
              "detail": "answered" if e.data.get("answered") else "declined again", "at": e.created_at}
             for e in store.events("retried")]
    rows.sort(key=lambda r: r.pop("at"))
    return rows


def feedback_rows(store: Store) -> list[dict[str, Any]]:
    rows = []
    for fb in store.feedback():
        found = store.find_turn(fb.turn_id)
        turn = found[1] if found else None
        rows.append({"when": _when(fb.created_at), "rating": "👍" if fb.rating > 0 else "👎", "reason": fb.reason,
                     "question": turn.user if turn else "", "answer": turn.answer if turn else "",
                     "turn_id": fb.turn_id})
    return rows


# -- analytics -------------------------------------------------------------------
def intents_over_time(store: Store, limit: int = 5000) -> list[dict[str, Any]]:
    """(day, intent, count) rows."""
    counts = Counter((_day(r["created_at"]), r["intent"]) for r in store.search_turns(limit=limit))
    return [{"day": d, "intent": i, "count": n} for (d, i), n in sorted(counts.items())]


def languages(store: Store, limit: int = 5000) -> list[dict[str, Any]]:
    counts = Counter(r["language"] for r in store.search_turns(limit=limit))
    return [{"language": k, "count": n} for k, n in counts.most_common()]


def ratings(store: Store) -> list[dict[str, Any]]:
    counts = Counter("up" if f.rating > 0 else "down" for f in store.feedback())
    return [{"rating": k, "count": counts.get(k, 0)} for k in ("up", "down")]


def unanswered(store: Store) -> list[dict[str, Any]]:
    """Questions that found no relevant source (the engine's ``no_source`` events)."""
    return [{"when": _when(e.created_at), "question": str(e.data.get("query", "")),
             "conversation_id": e.conversation_id or ""} for e in store.events("no_source")]


def analytics_summary(store: Store) -> dict[str, Any]:
    return {"intents_over_time": intents_over_time(store), "languages": languages(store),
            "ratings": ratings(store), "no_source": unanswered(store), "handoffs": len(store.events("handoff")),
            "takeovers": len(store.events("takeover")), "invented_numbers": len(store.events("invented_number"))}


# -- export ------------------------------------------------------------------------
def _usable(turn: Turn) -> bool:
    # cancelled, failed and withheld (output guard) answers are not the model's answer to learn from
    return bool(turn.user.strip() and turn.answer.strip()) and turn.finish_reason not in ("cancelled", "error",
                                                                                           "filtered")


def conversation_record(conv: Conversation, system_prompt: str = "") -> dict[str, Any] | None:
    messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in conv.turns:
        if _usable(turn):
            messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.answer}]
    return {"messages": messages} if any(m["role"] == "assistant" for m in messages) else None


def export_jsonl(store: Store, rated_only: bool = False, system_prompt: str = "") -> Iterator[str]:
    """Chat JSONL lines: every conversation, or (``rated_only``) every rated answer with its history."""
    if not rated_only:
        for conv in store.conversations_for_export():
            record = conversation_record(conv, system_prompt)
            if record:
                yield json.dumps(record, ensure_ascii=False)
        return
    rated = {f.turn_id: f for f in store.feedback()}
    for conv in store.conversations_for_export():
        history: list[dict[str, str]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for turn in conv.turns:
            if not _usable(turn):
                continue
            pair = [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.answer}]
            fb = rated.get(turn.id)
            if fb is not None:
                yield json.dumps({"messages": history + pair, "rating": fb.rating, "reason": fb.reason},
                                 ensure_ascii=False)
            history = history + pair


# -- documents (through the retrieval index) -------------------------------------------
def document_rows(index: Any) -> list[dict[str, Any]]:
    if index is None:
        return []
    return [{"doc_id": d.doc_id, "title": d.title, "source": d.source, "kind": d.kind, "chunks": d.chunks,
             "languages": ", ".join(d.languages), "added": d.added_at,
             "flagged": (f"{d.flagged} allowed" if d.allowed else f"{d.flagged} held") if d.flagged else ""}
            for d in index.documents()]


def flagged_rows(index: Any) -> list[dict[str, Any]]:
    """Passages screening flagged (``retrieval.screening``), for an administrator to judge."""
    if index is None:
        return []
    return [{"doc_id": p.doc_id, "source": p.source, "passage": p.position + 1,
             "state": "allowed" if p.allowed else "held out of answers", "why": "; ".join(p.flags),
             "text": p.text if len(p.text) <= 600 else p.text[:599] + "…"} for p in index.flagged()]


def allow_document(index: Any, doc: str, allowed: bool = True) -> str:
    """Let a document's flagged passages into answers, or hold them again; saves the index."""
    index = _require(index)
    if not (doc or "").strip():
        raise InputError("document is empty: give a document id or source from the flagged list")
    info = index.allow(doc.strip(), allowed=allowed)
    index.save()
    name = info.title or info.source
    if not info.flagged:
        return f"**{name}** has no flagged passage; nothing changed."
    if allowed:
        return f"**{name}**: its {info.flagged} flagged passage(s) are used in answers again."
    return f"**{name}**: its {info.flagged} flagged passage(s) are held out of answers."


def _require(index: Any) -> Any:
    if index is None:
        raise InputError("retrieval is off on this server (started with --no-retrieval): there is no index")
    return index


def upload_documents(index: Any, files: list[tuple[str, bytes]],
                     progress: Callable[[float, str], None] | None = None) -> str:
    """Ingest uploaded files one by one and save the index; returns a short report (Markdown)."""
    index = _require(index)
    lines, added = [], 0
    for i, (name, data) in enumerate(files):
        if progress:
            progress(i / max(1, len(files)), f"indexing {name}")
        try:
            report = index.add_upload(name, data)
        except InputError as exc:
            lines.append(f"- ❌ {name}: {exc}")
            continue
        state = "added" if report.added else "updated" if report.updated else "unchanged"
        added += report.chunks_added
        held = sum(report.flagged.values())
        if held:
            lines.append(f"- ⚠️ {name}: {state}, {report.chunks_added} chunks; {held} passage(s) read like "
                         f"instructions to the assistant or hidden text, held out of answers (see Flagged passages)")
        else:
            lines.append(f"- ✅ {name}: {state}, {report.chunks_added} chunks")
    if progress:
        progress(1.0, "saving the index")
    index.save()
    return f"**{len(files)} file(s), {added} new chunks.**\n" + "\n".join(lines)


def remove_document(index: Any, doc: str) -> str:
    index = _require(index)
    if not (doc or "").strip():
        raise InputError("document is empty: give a document id or source from the list")
    try:
        info = index.remove(doc.strip())
    except KeyError as exc:
        raise InputError(f"no document {doc!r} in the index") from exc
    index.save()
    return f"Removed **{info.title or info.source}** ({info.chunks} chunks)."


def rebuild_index(index: Any) -> str:
    """Re-read every document that still exists on disk (changed ones are re-chunked), then save."""
    from pathlib import Path

    index = _require(index)
    paths = [d.source for d in index.documents() if not d.source.startswith("upload:") and Path(d.source).is_file()]
    report = index.add_paths(paths) if paths else None
    index.save()
    if report is None:
        return f"Index saved ({len(index.documents())} documents; no files on disk to re-read)."
    return (f"Index rebuilt: {len(report.updated)} changed, {len(report.unchanged)} unchanged, "
            f"{len(report.errors)} unreadable; {len(index.documents())} documents.")


# -- embedding -----------------------------------------------------------------------
def embed_snippet(base_url: str) -> str:
    """HTML to paste into a web page: the Gradio web component, or an iframe."""
    base = base_url.rstrip("/")
    return (
        "<!-- Option 1: Gradio web component -->\n"
        f'<script type="module" src="{base}/gradio.js"></script>\n'
        f'<gradio-app src="{base}/"></gradio-app>\n\n'
        "<!-- Option 2: iframe -->\n"
        f'<iframe src="{base}/" style="width:100%;height:720px;border:0" title="Support chat"></iframe>\n'
    )


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")
