"""The admin area for support teams (mounted at ``/admin`` behind the admin
key): documents, conversation browser, handoffs and feedback, analytics,
export, settings and the embed snippet.  Wiring over ``assistant.web.admin``.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from . import admin
from ..errors import AssistantError

log = logging.getLogger(__name__)

CSS = """
#admin-conversation a { padding: 0; }
#admin-conversation .turn-answer pre { padding: 0.5em 0.75em; overflow-x: auto; }
"""


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def _base_url(request: gr.Request | None) -> str:
    if request is None:
        return "http://127.0.0.1:7860"
    headers = request.headers
    host = headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1:7860"
    scheme = headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{host}"


def build_admin(rt: Any) -> gr.Blocks:
    store, config = rt.store, rt.config

    def guarded(fn):
        """Domain errors become a readable message in the UI, never a stack trace."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except AssistantError as exc:
                raise gr.Error(str(exc)) from None
        return wrapper

    # -- documents -----------------------------------------------------
    doc_cols = ["doc_id", "title", "source", "kind", "chunks", "languages", "added", "flagged"]
    flag_cols = ["doc_id", "source", "passage", "state", "why", "text"]

    def documents():
        if rt.index is None:
            return _frame([], doc_cols), "Retrieval is off on this server (`--no-retrieval`)."
        return _frame(admin.document_rows(rt.index), doc_cols), f"{len(rt.index.documents())} documents."

    def flagged():
        return _frame(admin.flagged_rows(rt.index), flag_cols)

    @guarded
    def allow(doc: str, allowed: bool):
        message = admin.allow_document(rt.index, doc, allowed)
        return message, documents()[0], flagged()

    @guarded
    def upload(files: list[str] | None, progress=gr.Progress()):
        if not files:
            raise gr.Error("Choose or drop one or more files first.")
        payload = [(Path(f).name, Path(f).read_bytes()) for f in files]
        report = admin.upload_documents(rt.index, payload, progress=lambda x, d: progress(x, desc=d))
        table, _ = documents()
        return report, table, None, flagged()

    @guarded
    def remove(doc: str):
        message = admin.remove_document(rt.index, doc)
        return message, documents()[0], ""

    @guarded
    def rebuild(progress=gr.Progress()):
        progress(0.1, desc="re-reading documents")
        message = admin.rebuild_index(rt.index)
        return message, documents()[0]

    # -- conversations, handoffs, feedback ----------------------------------
    turn_cols = ["when", "conversation_id", "user", "answer", "language", "intent", "route", "n_sources", "rating",
                 "reason", "turn_id"]

    @guarded
    def search(text, intent, language, rating, since, until):
        rows = admin.search(store, text, intent, language, rating, since, until)
        return _frame(rows, turn_cols), f"{len(rows)} turn(s)."

    def pick(table: pd.DataFrame, data: gr.SelectData):
        row = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        cid = str(table.iloc[row]["conversation_id"]) if table is not None and len(table) > row else ""
        return cid, admin.conversation_html(store, cid, config.allowed_image_origins)

    def transcript(cid: str):
        return admin.conversation_html(store, cid, config.allowed_image_origins)

    def activity():
        return (_frame(admin.handoffs(store), ["when", "conversation_id", "message"]),
                _frame(admin.feedback_rows(store), ["when", "rating", "reason", "question", "answer", "turn_id"]),
                _frame(admin.takeovers(store), ["when", "message", "why", "conversation_id"]),
                _frame(admin.invented_numbers(store), ["when", "question", "withheld answer", "numbers",
                                                       "conversation_id"]),
                _frame(admin.answer_checks(store), ["when", "question", "check", "detail", "conversation_id"]))

    # -- analytics ----------------------------------------------------------
    def analytics():
        return (_frame(admin.intents_over_time(store), ["day", "intent", "count"]),
                _frame(admin.languages(store), ["language", "count"]),
                _frame(admin.ratings(store), ["rating", "count"]),
                _frame(admin.unanswered(store), ["when", "question", "conversation_id"]))

    # -- export -------------------------------------------------------------
    def export(rated: bool):
        settings = admin.load_settings(store, config)
        folder = Path(tempfile.mkdtemp(prefix="assistant-export-"))
        path = folder / ("rated-answers.jsonl" if rated else "conversations.jsonl")
        count = 0
        with path.open("w", encoding="utf-8") as f:
            for line in admin.export_jsonl(store, rated_only=rated, system_prompt=settings.resolved_system_prompt()):
                f.write(line + "\n")
                count += 1
        log.info("admin export: %d lines to %s", count, path)
        return str(path), f"{count} line(s) exported."

    # -- settings and embedding -----------------------------------------------
    def current_settings(request: gr.Request):
        s = admin.load_settings(store, config)
        snippet = admin.embed_snippet(_base_url(request))
        return s.assistant_name, s.welcome_message, s.system_prompt, "\n".join(s.allowed_origins), snippet

    @guarded
    def save(name, welcome, prompt, origins):
        settings = admin.save_settings(store, name, welcome, prompt, origins)
        admin.apply_settings(rt.engine, settings)
        log.info("admin settings saved (%d allowed origins)", len(settings.allowed_origins))
        return "Saved. New conversations use these settings; reload the chat page to see the new name."

    def current_adapter():
        choices = admin.adapter_choices(config.home, rt.lm.name, rt.lm.adapters)
        value = rt.lm.adapters[0] if rt.lm.adapters else admin.NO_ADAPTER
        return gr.Dropdown(choices=choices, value=value)

    @guarded
    def use_adapter(choice):
        return admin.switch_adapter(rt, choice)

    with gr.Blocks(title="Assistant admin") as demo:
        gr.Markdown("## Admin area")
        with gr.Tabs():
            with gr.Tab("Documents"):
                files = gr.File(label="Drop documents here (several at once)", file_count="multiple",
                                elem_id="admin-upload")
                with gr.Row():
                    upload_btn = gr.Button("Upload and index", variant="primary", elem_id="admin-upload-btn")
                    rebuild_btn = gr.Button("Rebuild index")
                doc_status = gr.Markdown(elem_id="admin-doc-status")
                doc_table = gr.Dataframe(label="Documents", interactive=False, wrap=True)
                with gr.Row():
                    doc_id = gr.Textbox(label="Document id or source to remove", scale=4)
                    remove_btn = gr.Button("Remove", variant="stop", scale=1)
                gr.Markdown("**Flagged passages** — text that reads like instructions to the assistant, or that "
                            "the file hides from readers, is held out of answers until you allow its document.")
                flag_table = gr.Dataframe(label="Flagged passages", interactive=False, wrap=True,
                                          elem_id="admin-flagged")
                with gr.Row():
                    flag_doc = gr.Textbox(label="Document id or source", scale=4, elem_id="admin-flag-doc")
                    allow_btn = gr.Button("Allow in answers", scale=1, elem_id="admin-allow")
                    hold_btn = gr.Button("Hold again", scale=1)
            with gr.Tab("Conversations"):
                with gr.Row():
                    q_text = gr.Textbox(label="Text")
                    q_intent = gr.Textbox(label="Intent")
                    q_lang = gr.Textbox(label="Language (en, zh, …)")
                    q_rating = gr.Dropdown(["any", "up", "down"], value="any", label="Rating")
                    q_since = gr.Textbox(label="From (YYYY-MM-DD)")
                    q_until = gr.Textbox(label="To (YYYY-MM-DD)")
                search_btn = gr.Button("Search", variant="primary")
                search_status = gr.Markdown()
                results = gr.Dataframe(label="Turns (click a row to open its conversation)", interactive=False,
                                       wrap=True)
                conv_id = gr.Textbox(label="Conversation id")
                # Finished, safe HTML (assistant.safe_markdown), shown as it is.
                conv_view = gr.HTML(elem_id="admin-conversation")
            with gr.Tab("Handoffs & feedback"):
                refresh_act = gr.Button("Refresh")
                handoff_table = gr.Dataframe(label="Handoff requests", interactive=False, wrap=True)
                feedback_table = gr.Dataframe(label="Feedback", interactive=False, wrap=True)
                takeover_table = gr.Dataframe(label="Declined: messages that tried to change or extract the "
                                              "assistant's instructions", interactive=False, wrap=True,
                                              elem_id="admin-takeovers")
                invented_table = gr.Dataframe(label="Declined: answers that stated a number no document gives "
                                              "(add the fact to the documents if it is right)", interactive=False,
                                              wrap=True, elem_id="admin-invented-numbers")
                checks_table = gr.Dataframe(label="Changed: addresses no document names, taken out of answers; "
                                            "answers that repeated the message back", interactive=False,
                                            wrap=True, elem_id="admin-answer-checks")
            with gr.Tab("Analytics"):
                refresh_stats = gr.Button("Refresh")
                intents_plot = gr.BarPlot(x="day", y="count", color="intent", y_aggregate="sum", y_lim=[0, None],
                                          label="Intents over time (turns per day)", elem_id="intents-chart")
                with gr.Row():
                    lang_plot = gr.BarPlot(x="language", y="count", y_aggregate="sum", y_lim=[0, None],
                                           label="Languages", elem_id="languages-chart")
                    rating_plot = gr.BarPlot(x="rating", y="count", y_aggregate="sum", y_lim=[0, None],
                                             label="Ratings", elem_id="ratings-chart")
                no_source = gr.Dataframe(label="Questions that found no relevant source", interactive=False,
                                         wrap=True)
            with gr.Tab("Export"):
                gr.Markdown("Chat JSONL in OpenAI `messages` format, one conversation per line; "
                            "`assistant finetune` reads it. Rated answers carry `rating` (1 / -1) and `reason`.")
                with gr.Row():
                    export_all = gr.Button("Export conversations")
                    export_rated = gr.Button("Export rated answers")
                export_file = gr.File(label="Download", interactive=False)
                export_status = gr.Markdown()
            with gr.Tab("Settings"):
                s_name = gr.Textbox(label="Assistant name", elem_id="settings-name")
                s_welcome = gr.Textbox(label="Welcome message", lines=2)
                s_prompt = gr.Textbox(label="System prompt ({name} is replaced by the name)", lines=5)
                s_origins = gr.Textbox(label="Allowed embedding origins (one per line, e.g. https://example.com)",
                                       lines=3)
                save_btn = gr.Button("Save", variant="primary")
                save_status = gr.Markdown(elem_id="settings-status")
                gr.Markdown("**Model adapter** — LoRA adapters trained with `assistant finetune`: the shipped one, "
                            "and folders under `ASSISTANT_HOME/adapters/`. Applies until restart; set "
                            "`ASSISTANT_ADAPTER` to keep it.")
                with gr.Row():
                    adapter = gr.Dropdown(label="Adapter", choices=[admin.NO_ADAPTER], scale=4,
                                          elem_id="settings-adapter")
                    adapter_btn = gr.Button("Use this adapter", scale=1)
                adapter_status = gr.Markdown(elem_id="adapter-status")
            with gr.Tab("Embed"):
                gr.Markdown("Paste one of these into your web page. Add the page's origin under **Settings** "
                            "first: other origins are refused. See docs/embedding.md.")
                snippet = gr.Code(language="html", label="Embed snippet", interactive=False)

        upload_btn.click(upload, [files], [doc_status, doc_table, files, flag_table])
        allow_btn.click(lambda d: allow(d, True), [flag_doc], [doc_status, doc_table, flag_table])
        hold_btn.click(lambda d: allow(d, False), [flag_doc], [doc_status, doc_table, flag_table])
        rebuild_btn.click(rebuild, None, [doc_status, doc_table])
        remove_btn.click(remove, [doc_id], [doc_status, doc_table, doc_id])
        filters = [q_text, q_intent, q_lang, q_rating, q_since, q_until]
        search_btn.click(search, filters, [results, search_status])
        results.select(pick, [results], [conv_id, conv_view])
        conv_id.submit(transcript, [conv_id], [conv_view])
        refresh_act.click(activity, None,
                          [handoff_table, feedback_table, takeover_table, invented_table, checks_table])
        stats = [intents_plot, lang_plot, rating_plot, no_source]
        refresh_stats.click(analytics, None, stats)
        export_all.click(lambda: export(False), None, [export_file, export_status])
        export_rated.click(lambda: export(True), None, [export_file, export_status])
        save_btn.click(save, [s_name, s_welcome, s_prompt, s_origins], [save_status])
        adapter_btn.click(use_adapter, [adapter], [adapter_status])
        demo.load(current_adapter, None, [adapter])
        demo.load(documents, None, [doc_table, doc_status])
        demo.load(flagged, None, [flag_table])
        demo.load(analytics, None, stats)
        demo.load(activity, None, [handoff_table, feedback_table, takeover_table, invented_table,
                                   checks_table])
        demo.load(current_settings, None, [s_name, s_welcome, s_prompt, s_origins, snippet])
    return demo
