"""The terminal as a script sees it: ``printf 'question\\n' | assistant chat`` writes the answers and
nothing else to stdout; stderr holds one progress line for each slow first-time step and no
library notices; a second start has nothing to report; ``--verbose`` brings the logs back."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chat(home: Path, model_dir: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_HUB_DISABLE"))}
    env.update(ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONWARNINGS="default")
    cmd = [sys.executable, "-m", "assistant.cli.main", *extra, "chat", "--model", str(model_dir),
           "--quantization", "none", "--max-new-tokens", "8"]
    return subprocess.run(cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=600)


def test_piped_chat_prints_answers_only_and_one_line_per_first_time_step(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    first = chat(home, tiny_model_dir, "Which file formats can I upload?\n\nHow do I embed the assistant?\n")
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == 2  # one answer line per message; the blank line asks nothing
    err = first.stderr.splitlines()
    # the index and the intent model are built on this first start, each announced and timed
    assert any(line.startswith("indexing the user guide (once)") and line.endswith("…") for line in err), err
    assert any(line.startswith("indexing the user guide (once): done in") for line in err), err
    assert any(line.startswith("training the intent model") and "done in" in line for line in err), err
    noisy = [line for line in err if "(once)" not in line]
    assert noisy == [], noisy  # no faiss/bm25s/transformers lines, no INFO records
    assert (home / "index" / "manifest.json").is_file()

    again = chat(home, tiny_model_dir, "Which file formats can I upload?\n")
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.splitlines()) == 1
    assert again.stderr == ""  # nothing slow happened the second time

    verbose = chat(home, tiny_model_dir, "Which file formats can I upload?\n", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert len(verbose.stdout.splitlines()) == 1
    assert "INFO assistant.runtime: model" in verbose.stderr
    assert "faiss" in verbose.stderr  # the third-party lines are back


def test_progress_lines_only_where_the_edge_asked_for_them():
    from assistant import progress

    progress.disable()
    with progress.step("packing x (once)") as advance:
        advance(3)  # a library caller: nothing drawn, nothing raised
    assert not progress.enabled()

    out = io.StringIO()  # not a terminal: a start line and an end line, no carriage returns
    progress.enable(out)
    try:
        with progress.step("packing x (once)", total=10) as advance:
            advance(10)
    finally:
        progress.disable()
    lines = out.getvalue().splitlines()
    assert lines[0] == "packing x (once) …"
    assert lines[1].startswith("packing x (once): done in ") and lines[1].endswith(" s")
    assert "\r" not in out.getvalue()

    failing = io.StringIO()  # a step that raises says so, and the error goes on to the caller
    progress.enable(failing)
    try:
        with progress.step("packing y (once)"):
            raise ValueError("truncated file")
    except ValueError:
        pass
    finally:
        progress.disable()
    assert failing.getvalue().splitlines()[1].startswith("packing y (once): failed after ")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    progress.enable(tty)
    try:
        with progress.step("assembling m (once)", total=4, unit="B") as advance:
            for _ in range(4):
                advance(1)
    finally:
        progress.disable()
    assert "assembling m (once)" in tty.getvalue() and "4/4" in tty.getvalue()  # a tqdm bar, completed
