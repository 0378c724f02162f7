"""Load: N concurrent simulated users, each in a multi-turn conversation, half
through the OpenAI-compatible API (httpx) and half through the web page's
Gradio API (``gradio_client``), against a real ``assistant serve`` started here.

    python -m bench.load                      # tiny random model: the mechanism, in about a minute
    python -m bench.load --model default      # the real default model, short answers
    python -m bench.load --users 40 --turns 3 --max-queue 8

Checks, as outcomes: every turn answered; no cross-talk (each user says a unique
token; the conversations stored for that user hold only its own tokens, all of
its turns in order, and no answer shown to it carries another user's token);
then a burst above the queue (``max_queue`` + extra requests at once on each
side) counted as answered / "busy, try again" / other errors.  Prints latency
p50 / p95 per turn and the error count; figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"\bZQ[0-9]{3}[A-Z]{2}\b")


@dataclass
class UserResult:
    """One simulated user: what it said, what it was shown, how long each turn took."""

    name: str
    channel: str  # "api" | "gradio"
    token: str
    latencies: list[float] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: int = 0
    conversation_ids: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


def user_token(i: int) -> str:
    """A token no other user says (and no model would invent): ZQ + 3 digits + 2 letters."""
    return f"ZQ{i:03d}{chr(65 + i % 26)}{chr(65 + (i // 26) % 26)}"


def message(token: str, turn: int) -> str:
    return f"My reference is {token}. Question {turn + 1}: how long do refunds take?"


def is_busy(status: int | None, text: str) -> bool:
    return status == 503 or "queue is full" in text.lower() or "try again" in text.lower()


def api_user(base: str, key: str, result: UserResult, turns: int, max_tokens: int, timeout: float = 600) -> None:
    """A client of the HTTP API: sends the whole history each turn, as OpenAI clients do."""
    import httpx

    history: list[dict[str, str]] = []
    with httpx.Client(base_url=base, timeout=timeout, headers={"Authorization": f"Bearer {key}"}) as client:
        for t in range(turns):
            history.append({"role": "user", "content": message(result.token, t)})
            started = time.perf_counter()
            try:
                r = client.post("/v1/chat/completions", json={"model": "m", "messages": history,
                                                              "max_tokens": max_tokens})
            except httpx.HTTPError as exc:
                result.errors.append(f"turn {t}: {type(exc).__name__}: {exc}")
                return
            if r.status_code != 200:
                if is_busy(r.status_code, r.text):
                    result.busy += 1
                result.errors.append(f"turn {t}: HTTP {r.status_code}: {r.text[:200]}")
                return
            result.latencies.append(time.perf_counter() - started)
            body = r.json()
            answer = body["choices"][0]["message"]["content"]
            result.answers.append(answer)
            result.conversation_ids.append(body["conversation_id"])
            history.append({"role": "assistant", "content": answer})


def gradio_client(base: str, result: UserResult) -> Any:
    from gradio_client import Client

    try:
        return Client(base + "/", verbose=False)
    except Exception as exc:  # connection refused, bad config: counted as this user's error
        result.errors.append(f"connect: {type(exc).__name__}: {exc}")
        return None


def gradio_user(base: str, result: UserResult, turns: int, client: Any = None,
                ready: threading.Barrier | None = None) -> None:
    """A visitor of the web page through its Gradio API; the session id rides in the state.
    ``ready``: wait there after connecting (so a burst starts at one moment)."""
    client = client or gradio_client(base, result)
    if ready is not None:
        ready.wait()
    if client is None:
        return
    state: dict[str, Any] = {"session": f"load-{result.name}-{uuid.uuid4().hex[:8]}"}
    for t in range(turns):
        started = time.perf_counter()
        try:
            out = client.predict(message(result.token, t), state, api_name="/send")
        except Exception as exc:  # gradio_client raises QueueError / AppError; counted, not fatal
            text = f"{type(exc).__name__}: {exc}"
            if is_busy(None, text):
                result.busy += 1
            result.errors.append(f"turn {t}: {text}")
            break
        result.latencies.append(time.perf_counter() - started)
        messages, state = out[1], out[2]
        shown = [m["content"] for m in messages if m["role"] == "assistant"]
        result.answers.append(json.dumps(messages, ensure_ascii=False))
        result.state = state
        if not shown:
            result.errors.append(f"turn {t}: no answer shown")
    if state.get("conversation"):
        result.conversation_ids.append(state["conversation"])
    client.close()


def cross_talk(store: Any, results: list[UserResult], turns: int) -> list[str]:
    """Problems found in the stored conversations and in what each user was shown."""
    from assistant.web.api import key_owner

    problems = []
    for r in results:
        if r.errors:
            continue
        others = {m for a in r.answers for m in TOKEN.findall(a)} - {r.token}
        if others:
            problems.append(f"{r.name} was shown other users' tokens {sorted(others)}")
        if r.channel == "api":
            owner = key_owner(r.state["key"])
            convs = [store.get(cid, owner) for cid, _, _ in store.list(owner)]
            # One stored conversation per request, each seeded with that user's history.
            if len(convs) != turns:
                problems.append(f"{r.name}: {len(convs)} conversations stored for its key, expected {turns}")
            final = store.get(r.conversation_ids[-1], owner)
            said = [t.user for t in final.turns] if final else []
        else:
            convs = [store.get(cid, r.state["session"]) for cid, _, _ in store.list(r.state["session"])]
            if len(convs) != 1:
                problems.append(f"{r.name}: {len(convs)} conversations stored for its session, expected 1")
            said = [t.user for t in convs[0].turns] if convs else []
        if said != [message(r.token, t) for t in range(turns)]:
            problems.append(f"{r.name}: stored turns {said!r} are not its own {turns} messages in order")
        for conv in convs:
            for turn in conv.turns if conv else []:
                found = set(TOKEN.findall(turn.user + " " + turn.answer)) - {r.token}
                if found:
                    problems.append(f"{r.name}: conversation {conv.id} holds other tokens {sorted(found)}")
    return problems


def run_users(base: str, n: int, turns: int, max_tokens: int, keys: list[str], offset: int = 0) -> list[UserResult]:
    """``n`` users at once: even ones on the API (one key each), odd ones on the web page."""
    results, threads = [], []
    for i in range(n):
        channel = "api" if i % 2 == 0 else "gradio"
        r = UserResult(name=f"user{offset + i:03d}", channel=channel, token=user_token(offset + i))
        if channel == "api":
            r.state["key"] = keys[(i // 2) % len(keys)]  # one key per API user while there are enough
            target, args = api_user, (base, r.state["key"], r, turns, max_tokens)
        else:
            target, args = gradio_user, (base, r, turns)
        results.append(r)
        threads.append(threading.Thread(target=target, args=args, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- the server ---------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, model_args: list[str], keys: list[str], max_queue: int, max_tokens: int,
                 port: int) -> subprocess.Popen:
    import httpx

    config = home / "config.yaml"
    config.write_text(f"rate_limit_per_minute: 100000\nmax_queue: {max_queue}\n", encoding="utf-8")
    env = dict(os.environ, ASSISTANT_API_KEYS=",".join(keys), ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "assistant.cli.main", "serve", *model_args, "--config", str(config), "--home",
           str(home), "--host", "127.0.0.1", "--port", str(port), "--max-new-tokens", str(max_tokens)]
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + (home / "server.log").read_text()[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start:\n" + (home / "server.log").read_text()[-3000:])


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def prepare(home: Path, model: str) -> list[str]:
    """Model arguments for ``assistant serve``; the tiny model is written into ``home``."""
    if model == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import tiny_loaded

        lm = tiny_loaded()
        folder = home / "tiny-model"
        lm.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
        return ["--model", str(folder), "--quantization", "none", "--no-retrieval", "--no-intents"]
    # The real model, with the model cache, index and intent model of the app's own data folder
    # ($ASSISTANT_HOME or its default; read only); conversations go to this run's own database.
    from assistant.config import assistant_home

    real_home = assistant_home()
    for part in ("models", "index", "intents"):
        if (real_home / part).exists():
            (home / part).symlink_to(real_home / part)
    return [] if model == "default" else ["--model", model]


def burst(base: str, keys: list[str], size: int, max_tokens: int) -> dict[str, list[UserResult]]:
    """``size`` one-turn requests on each side at the same moment."""
    start = threading.Barrier(2 * size)
    api, web = [], []

    def one(r: UserResult) -> None:
        if r.channel == "api":
            start.wait()
            api_user(base, r.state["key"], r, 1, max_tokens)
        else:
            gradio_user(base, r, 1, ready=start)  # connects first, then joins the queue with the rest

    threads = []
    for i in range(2 * size):
        r = UserResult(name=f"burst{i:03d}", channel="api" if i % 2 == 0 else "gradio", token=user_token(900 + i % 99))
        r.state["key"] = keys[i % len(keys)]
        (api if r.channel == "api" else web).append(r)
        threads.append(threading.Thread(target=one, args=(r,), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"api": api, "gradio": web}


def main(argv: list[str] | None = None) -> str:
    from bench.common import header, percentile, save, table

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny (default), default (the registry's default model) or a model name")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=None, help="answer length (default 16; 24 for real models)")
    p.add_argument("--max-queue", type=int, default=32, help="server max_queue (API slots and Gradio queue)")
    p.add_argument("--burst-extra", type=int, default=12, help="requests above max_queue in the burst, per side")
    p.add_argument("--keep", action="store_true", help="keep the data folder (server log, database)")
    args = p.parse_args(argv)
    max_tokens = args.max_tokens or (16 if args.model == "tiny" else 24)
    keys = [f"load-key-{i:02d}-{uuid.uuid4().hex[:8]}" for i in range(max(1, args.users // 2))]

    home = Path(tempfile.mkdtemp(prefix="assistant-load-"))
    model_args = prepare(home, args.model)
    port = free_port()
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = start_server(home, model_args, keys, args.max_queue, max_tokens, port)
    print(f"server up in {time.perf_counter() - started:.0f} s (model {args.model}); "
          f"{args.users} users x {args.turns} turns", flush=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        results = run_users(base, args.users, args.turns, max_tokens, keys)
        wall = time.perf_counter() - t0
        from assistant.store import Store

        store = Store(home / "assistant.sqlite")
        problems = cross_talk(store, results, args.turns)
        store.close()
        bursts = burst(base, keys, args.max_queue + args.burst_extra, max_tokens * 4)
    finally:
        stop_server(proc)
    load_after = os.getloadavg()

    rows = []
    for channel in ("api", "gradio", "all"):
        rs = [r for r in results if channel in ("all", r.channel)]
        lat = [x for r in rs for x in r.latencies]
        rows.append((channel, len(rs), sum(len(r.latencies) for r in rs), len(rs) * args.turns,
                     sum(1 for r in rs if r.errors), round(percentile(lat, 50), 2), round(percentile(lat, 95), 2)))
    burst_rows = []
    for channel, rs in bursts.items():
        answered = sum(1 for r in rs if r.latencies)
        busy = sum(r.busy for r in rs)
        burst_rows.append((channel, len(rs), answered, busy, len(rs) - answered - busy))
    out = [header(f"Load: {args.users} concurrent users x {args.turns} turns ({args.model} model)"),
           "Command: `" + " ".join(["python -m bench.load", *(sys.argv[1:] if argv is None else argv)]) + "`"
           + f" · max_queue {args.max_queue}, max_tokens {max_tokens}, wall {wall:.0f} s · load average "
           f"{load_before[0]:.2f} before, {load_after[0]:.2f} after\n",
           table(["channel", "users", "turns answered", "turns sent", "users with errors", "p50 s", "p95 s"], rows),
           "", f"Cross-talk problems: {len(problems)}" + "".join(f"\n- {x}" for x in problems[:10]), "",
           f"Burst: {args.max_queue + args.burst_extra} one-turn requests at once on each side "
           f"(max_queue {args.max_queue}; the web page also runs 2 at a time beside its queue):", "",
           table(["channel", "sent", "answered", "busy, try again", "other errors"], burst_rows)]
    errors = [e for r in results for e in r.errors][:5]
    if errors:
        out += ["", "First errors:"] + [f"- {e}" for e in errors]
    text = "\n".join(out)
    print(text)
    save(f"load-{args.model}", text)
    if args.keep:
        print(f"data folder kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return text


if __name__ == "__main__":
    main()
