"""The end-user chat: streaming answers, stop, regenerate (any answer), edit / undo, new
conversation, a list of one's own conversations, example prompts, sources,
thumbs with a reason, and the Explain panel.

Every handler is a thin generator or function over ``Engine.respond`` and the
``Store``.  The browser keeps only a session id (``gr.BrowserState``); which
conversation is open rides along with it, so a reload (or a server restart)
shows the same conversation.  A session only ever reads its own conversations
(``Store.get(conv_id, owner=session)``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Iterator

import gradio as gr

from . import admin
from ..explain import citations
from .. import scope
from .chatview import conversation_messages, edited_text, message_roles, message_turn_ids, turn_messages
from ..engine import TokenEvent, TurnFinished, TurnStarted
from ..errors import AssistantError
from ..safe_markdown import escape_html, literal_markdown
from .streaming import InFlight, stream_in_thread
from ..types import Conversation

log = logging.getLogger(__name__)

EXAMPLES = list(scope.GUIDE_EXAMPLES)  # while the shipped guide is what is loaded (scope.example_prompts)

CSS = """
#chat .turn-meta { font-size: 0.8em; opacity: 0.7; margin: 0.2em 0 0.5em; }
#chat .answer-actions { display: flex; gap: 0.4em; margin: 0.4em 0 0.2em; }
#chat .answer-action { font-size: 0.8em; padding: 0.1em 0.6em; border: 1px solid var(--border-color-primary);
  border-radius: 6px; background: transparent; color: inherit; cursor: pointer; }
#chat .turn-details summary { cursor: pointer; font-size: 0.85em; }
#chat sup.cite a { text-decoration: none; font-size: 0.8em; padding: 0 0.1em; }
#chat .passage.flash { background: rgba(255, 200, 0, 0.35); }
#chat .passage { transition: background 1.5s; border-radius: 4px; }
#context-note { font-size: 0.85em; color: #b45309; }
#chat [data-testid='bot'] { white-space: normal; }
#chat [data-testid='bot'] p { margin: 0.4em 0; }
#chat [data-testid='bot'] :is(ul, ol) { padding-left: 1.6em; margin: 0.4em 0; }
#chat [data-testid='bot'] pre { white-space: pre; overflow-x: auto; padding: 0.5em 0.75em; }
#chat [data-testid='bot'] img { width: auto; height: auto; max-width: 100%; max-height: 300px; }
#chat .blocked-image { font-size: 0.9em; overflow-wrap: anywhere; }
"""


# Run once when the page loads.  Gradio's sidebar opens at every width; on a phone (and in the
# embedded widget on one) it would cover the chat, so there it starts closed and closes again after
# a conversation is picked or started.  The answers' own controls (chatview): a [n] marker opens
# the answer's sources at passage n; Copy copies the answer's text without its markers; Regenerate
# and Explain hand the answer's turn id to the hidden #regenerate-target / #explain-target box,
# whose change event answers again / runs Explain.
JS = """
() => {
  document.addEventListener('click', (e) => {
    const cite = e.target.closest('#chat a.cite-link');
    if (cite) {
      e.preventDefault();
      const details = document.getElementById('details-' + cite.dataset.turn);
      const passage = document.getElementById('cite-' + cite.dataset.turn + '-' + cite.dataset.n);
      if (details) details.open = true;
      if (passage) {
        passage.scrollIntoView({block: 'nearest', behavior: 'smooth'});
        passage.classList.add('flash');
        setTimeout(() => passage.classList.remove('flash'), 1500);
      }
      return;
    }
    const copy = e.target.closest('#chat button.copy-answer');
    if (copy) {
      const answer = document.querySelector('#chat .answer[data-turn="' + copy.dataset.turn + '"]');
      if (!answer) return;
      const clone = answer.cloneNode(true);
      clone.querySelectorAll('sup.cite').forEach((n) => n.remove());
      const text = clone.innerText.trim();
      const done = (ok) => {
        copy.textContent = ok ? 'Copied' : 'Copy failed';
        setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
      };
      const fallback = () => {  // no clipboard API outside https and localhost
        const area = document.createElement('textarea');
        area.value = text;
        area.style.position = 'fixed';
        area.style.left = '-9999px';
        document.body.appendChild(area);
        area.select();
        let ok = false;
        try { ok = document.execCommand('copy'); } catch (err) { ok = false; }
        area.remove();
        done(ok);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(() => done(true), fallback);
      } else {
        fallback();
      }
      return;
    }
    const handOver = (target, button) => {  // the turn id to a hidden box, whose change event acts on it
      const box = document.querySelector('#' + target + ' textarea, #' + target + ' input');
      if (!box) return;
      box.value = button.dataset.turn + ' ' + Date.now();  // a new value each time: a change event
      box.dispatchEvent(new Event('input', {bubbles: true}));
    };
    const again = e.target.closest('#chat button.regenerate-turn');
    if (again) {
      handOver('regenerate-target', again);
      return;
    }
    const explain = e.target.closest('#chat button.explain-turn');
    if (explain) {
      handOver('explain-target', explain);
      document.getElementById('explain-panel')?.scrollIntoView({block: 'start', behavior: 'smooth'});
    }
  });
  const narrow = () => window.matchMedia('(max-width: 768px)').matches;
  const closeSidebar = () => {
    const bar = document.querySelector('#sidebar');
    if (bar && bar.classList.contains('open')) bar.querySelector('.toggle-button')?.click();
  };
  const setUp = () => {
    const bar = document.querySelector('#sidebar');
    if (!bar) return false;
    if (narrow()) closeSidebar();
    bar.addEventListener('click', (e) => {
      if (narrow() && e.target.closest('#conversations label, #new, #confirm-delete-yes')) setTimeout(closeSidebar, 50);
    });
    return true;
  };
  if (!setUp()) {
    const timer = setInterval(() => { if (setUp()) clearInterval(timer); }, 100);
    setTimeout(() => clearInterval(timer), 15000);
  }
}
"""


def session_state(state: dict | None) -> dict:
    """The browser's state with a session id (created on first use)."""
    state = dict(state or {})
    if not state.get("session"):
        state["session"] = uuid.uuid4().hex
    return state


