"""``assistant models``: list the named models and where they come from."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the named models")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from ..generation.models import DEFAULT_MODEL, MODELS

    for name, spec in MODELS.items():
        installed = importlib.util.find_spec(spec.package) is not None
        mark = "*" if name == DEFAULT_MODEL else " "
        state = "installed" if installed else f"not installed: {spec.install}"
        print(f"{mark} {name:24} {spec.description}  [{state}]")
    print("Also accepted: a Hugging Face id (org/name), a local model folder, a local .gguf file.")
    return 0
