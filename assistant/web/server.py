"""The HTTP server: one FastAPI app with

- ``/health``                      liveness and what is loaded;
- ``/v1/...``                      the OpenAI-compatible API (``assistant.web.api``);
- ``/admin-api/...``               admin downloads (export) behind the admin key;
- ``/admin``                       the admin area (Gradio, password = admin key);
- ``/``                            the chat (Gradio).

Enforces the allowed embedding origins (CORS for the web component,
``frame-ancestors`` for the iframe), sends every response with a
Content-Security-Policy that lets pages load images, connections and frames
from this server only (plus ``allowed_image_origins`` for images), and tracks
the turns in flight (``assistant.web.streaming``) so a shutdown stores them.  Knows the runtime and the UI
builders; holds no chat logic of its own.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import admin
from ..runtime import Runtime
from .streaming import InFlight

log = logging.getLogger(__name__)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def content_security_policy(image_origins: tuple[str, ...] = (), embed_origins: tuple[str, ...] = ()) -> str:
    """The CSP of every response: nothing named in model output or a document can make a page fetch
    from elsewhere, even past the sanitiser (``assistant.safe_markdown``).

    What Gradio 6 needs (checked in chromium on the chat, its API view, the login and admin pages and the
    Explain chart): inline scripts (its config is an inline script) and ``eval`` (``gr.HTML`` templates
    and the charts compile code with ``Function``), inline styles, and ``data:`` images (its SVG icons).
    ``frame-ancestors`` lists the sites allowed to embed the chat (``*``: any).
    """
    ancestors = "*" if "*" in embed_origins else " ".join(("'self'", *embed_origins))
    return "; ".join((
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        " ".join(("img-src 'self' data:", *image_origins)),
        "connect-src 'self'",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {ancestors}",
    ))


def _allowed_origin(request: Request, allowed: tuple[str, ...]) -> tuple[bool, str]:
    """(allowed?, origin) for a request; requests without ``Origin`` or from the server itself are allowed."""
    origin = request.headers.get("origin", "")
    if not origin or origin == "null":
        return True, ""
    host = request.headers.get("host", "")
    if origin_of(origin) in (f"http://{host}".lower(), f"https://{host}".lower()):
        return True, origin
    if "*" in allowed or origin.lower().rstrip("/") in allowed:
        return True, origin
    return False, origin


def create_app(rt: Runtime, inflight: InFlight | None = None) -> Any:
    import gradio as gr

    from .admin_page import CSS as ADMIN_CSS
    from .admin_page import build_admin
    from .api import create_router
    from .chat_page import CSS as CHAT_CSS
    from .chat_page import JS as CHAT_JS
    from .chat_page import build_chat

    inflight = inflight if inflight is not None else InFlight()
    config = rt.config
    # The output guard withholds any answer that contains a key (they are never in a prompt,
    # but a model can be steered into echoing what a user pasted).
    rt.engine.secrets = tuple(k for k in (config.admin_key, *config.api_keys, config.model.remote_api_key) if k)
    admin.apply_settings(rt.engine, admin.load_settings(rt.store, rt.config))
    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN (offline they never worked, and the
    # CSP refuses them); the API is described in docs/api.md, its schema is at /openapi.json.
    api = FastAPI(title="offline-assistant", docs_url=None, redoc_url=None)
    api.state.inflight = inflight

    @api.middleware("http")
    async def embedding_origins(request: Request, call_next: Any) -> Response:
        allowed = admin.load_settings(rt.store, rt.config).allowed_origins
        ok, origin = _allowed_origin(request, allowed)
        if not ok:
            log.info("refused a request from origin %s (not in allowed_origins)", origin)
            return JSONResponse({"error": f"origin {origin} is not allowed to embed this assistant; "
                                          "add it under Admin › Settings › allowed embedding origins"},
                                status_code=403)
        if request.method == "OPTIONS" and origin:
            response: Response = Response(status_code=204)
        else:
            response = await call_next(request)
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            # X-Gradio-User: the web component's queue requests carry it (refused without it, gradio 6.31)
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Api-Key, X-Gradio-User"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Vary"] = "Origin"
        response.headers["Content-Security-Policy"] = content_security_policy(config.allowed_image_origins, allowed)
        return response

    @api.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": rt.lm.name, "quantization": rt.lm.quantization, "device": rt.lm.device,
                "index": rt.index is not None, "intents": rt.intents is not None, "in_flight": len(inflight),
                "admin": bool(rt.config.admin_key), "api": bool(rt.config.api_keys)}

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI's shape and status; the offending values are not echoed (FastAPI's default
        # handler did, and failed with a 500 on a body holding Infinity or NaN).
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', 'invalid')}"
                          for e in exc.errors()[:5])
        return JSONResponse({"error": {"message": f"invalid request: {where}", "type": "invalid_request_error",
                                       "code": 400}}, status_code=400)

    api.include_router(create_router(rt, inflight))

    def admin_key_ok(request: Request) -> bool:
        if not rt.config.admin_key:
            return False
        given = request.headers.get("x-admin-key", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), rt.config.admin_key.encode())

    def refused() -> JSONResponse:
        if not rt.config.admin_key:
            return JSONResponse({"error": "the admin area is disabled: set ASSISTANT_ADMIN_KEY"}, status_code=404)
        return JSONResponse({"error": "admin key required: send 'Authorization: Bearer <admin key>'"},
                            status_code=401)

    @api.get("/admin-api/export.jsonl")
    def export(request: Request, rated: bool = False) -> Response:
        if not admin_key_ok(request):
            return refused()
        settings = admin.load_settings(rt.store, rt.config)
        lines = admin.export_jsonl(rt.store, rated_only=rated, system_prompt=settings.resolved_system_prompt())
        name = "rated-answers.jsonl" if rated else "conversations.jsonl"
        return StreamingResponse((line + "\n" for line in lines), media_type="application/jsonl",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @api.get("/admin-api/analytics")
    def analytics(request: Request) -> Response:
        if not admin_key_ok(request):
            return refused()
        return JSONResponse(admin.analytics_summary(rt.store))

    @api.get("/gradio.js")
    def web_component() -> Response:
        """Gradio's web component loader, served locally (the usual CDN copy is out of reach offline)."""
        path = Path(gr.__file__).parent / "templates" / "frontend" / "gradio.js"
        return Response(path.read_text(), media_type="text/javascript")

    @api.get("/embed.txt")
    def embed(request: Request) -> PlainTextResponse:
        return PlainTextResponse(admin.embed_snippet(str(request.base_url)))

    queue = dict(default_concurrency_limit=2, max_size=rt.config.max_queue)
    if rt.config.admin_key:
        key = rt.config.admin_key

        def check(username: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), key.encode())

        admin_demo = build_admin(rt)
        admin_demo.queue(**queue)
        api = gr.mount_gradio_app(api, admin_demo, path="/admin", auth=check, css=ADMIN_CSS,
                                  auth_message="Admin area: any user name, the admin key as password.")
    else:
        @api.get("/admin")
        def admin_disabled() -> PlainTextResponse:
            return PlainTextResponse("The admin area is disabled: set ASSISTANT_ADMIN_KEY (or admin_key in the "
                                     "config file) and restart.", status_code=404)

    demo = build_chat(rt, inflight)
    demo.queue(**queue)
    return gr.mount_gradio_app(api, demo, path="/", css=CHAT_CSS, js=CHAT_JS, show_error=False)
