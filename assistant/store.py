"""Persistence of conversations, turns, feedback and events in SQLite.

Every finished turn is committed before the answer is reported complete
(WAL journal, ``synchronous=FULL``), so a killed server loses no finished turn.
Reads are scoped by owner: a session only ever sees its own conversations.
Knows nothing about models or the UI.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError, StoreError
from .types import Conversation, Turn

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    slots TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '',
    summarized TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_owner ON conversations(owner, updated_at);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    created_at REAL NOT NULL,
    user_text TEXT NOT NULL,
    answer TEXT NOT NULL,
    language TEXT NOT NULL,
    intent TEXT NOT NULL,
    route TEXT NOT NULL,
    n_sources INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_conversation ON turns(conversation_id, position);
CREATE TABLE IF NOT EXISTS feedback (
    turn_id TEXT PRIMARY KEY REFERENCES turns(id) ON DELETE CASCADE,
    rating INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    conversation_id TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass
class Feedback:
    turn_id: str
    rating: int
    reason: str
    created_at: float


@dataclass
class Event:
    id: str
    conversation_id: str | None
    kind: str
    data: dict[str, Any]
    created_at: float


class Store:
    """SQLite store; thread-safe (one connection guarded by a lock)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"conversation database {self.path} is unreadable ({exc}); move it aside and restart "
                "to start a new one (the old file is kept for recovery)"
            ) from exc

    # -- conversations -------------------------------------------------
    def create(self, owner: str, title: str = "") -> Conversation:
        conv = Conversation(owner=owner, title=title)
        with self._tx() as db:
            db.execute(
                "INSERT INTO conversations(id, owner, title, created_at, updated_at) VALUES (?,?,?,?,?)",
                (conv.id, owner, title, conv.created_at, conv.created_at),
            )
        return conv

    def get(self, conversation_id: str, owner: str | None) -> Conversation | None:
        """The conversation if it exists and (unless ``owner`` is None, admin) belongs to ``owner``."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, owner, title, slots, summary, summarized, created_at FROM conversations WHERE id=?",
                (conversation_id,),
            ).fetchone()
            if row is None or (owner is not None and row[1] != owner):
                return None
            turns = [
                Turn.from_dict(json.loads(r[0]))
                for r in self._db.execute(
                    "SELECT data FROM turns WHERE conversation_id=? ORDER BY position", (conversation_id,)
                )
            ]
        return Conversation(
            id=row[0], owner=row[1], title=row[2], slots=json.loads(row[3]), summary=row[4],
            summarized_turns=json.loads(row[5]), created_at=row[6], turns=turns,
        )

    def list(self, owner: str, limit: int = 50) -> list[tuple[str, str, float]]:
        """(id, title, updated_at) of the owner's conversations, newest first."""
        with self._lock:
            return [
                (r[0], r[1], r[2])
                for r in self._db.execute(
                    "SELECT id, title, updated_at FROM conversations WHERE owner=? ORDER BY updated_at DESC LIMIT ?",
                    (owner, limit),
                )
            ]

    def rename(self, conversation_id: str, owner: str, title: str) -> bool:
        """Give the owner's conversation a title (its place in the list, by last activity, stays)."""
        title = " ".join((title or "").split())[:120]
        if not title:
            raise InputError("a conversation's title cannot be empty")
        with self._tx() as db:
            cur = db.execute("UPDATE conversations SET title=? WHERE id=? AND owner=?", (title, conversation_id, owner))
            return cur.rowcount > 0

    def delete(self, conversation_id: str, owner: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM conversations WHERE id=? AND owner=?", (conversation_id, owner))
            return cur.rowcount > 0

    def save_state(self, conv: Conversation) -> None:
        """Persist title, slots and summary (turns are appended separately)."""
        with self._tx() as db:
            db.execute(
                # a title already stored (the first message's, or the user's rename) is kept
                "UPDATE conversations SET title=CASE WHEN title='' THEN ? ELSE title END, slots=?, summary=?,"
                " summarized=?, updated_at=? WHERE id=?",
                (conv.title, json.dumps(conv.slots), conv.summary, json.dumps(conv.summarized_turns),
                 time.time(), conv.id),
            )

    # -- turns ---------------------------------------------------------
    def append_turn(self, conv: Conversation, turn: Turn) -> None:
        """Commit a finished turn (and the conversation's state) durably."""
        if not conv.title:
            conv.title = turn.user.strip().splitlines()[0][:60] if turn.user.strip() else "New conversation"
        with self._tx() as db:
            position = db.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM turns WHERE conversation_id=?", (conv.id,)
            ).fetchone()[0]
            db.execute(
                "INSERT OR REPLACE INTO turns(id, conversation_id, position, created_at, user_text, answer, language,"
                " intent, route, n_sources, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (turn.id, conv.id, position, turn.created_at, turn.user, turn.answer, turn.language, turn.intent,
                 turn.route, len(turn.sources), json.dumps(turn.to_dict())),
            )
            db.execute(
                # a title already stored (the first message's, or the user's rename) is kept
                "UPDATE conversations SET title=CASE WHEN title='' THEN ? ELSE title END, slots=?, summary=?,"
                " summarized=?, updated_at=? WHERE id=?",
                (conv.title, json.dumps(conv.slots), conv.summary, json.dumps(conv.summarized_turns),
                 time.time(), conv.id),
            )

    def update_turn(self, conversation_id: str, turn: Turn) -> None:
        """Store what was learnt about a finished turn later (Explain's citations) in its place."""
        with self._tx() as db:
            db.execute("UPDATE turns SET data=? WHERE id=? AND conversation_id=?",
                       (json.dumps(turn.to_dict()), turn.id, conversation_id))

    def branch(self, conv: Conversation, turns: int, title: str = "") -> Conversation:
        """A new conversation of the same owner holding copies (new ids) of ``conv``'s first ``turns``
        turns, titled ``title``; ``conv`` stays as it is.  Its running summary comes along when every turn
        it stands for is copied; its slots are left to the caller (``Engine.branch``)."""
        if not 0 <= turns <= len(conv.turns):
            raise InputError(f"a branch keeps 0 to {len(conv.turns)} turns; got {turns}")
        new = self.create(conv.owner, title or conv.title)
        ids: dict[str, str] = {}
        for turn in conv.turns[:turns]:
            copy = replace(turn, id=uuid.uuid4().hex[:16], dropped_turns=[ids.get(t, t) for t in turn.dropped_turns])
            ids[turn.id] = copy.id
            new.turns.append(copy)
            self.append_turn(new, copy)
        if conv.summarized_turns and all(t in ids for t in conv.summarized_turns):
            new.summary, new.summarized_turns = conv.summary, [ids[t] for t in conv.summarized_turns]
            self.save_state(new)
        return new

    def remove_last_turn(self, conv: Conversation) -> Turn | None:
        """Undo: delete the newest turn of the conversation."""
        if not conv.turns:
            return None
        turn = conv.turns.pop()
        with self._tx() as db:
            db.execute("DELETE FROM turns WHERE id=? AND conversation_id=?", (turn.id, conv.id))
        return turn

    def find_turn(self, turn_id: str) -> tuple[str, Turn] | None:
        """(owner, turn) for a turn id."""
        with self._lock:
            row = self._db.execute(
                "SELECT c.owner, t.data FROM turns t JOIN conversations c ON c.id=t.conversation_id WHERE t.id=?",
                (turn_id,),
            ).fetchone()
        return (row[0], Turn.from_dict(json.loads(row[1]))) if row else None

    # -- feedback and events -------------------------------------------
    def set_feedback(self, turn_id: str, rating: int, reason: str = "", owner: str | None = None) -> None:
        if rating not in (-1, 1):
            raise StoreError(f"rating must be 1 (thumbs up) or -1 (thumbs down); got {rating!r}")
        found = self.find_turn(turn_id)
        if found is None or (owner is not None and found[0] != owner):
            raise StoreError(f"no turn {turn_id!r} in your conversations")
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO feedback(turn_id, rating, reason, created_at) VALUES (?,?,?,?)",
                (turn_id, rating, reason[:2000], time.time()),
            )

    def feedback(self) -> list[Feedback]:
        with self._lock:
            return [Feedback(*r) for r in self._db.execute(
                "SELECT turn_id, rating, reason, created_at FROM feedback ORDER BY created_at DESC")]

    def record_event(self, kind: str, conversation_id: str | None, data: dict[str, Any] | None = None) -> Event:
        event = Event(uuid.uuid4().hex, conversation_id, kind, data or {}, time.time())
        with self._tx() as db:
            db.execute(
                "INSERT INTO events(id, conversation_id, kind, data, created_at) VALUES (?,?,?,?,?)",
                (event.id, conversation_id, kind, json.dumps(event.data), event.created_at),
            )
        return event

    def events(self, kind: str | None = None) -> list[Event]:
        query = "SELECT id, conversation_id, kind, data, created_at FROM events"
        args: tuple = ()
        if kind:
            query += " WHERE kind=?"
            args = (kind,)
        with self._lock:
            return [Event(r[0], r[1], r[2], json.loads(r[3]), r[4])
                    for r in self._db.execute(query + " ORDER BY created_at DESC", args)]

    # -- admin queries -------------------------------------------------
    def search_turns(self, text: str = "", intent: str = "", language: str = "", rating: int | None = None,
                     since: float | None = None, until: float | None = None, limit: int = 200) -> list[dict[str, Any]]:
        query = (
            "SELECT t.id, t.conversation_id, t.created_at, t.user_text, t.answer, t.language, t.intent, t.route,"
            " t.n_sources, f.rating, f.reason FROM turns t LEFT JOIN feedback f ON f.turn_id=t.id WHERE 1=1"
        )
        args: list[Any] = []
        if text:
            query += " AND (t.user_text LIKE ? OR t.answer LIKE ?)"
            args += [f"%{text}%", f"%{text}%"]
        if intent:
            query += " AND t.intent=?"
            args.append(intent)
        if language:
            query += " AND t.language=?"
            args.append(language)
        if rating is not None:
            query += " AND f.rating=?"
            args.append(rating)
        if since is not None:
            query += " AND t.created_at>=?"
            args.append(since)
        if until is not None:
            query += " AND t.created_at<=?"
            args.append(until)
        query += " ORDER BY t.created_at DESC LIMIT ?"
        args.append(limit)
        cols = ["turn_id", "conversation_id", "created_at", "user", "answer", "language", "intent", "route",
                "n_sources", "rating", "reason"]
        with self._lock:
            return [dict(zip(cols, r)) for r in self._db.execute(query, args)]

    def conversations_for_export(self, rated_only: bool = False) -> Iterator[Conversation]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM conversations ORDER BY created_at")]
        for cid in ids:
            conv = self.get(cid, owner=None)
            if conv and conv.turns:
                yield conv

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?,?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- helpers -------------------------------------------------------
    class _Tx:
        def __init__(self, store: "Store") -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()

    def _tx(self) -> "Store._Tx":
        return Store._Tx(self)
