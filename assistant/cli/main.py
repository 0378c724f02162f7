"""Entry point of the ``assistant`` console script."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .. import progress
from ..errors import AssistantError
from .quiet import quiet_third_party

# Command modules, in the order ``assistant --help`` lists them.  Each has
# ``register(subparsers)``; a module that is not there yet is skipped.
COMMAND_MODULES = (
    "assistant.cli.chat",
    "assistant.cli.models",
    "assistant.cli.index",
    "assistant.cli.understand",
    "assistant.cli.serve",
    "assistant.cli.finetune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant",
        description="Offline support chat assistant: chat, serve, index documents, understand messages, finetune.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, third-party notices included (default: warnings and errors only, "
                             "and one progress line for each slow first-time step)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    # A server's and a training run's log lines are their report; the other commands print their
    # results themselves and log only what goes wrong.
    level = logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if level < logging.WARNING
        else "%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        quiet_third_party()
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    progress.enable(sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        progress.disable()


if __name__ == "__main__":
    sys.exit(main())
