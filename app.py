"""The Gradio app: wiring only.

Loads the runtime once (model, index, intent model, store), then lays out the
chat.  Every handler is a thin generator over ``Engine.respond``; the browser
keeps only a session id (``gr.BrowserState``); conversations live in SQLite.
Run ``python app.py`` or ``assistant serve``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Iterator

import gradio as gr

from assistant.chatview import conversation_messages, meta_line, turn_messages
from assistant.engine import TokenEvent, TurnFinished, TurnStarted
from assistant.errors import AssistantError
from assistant.runtime import Runtime

log = logging.getLogger("assistant.app")

EXAMPLES = [
    "What can you help me with?",
    "How do I upload my own documents?",
    "What does the Explain button show?",
    "如何把助手嵌入我的网站？",
]


def _session(state: dict | None) -> dict:
    state = dict(state or {})
    if not state.get("session"):
        state["session"] = uuid.uuid4().hex
    return state


def build_ui(rt: Runtime) -> gr.Blocks:
    store, engine = rt.store, rt.engine
    title = rt.config.chat.assistant_name

    def load(state: dict | None):
        state = _session(state)
        conv = store.get(state["conversation"], state["session"]) if state.get("conversation") else None
        if conv is None:
            state.pop("conversation", None)
        return state, conversation_messages(conv), meta_line(conv.turns[-1]) if conv and conv.turns else ""

    def send(message: str, history: list, state: dict | None) -> Iterator[tuple[Any, ...]]:
        state = _session(state)
        conv = store.get(state["conversation"], state["session"]) if state.get("conversation") else None
        if conv is None:
            conv = store.create(state["session"])
            state["conversation"] = conv.id
        prior = conversation_messages(conv)
        cancel = threading.Event()
        text = ""
        try:
            for event in engine.respond(conv, message, cancel=cancel):
                if isinstance(event, TurnStarted):
                    current = event.turn
                    yield "", prior + turn_messages(current, streaming_text=""), state, ""
                elif isinstance(event, TokenEvent):
                    text += event.text
                    yield "", prior + turn_messages(current, streaming_text=text), state, ""
                elif isinstance(event, TurnFinished):
                    if event.error:
                        gr.Warning(f"The model failed: {event.error}. Your message was kept.")
                    yield "", conversation_messages(conv), state, meta_line(event.turn)
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None

    def new_conversation(state: dict | None):
        state = _session(state)
        state.pop("conversation", None)
        return state, [], ""

    with gr.Blocks(title=title) as demo:
        state = gr.BrowserState({}, storage_key="assistant_session")
        gr.Markdown(f"## {title}\n{rt.config.welcome_message}")
        chatbot = gr.Chatbot(height=520, label="Chat", elem_id="chat", sanitize_html=True,
                             placeholder="Ask a question about the documents I know.")
        meta = gr.Markdown("", elem_id="turn-meta")
        with gr.Row():
            box = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=8,
                             elem_id="message", max_lines=8)
            send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            stop_btn = gr.Button("Stop", scale=1, elem_id="stop")
        with gr.Row():
            new_btn = gr.Button("New conversation", size="sm", elem_id="new")
        gr.Examples(EXAMPLES, inputs=box)

        outputs = [box, chatbot, state, meta]
        ev1 = box.submit(send, [box, chatbot, state], outputs)
        ev2 = send_btn.click(send, [box, chatbot, state], outputs)
        stop_btn.click(None, cancels=[ev1, ev2])
        new_btn.click(new_conversation, [state], [state, chatbot, meta])
        demo.load(load, [state], [state, chatbot, meta])
    return demo


def main() -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from assistant.config import AppConfig
    from assistant.runtime import build_runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AppConfig.load()
    rt = build_runtime(config)
    demo = build_ui(rt)
    print(f"Open http://{config.host}:{config.port} in your browser", flush=True)
    demo.queue(default_concurrency_limit=2, max_size=config.max_queue).launch(
        server_name=config.host, server_port=config.port, show_error=False)


if __name__ == "__main__":
    main()
