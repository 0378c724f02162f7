"""The Gradio app: wiring only.

Loads the runtime once (model, index, intent model, store) and serves the
whole server (chat at ``/``, admin area at ``/admin``, OpenAI-compatible API at
``/v1``, ``/health``) — the same thing ``assistant serve`` starts.  The UI
itself is built in ``assistant.web.chat_page``; ``build_ui`` returns just the chat
Blocks (for tests and ``gradio app.py`` reloading).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import gradio as gr

from assistant.runtime import Runtime
from assistant.web.chat_page import build_chat

log = logging.getLogger("assistant.app")


def build_ui(rt: Runtime, inflight: Any = None) -> gr.Blocks:
    """The end-user chat over ``rt``."""
    return build_chat(rt, inflight)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from assistant.cli.main import main as cli_main

    raise SystemExit(cli_main(["serve"]))


if __name__ == "__main__":
    main()
