"""``assistant serve``: the browser app, the admin area and the HTTP API on one port."""

from __future__ import annotations

import argparse

from .options import add_model_options, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="start the web app and the HTTP API")
    add_model_options(p)
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from ..runtime import build_runtime
    from ..server import create_app

    config = config_from_args(args)
    config = dataclasses.replace(config, **{k: getattr(args, k) for k in ("host", "port") if getattr(args, k)})
    rt = build_runtime(config, retrieval=not args.no_retrieval, understanding=not args.no_intents)
    app = create_app(rt)
    print(f"Open http://{config.host}:{config.port} in your browser", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    return 0
