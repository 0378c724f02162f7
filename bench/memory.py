"""Memory and disk of the real app: a real ``assistant serve`` on the default model, driven through its web
page's Gradio API as a visitor would: a question, then Explain on that answer.  Reports the server
process's resident memory (its kernel-kept peak, VmHWM, and VmRSS now) after start-up, after the turn and
after the Explain, and the bytes under the data folder's ``models/`` (the GGUF and the lean cache).

    python -m bench.memory [--model NAME] [--question TEXT]

Uses the model cache, index and intent model of the app's data folder ($ASSISTANT_HOME or its default),
read only, as ``bench.load`` does; the conversation goes to a temporary database.  Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.load import free_port, prepare, start_server, stop_server


def memory_of(pid: int) -> tuple[float, float]:
    """(peak resident MB since the process started, resident MB now), from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def _text_of(content: Any) -> str:
    """The answer's words from a chat message's content (HTML, possibly in a list of parts)."""
    import html
    import re

    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    first = str(content).split('<div class="answer-actions">')[0]  # the answer, not its actions and sources
    return html.unescape(re.sub(r"<[^>]+>", "", first)).strip()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> str:
    from assistant.config import assistant_home
    from assistant.generation.models import DEFAULT_MODEL
    from bench.common import header, save, table
    from gradio_client import Client

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="default (the registry's default model) or a model name")
    ap.add_argument("--question", default="How do I embed the assistant on my website?")
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="assistant-memory-"))
    rows: list[list[Any]] = []
    try:
        model_args = prepare(home, args.model)
        port = free_port()
        started = time.perf_counter()
        proc = start_server(home, model_args, [f"memory-{uuid.uuid4().hex[:8]}"], 4, args.max_tokens, port)
        rows.append(["started", *memory_of(proc.pid), round(time.perf_counter() - started, 1)])
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            state: dict[str, Any] = {"session": f"memory-{uuid.uuid4().hex[:8]}"}
            t0 = time.perf_counter()
            out = client.predict(args.question, state, api_name="/send")
            state = out[2]
            shown = next((m["content"] for m in reversed(out[1]) if m["role"] == "assistant"), "")
            answer = _text_of(shown)
            rows.append(["after a chat turn", *memory_of(proc.pid), round(time.perf_counter() - t0, 1)])
            t0 = time.perf_counter()
            explained = client.predict("", state, api_name="/explain_turn")
            rows.append(["after Explain of that answer", *memory_of(proc.pid), round(time.perf_counter() - t0, 1)])
            client.close()
        finally:
            stop_server(proc)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    models = assistant_home() / "models"
    own = sum(p.stat().st_size for p in models.rglob("*") if p.is_file()
              and (DEFAULT_MODEL if args.model == "default" else args.model) in str(p.relative_to(models)))
    files = sorted((p for p in models.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)
    disk = [[str(p.relative_to(models)), round(p.stat().st_size / 1e6, 1)] for p in files[:6]]
    text = "\n".join([
        header(f"Memory of `assistant serve` ({args.model} model)"),
        table(["moment", "peak RSS (MB)", "RSS now (MB)", "seconds"], [[m, round(a), round(b), s] for m, a, b, s in rows]),
        "", f"Answer shown: {answer[:160]!r}", f"Explain returned: {str(explained[0])[:120]!r}", "",
        f"Disk under the data folder's models/: {own / 1e9:.2f} GB for this model (packages excluded), "
        f"{folder_bytes(models) / 1e9:.2f} GB with the other models benchmarks put there; largest files:", "", table(["file", "MB"], disk), "",
        "`python -m bench.memory " + " ".join(sys.argv[1:] if argv is None else argv) + "`"])
    print(text)
    save("memory", text)
    return text


if __name__ == "__main__":
    main()
