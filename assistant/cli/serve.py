"""``assistant serve``: the browser app, the admin area and the HTTP API on one port.

On SIGINT/SIGTERM the turns in flight are stopped first, so the engine stores
each of them (marked cancelled) before the server exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from .options import add_model_options, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="start the web app and the HTTP API")
    add_model_options(p)
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="json: one JSON object per log line (for log collectors)")
    p.set_defaults(handler=run, log_level=logging.INFO)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception type, never a key)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info and record.exc_info[0] is not None:
            data["exception"] = record.exc_info[0].__name__
        return json.dumps(data, ensure_ascii=False)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from ..runtime import build_runtime
    from ..web.server import create_app
    from ..web.streaming import InFlight

    log = logging.getLogger("assistant.serve")
    if args.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    config = config_from_args(args)
    config = dataclasses.replace(config, **{k: getattr(args, k) for k in ("host", "port") if getattr(args, k)})
    rt = build_runtime(config, retrieval=not args.no_retrieval, understanding=not args.no_intents)
    inflight = InFlight()
    app = create_app(rt, inflight)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # Stop generation now (the engine stores each turn as cancelled); the
            # graceful shutdown below waits for the handlers to finish storing.
            stopped = inflight.cancel_all(wait=0)
            log.info("shutting down (signal %s); %d turn(s) in flight stopped", sig, stopped)
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="info",
                                   timeout_graceful_shutdown=10))
    log.info("serving on http://%s:%s (chat /, admin /admin%s, API /v1, health /health)", config.host,
             config.port, "" if config.admin_key else " disabled")
    print(f"Open http://{config.host}:{config.port} in your browser", flush=True)
    server.run()
    inflight.cancel_all(wait=5)
    rt.store.close()
    return 0