def header_markdown(settings: admin.Settings, index: Any = None) -> str:
    """The page's title and welcome message (set by the admin: Markdown, but no HTML), its ``{topics}`` the
    titles of the documents loaded, shown literally."""
    welcome = scope.fill(escape_html(settings.welcome_message), index, escape=literal_markdown)
    return f"## {escape_html(settings.assistant_name)}\n{welcome}"


def conversation_label(title: str, updated_at: float, now: float | None = None) -> str:
    """A conversation in the sidebar: its title and when it last changed (the time today, else the date)."""
    now = time.time() if now is None else now
    when = time.localtime(updated_at)
    same_day = time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d", time.localtime(now))
    stamp = time.strftime("%H:%M", when) if same_day else time.strftime("%d %b %Y", when).lstrip("0")
    return f"{title or 'New conversation'} · {stamp}"


def context_note(conv: Conversation | None) -> str:
    """A visible note when older messages no longer fit the model's context."""
    if not conv or not conv.turns or not conv.turns[-1].dropped_turns:
        return ""
    n = len(conv.turns[-1].dropped_turns)
    note = f"⚠️ {n} older exchange{'s' if n != 1 else ''} of this conversation no longer fit the model's context"
    if not conv.summary:
        return note + "; the assistant does not see them any more."
    lines = "<br>".join(literal_markdown(line) for line in conv.summary.splitlines())  # the model wrote it
    return (note + "; the assistant keeps a short summary of them instead.\n\n"
            f"<details id=\"context-summary\"><summary>Show the summary</summary>\n\n{lines}\n\n</details>")


