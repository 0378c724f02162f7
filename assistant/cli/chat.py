"""``assistant chat``: the terminal chat.

On a terminal: streaming answers, multi-line input (end a line with ``\\`` to
continue, or wrap a block in triple quotes), ``/reset``, ``/sources``,
``/explain``, ``/exit``.  When stdin is not a terminal it reads one message
per line and writes each answer on its own line to stdout, so scripts can
drive it: ``printf 'Which file formats can I upload?\\n' | assistant chat``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TextIO

from .options import add_model_options, config_from_args

HELP = "commands: /reset  /sources  /explain  /exit   (end a line with \\ to continue it)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("chat", help="chat in the terminal", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.set_defaults(handler=run)


def read_message(stream: TextIO, interactive: bool) -> str | None:
    """One message: a line, a ``\\``-continued run of lines, or a triple-quoted block."""
    prompt = "you> " if interactive else ""
    if interactive:
        print(prompt, end="", flush=True)
    line = stream.readline()
    if not line:
        return None
    line = line.rstrip("\n")
    if line.strip() == '"""':
        lines = []
        while True:
            nxt = stream.readline()
            if not nxt or nxt.strip() == '"""':
                return "\n".join(lines)
            lines.append(nxt.rstrip("\n"))
    lines = []
    while line.endswith("\\"):
        lines.append(line[:-1])
        if interactive:
            print("...  ", end="", flush=True)
        line = stream.readline().rstrip("\n")
    lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..engine import TokenEvent, TurnFinished
    from ..errors import InputError
    from ..runtime import build_runtime

    config = config_from_args(args)
    rt = build_runtime(config, retrieval=not args.no_retrieval, understanding=not args.no_intents,
                       store_path=":memory:")
    interactive = sys.stdin.isatty()
    out = sys.stdout
    conv = rt.store.create("terminal")
    if interactive:
        print(f"{rt.lm.name} ({rt.lm.quantization}, {rt.lm.device}). {HELP}")
    while True:
        message = read_message(sys.stdin, interactive)
        if message is None:
            break
        cmd = message.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            break
        if cmd == "/reset":
            rt.engine.forget(conv.id)
            conv = rt.store.create("terminal")
            print("(new conversation)", file=out if interactive else sys.stderr)
            continue
        if cmd == "/sources":
            print_sources(conv, out)
            continue
        if cmd == "/explain":
            print_explanation(rt, conv, out)
            continue
        cancel = threading.Event()
        try:
            if interactive:
                print("assistant> ", end="", flush=True)
            streamed = ""
            for event in rt.engine.respond(conv, message, cancel=cancel):
                if isinstance(event, TokenEvent) and interactive:
                    streamed += event.text
                    print(event.text, end="", flush=True)
                elif isinstance(event, TurnFinished):
                    if interactive:
                        print()
                        if event.turn.finish_reason == "filtered" and not streamed.endswith(event.turn.answer):
                            # a check replaced the answer after part of it streamed (the web page redraws it)
                            print(f"  (answer withdrawn) {event.turn.answer}")
                        if event.turn.dropped_turns:
                            print(f"  ({len(event.turn.dropped_turns)} older turns left the model's context)")
                    else:
                        print(event.turn.answer.replace("\n", " "), file=out, flush=True)
                    if event.error:
                        print(f"error: {event.error}", file=sys.stderr)
        except KeyboardInterrupt:
            cancel.set()
            print("\n(stopped)")
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if not interactive:
                print("", file=out, flush=True)  # keep one output line per input line
    return 0


def print_sources(conv, out: TextIO) -> None:
    from ..types import section_path

    if not conv.turns or not conv.turns[-1].sources:
        print("(no sources for the last answer)", file=out)
        return
    for i, s in enumerate(conv.turns[-1].sources, start=1):
        where = section_path(s.title, s.heading) or s.source
        print(f"[{i}] {where}  ({s.source}, score {s.score:.2f})", file=out)


def print_explanation(rt, conv, out: TextIO) -> None:
    if not conv.turns:
        print("(nothing to explain yet)", file=out)
        return
    try:
        from ..explain.explainer import explain, format_table
    except ImportError:
        print("(explanations are not available in this build)", file=out)
        return
    print(format_table(explain(rt.lm, conv.turns[-1])), file=out)
