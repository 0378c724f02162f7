"""Start-up wiring: load the heavy parts once (model, embedder, index, intent
model, store) and hand them to an ``Engine``.  Used by the CLI, the server and
the Gradio app, so all three run the same engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import AppConfig
from .engine import Engine
from .generation.models import LoadedModel, load_model
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: AppConfig
    lm: LoadedModel
    store: Store
    engine: Engine
    index: Any = None
    intents: Any = None
    intent_spec: Any = None
    embedder: Any = None


def build_runtime(
    config: AppConfig,
    *,
    retrieval: bool = True,
    understanding: bool = True,
    store_path: str | Path | None = None,
    lm: LoadedModel | None = None,
) -> Runtime:
    """Load everything the engine needs.  ``store_path`` ':memory:' keeps nothing on disk."""
    home = config.home
    lm = lm or load_model(config.model, home=home)
    log.info("model %s loaded (%s, %s, %s)%s", lm.name, lm.quantization, lm.device, lm.dtype,
             f" with adapters {', '.join(lm.adapters)}" if lm.adapters else "")
    store = Store(store_path or home / "assistant.sqlite")
    embedder = index = intents = spec = None
    if retrieval or understanding:
        from retrieval.embedding import load_embedder

        embedder = load_embedder()
    if retrieval:
        from retrieval import default_index

        index = default_index(home, embedder=embedder)
    if understanding:
        from .understanding.intents import default_model, load_spec
        from .understanding.language_tables import tables

        tables()  # the language detector's tables: built once under the home (~3 s), then opened in ~0.05 s

        spec = load_spec()
        intents = default_model(home, embedder=embedder)
    backend = None
    if config.model.remote_url:
        from .generation.remote import RemoteBackend

        backend = RemoteBackend(config.model.remote_url, config.model.remote_model, config.model.remote_api_key)
        log.info("generating on %s (model %s)", config.model.remote_url, config.model.remote_model)
    elif config.model.generator == "llama.cpp":
        from .generation.llamacpp import LlamaCppBackend
        from .generation.models import gguf_file_of

        backend = LlamaCppBackend(gguf_file_of(config.model.name, home), lm.tokenizer, lm.stop_token_ids,
                                  context=min(lm.context_length, 8192), threads=config.model.threads)
        if lm.adapters:
            log.warning("llama.cpp generates with the base weights: adapter(s) %s apply only to the Explain "
                        "view's model", ", ".join(lm.adapters))
        log.info("generating with %s", backend.name)
    if backend is None and config.chat.keep_scripts:  # which tokens write which script: read once now (~1 s),
        from .generation.script_mask import vocabulary  # not in the first answer's time

        vocabulary(lm.tokenizer)
    if lm.batcher is not None:  # the decoder's thread alone runs on all cores (DecodeBatcher.own_cores)
        lm.batcher.own_cores()
    engine = Engine(lm, store, chat=config.chat, generation=config.generation, index=index, intents=intents,
                    intent_spec=spec, backend=backend,
                    link_origins=tuple(config.allowed_image_origins) + tuple(config.allowed_origins),
                    image_origins=tuple(config.allowed_image_origins))
    return Runtime(config=config, lm=lm, store=store, engine=engine, index=index, intents=intents,
                   intent_spec=spec, embedder=embedder)