def build_chat(rt: Any, inflight: Any = None) -> gr.Blocks:
    """The chat page over ``rt`` (a ``Runtime``: ``.engine``, ``.store``, ``.lm``, ``.config``)."""
    store, engine = rt.store, rt.engine
    origins = rt.config.allowed_image_origins  # images in answers load from these only
    inflight = inflight if inflight is not None else InFlight()

    def open_conversation(state: dict) -> Conversation | None:
        cid = state.get("conversation")
        conv = store.get(cid, state["session"]) if cid else None
        if conv is None:
            state.pop("conversation", None)
        return conv

    def conv_choices(state: dict) -> Any:
        items = [(conversation_label(title, updated), cid) for cid, title, updated in store.list(state["session"])]
        return gr.update(choices=items, value=state.get("conversation"))

    def view(state: dict, conv: Conversation | None, box: str = "") -> tuple[Any, ...]:
        return box, conversation_messages(conv, origins), state, context_note(conv), conv_choices(state)

    # -- handlers ------------------------------------------------------
    def load(state: dict | None):
        state = session_state(state)
        conv = open_conversation(state)
        settings = admin.load_settings(store, rt.config)
        # Leave the message box alone: the user may already be typing.
        return (gr.update(), *view(state, conv)[1:], header_markdown(settings, getattr(engine, "index", None)))

    def run_turn(state: dict, conv: Conversation, message: str) -> Iterator[tuple[Any, ...]]:
        prior = conversation_messages(conv, origins)
        cancel = threading.Event()
        text, current = "", None
        events = stream_in_thread(engine.respond(conv, message, cancel=cancel), cancel, inflight, state["session"])
        try:
            for event in events:
                if isinstance(event, TurnStarted):
                    current = event.turn
                    yield "", prior + turn_messages(current, "", origins), state, gr.update(), gr.update()
                elif isinstance(event, TokenEvent):
                    text += event.text
                    yield "", prior + turn_messages(current, text, origins), state, gr.update(), gr.update()
                elif isinstance(event, TurnFinished):
                    if event.error:
                        log.warning("turn %s failed: %s", event.turn.id, event.error)
                        gr.Warning(f"The model failed: {event.error}. Your message was kept.")
                    yield view(state, conv)
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        finally:
            events.close()

    def send(message: str, state: dict | None) -> Iterator[tuple[Any, ...]]:
        state = session_state(state)
        try:
            engine.validate(message)
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        conv = open_conversation(state)
        if conv is None:
            conv = store.create(state["session"])
            state["conversation"] = conv.id
        yield from run_turn(state, conv, message)

    def stop(state: dict | None) -> None:
        state = session_state(state)
        inflight.stop(state["session"])

    def regenerate(target: str, state: dict | None) -> Iterator[tuple[Any, ...]]:
        """Answer a turn's question again (``target``: "<turn id> <click time>"): the last answer in its
        place; an earlier one in a new conversation that stops before it (``Engine.branch``), which the
        sidebar then shows open; the conversation it came from keeps every turn."""
        state = session_state(state)
        conv = open_conversation(state)
        turn_id = (target or "").split(" ")[0]
        turn = next((t for t in conv.turns if t.id == turn_id), None) if conv else None
        if turn is None:
            gr.Warning("That answer is no longer in the open conversation.")
            yield view(state, conv)
            return
        if turn is conv.turns[-1]:
            store.remove_last_turn(conv)
            engine.forget(conv.id)
        else:
            conv = engine.branch(conv, turn.id)
            state["conversation"] = conv.id
        yield from run_turn(state, conv, turn.user)

    def undo(state: dict | None):
        state = session_state(state)
        conv = open_conversation(state)
        if conv is None or not conv.turns:
            return view(state, conv)
        last = store.remove_last_turn(conv)
        engine.forget(conv.id)
        return view(state, conv, box=last.user)

    def edit(state: dict | None, data: gr.EditData) -> Iterator[tuple[Any, ...]]:
        state = session_state(state)
        conv = open_conversation(state)
        index = data.index if isinstance(data.index, int) else data.index[0]
        ids = message_turn_ids(conv)
        if conv is None or not 0 <= index < len(ids) or message_roles(conv)[index] != "user":
            yield view(state, conv)
            return
        target = ids[index]
        while conv.turns:  # drop the edited turn and everything after it
            if store.remove_last_turn(conv).id == target:
                break
        engine.forget(conv.id)
        new_text = edited_text(data.value if isinstance(data.value, str) else str(data.value))
        yield from run_turn(state, conv, new_text)

    def new_conversation(state: dict | None):
        state = session_state(state)
        state.pop("conversation", None)
        return view(state, None)

    def switch(conv_id: str | None, state: dict | None):
        state = session_state(state)
        state["conversation"] = conv_id
        return view(state, open_conversation(state))

    def rename(title: str, state: dict | None):
        state = session_state(state)
        conv = open_conversation(state)
        if conv is None:
            raise gr.Error("Open a conversation first: there is nothing to rename yet.")
        try:
            store.rename(conv.id, state["session"], title)
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        return "", conv_choices(state)

    def ask_delete(state: dict | None):
        state = session_state(state)
        conv = open_conversation(state)
        if conv is None:
            raise gr.Error("Open a conversation first: there is nothing to delete.")
        name = literal_markdown(conv.title or "New conversation")
        return gr.update(visible=True), f"Delete **{name}** and its messages? This cannot be undone."

    def delete(state: dict | None):
        state = session_state(state)
        conv = open_conversation(state)
        if conv is not None:
            engine.forget(conv.id)
            store.delete(conv.id, state["session"])
        state.pop("conversation", None)
        return (*view(state, None), gr.update(visible=False))

    def like(state: dict | None, tab: dict | None, data: gr.LikeData):
        state, tab = session_state(state), dict(tab or {})
        conv = open_conversation(state)
        index = data.index if isinstance(data.index, int) else data.index[0]
        ids = message_turn_ids(conv)
        if not 0 <= index < len(ids):
            return tab, gr.update(visible=False)
        rating = 1 if data.liked is True or data.liked == "Like" else -1
        try:
            store.set_feedback(ids[index], rating, "", owner=state["session"])
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        tab.update(rated_turn=ids[index], rating=rating)
        if rating > 0:
            gr.Info("Thanks for the feedback!")
            return tab, gr.update(visible=False)
        # after a thumbs-down, ask what was wrong (the box goes away once sent)
        gr.Info("Thanks for the feedback! What was wrong? You can say below.")
        return tab, gr.update(visible=True)

    def save_reason(reason: str, state: dict | None, tab: dict | None):
        state, tab = session_state(state), dict(tab or {})
        if not tab.get("rated_turn"):
            return "", gr.update(visible=False)
        try:
            store.set_feedback(tab["rated_turn"], tab["rating"], reason.strip(), owner=state["session"])
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info("Reason saved.")
        return "", gr.update(visible=False)

    def explain_turn(turn_id: str, state: dict | None):
        """Explain the answer whose Explain action was clicked (``turn_id``: "<turn id> <click time>"; the
        newest when empty); its stored ``[n]`` markers become Explain's own."""
        state = session_state(state)
        conv = open_conversation(state)
        turns = [t for t in (conv.turns if conv else []) if t.answer_ids]
        if not turns:
            raise gr.Error("Ask a question first: there is no answer to explain yet.")
        wanted = (turn_id or "").split(" ")[0]
        turn = next((t for t in turns if t.id == wanted), turns[-1])
        try:
            from ..explain.explainer import explain
            from ..explain.view import highlight_html, importance_chart, summary_markdown
        except ImportError:
            log.info("explain modules are not installed yet")
            return ("Explain is not available yet.", gr.update(value=None), "", gr.update(open=True))
        try:
            expl = explain(rt.lm, turn)
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        if turn.sources:  # shown from the next time the conversation is drawn (re-drawing now would fold
            # the sources the user has open)
            turn.citations, turn.citations_by = citations.from_explanation(turn.answer, expl), "explain"
            store.update_turn(conv.id, turn)
        label = f"**Explaining:** {literal_markdown(turn.user[:120])}\n\n"  # the user's text, as written
        return (label + summary_markdown(expl), importance_chart(expl), highlight_html(expl), gr.update(open=True))

    # -- layout ----------------------------------------------------------
    settings = admin.load_settings(store, rt.config)
    with gr.Blocks(title=settings.assistant_name) as demo:
        state = gr.BrowserState({}, storage_key="assistant_session")
        tab = gr.State({})
        with gr.Sidebar(label="Conversations", open=True, width=280, elem_id="sidebar"):
            new_btn = gr.Button("New conversation", variant="primary", size="sm", elem_id="new")
            convs = gr.Radio(label="Your conversations", choices=[], value=None, elem_id="conversations",
                             elem_classes=["conversation-list"])
            with gr.Row(elem_id="rename-row"):
                title_box = gr.Textbox(placeholder="New title for this conversation", show_label=False, scale=3,
                                       elem_id="rename-title", max_lines=1)
                rename_btn = gr.Button("Rename", size="sm", scale=1, elem_id="rename")
            delete_btn = gr.Button("Delete conversation", size="sm", variant="stop", elem_id="delete")
            with gr.Column(visible=False, elem_id="confirm-delete") as confirm_box:
                confirm_text = gr.Markdown("", elem_id="confirm-delete-text")
                with gr.Row():
                    confirm_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="confirm-delete-yes")
                    cancel_btn = gr.Button("Keep it", size="sm", elem_id="confirm-delete-no")
        header = gr.Markdown(header_markdown(settings, getattr(engine, "index", None)), elem_id="header")
        # Messages arrive as finished, safe HTML (assistant.safe_markdown): no second Markdown pass, and
        # Gradio's sanitizer would rewrite the links' rel (dropping nofollow).
        chatbot = gr.Chatbot(height=520, label="Chat", elem_id="chat", render_markdown=False, sanitize_html=False,
                             editable="user",
                             placeholder="Ask a question about the documents I know.",
                             buttons=[], latex_delimiters=[])  # each answer has its own Copy (its text, not HTML)
        note = gr.Markdown("", elem_id="context-note")
        with gr.Row(visible=False, elem_id="reason-row") as reason_row:
            reason = gr.Textbox(placeholder="Optional: what was good or wrong about this answer?", show_label=False,
                                scale=8, elem_id="reason")
            reason_btn = gr.Button("Send reason", size="sm", scale=1, elem_id="send-reason")
        with gr.Row():
            box = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=8,
                             elem_id="message", max_lines=8)
            send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            stop_btn = gr.Button("Stop", scale=1, elem_id="stop")
        # each answer's Explain / Regenerate action (the page script) writes its turn id here
        explain_target = gr.Textbox(visible="hidden", elem_id="explain-target", show_label=False)
        regenerate_target = gr.Textbox(visible="hidden", elem_id="regenerate-target", show_label=False)
        examples = scope.example_prompts(getattr(engine, "index", None), getattr(rt.config, "example_prompts", ()))
        gr.Examples(examples, inputs=box, label="Examples")
        with gr.Accordion("Explanation", open=False, elem_id="explain-panel") as panel:
            explain_md = gr.Markdown("Click **Explain** under an answer to see what it was based on.",
                                     elem_id="explain-summary")
            explain_plot = gr.BarPlot(x="method", y="value", color="source", y_aggregate="sum",
                                      label="Share of each source, by method", elem_id="explain-chart",
                                      height=280)
            explain_html = gr.HTML(elem_id="explain-highlight")

        outputs = [box, chatbot, state, note, convs]
        box.submit(send, [box, state], outputs, concurrency_id="chat")
        send_btn.click(send, [box, state], outputs, concurrency_id="chat")
        stop_btn.click(stop, [state], None, concurrency_limit=None, queue=False)
        regenerate_target.change(regenerate, [regenerate_target, state], outputs, concurrency_id="chat")
        chatbot.undo(undo, [state], outputs)
        chatbot.edit(edit, [state], outputs, concurrency_id="chat")
        chatbot.like(like, [state, tab], [tab, reason_row])
        reason_btn.click(save_reason, [reason, state, tab], [reason, reason_row])
        reason.submit(save_reason, [reason, state, tab], [reason, reason_row])
        explain_target.change(explain_turn, [explain_target, state],
                             [explain_md, explain_plot, explain_html, panel], concurrency_id="chat")
        new_btn.click(new_conversation, [state], outputs)
        chatbot.clear(new_conversation, [state], outputs)
        convs.input(switch, [convs, state], outputs)
        rename_btn.click(rename, [title_box, state], [title_box, convs])
        title_box.submit(rename, [title_box, state], [title_box, convs])
        delete_btn.click(ask_delete, [state], [confirm_box, confirm_text])
        confirm_btn.click(delete, [state], outputs + [confirm_box])
        cancel_btn.click(lambda: gr.update(visible=False), None, [confirm_box])
        demo.load(load, [state], outputs + [header])
    return demo
