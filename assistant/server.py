"""The HTTP server: FastAPI with the Gradio app mounted at ``/`` and a health
endpoint (the OpenAI-compatible API and the admin area mount here too).

Knows the runtime and the UI builder; holds no logic of its own.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from .runtime import Runtime

log = logging.getLogger(__name__)


def create_app(rt: Runtime) -> Any:
    import gradio as gr

    from app import build_ui

    api = FastAPI(title="offline-assistant")

    @api.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": rt.lm.name, "quantization": rt.lm.quantization, "device": rt.lm.device,
                "index": rt.index is not None, "intents": rt.intents is not None}

    demo = build_ui(rt)
    demo.queue(default_concurrency_limit=2, max_size=rt.config.max_queue)
    return gr.mount_gradio_app(api, demo, path="/")
