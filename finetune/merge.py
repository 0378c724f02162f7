"""Merge a LoRA adapter into its base model's weights and save a plain
transformers folder (for export, llama.cpp conversion or serving without peft).

The base is loaded in full precision (a 4-bit base cannot be merged exactly),
the adapter applied and folded in with peft's ``merge_and_unload``.
Knows nothing about training or the UI.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from assistant.errors import ModelLoadError

log = logging.getLogger(__name__)


def merge_adapter(base: str, adapter: str | Path, out: str | Path, home: str | Path | None = None,
                  dtype: str = "float32") -> Path:
    """Write base + adapter merged into ``out``; returns ``out``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.config import assistant_home
    from assistant.generation.models import resolve_source, set_chat_template

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter {adapter}: no adapter_config.json there; give a folder written by "
                             "`assistant finetune`")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ModelLoadError(f"output folder {out} is not empty; choose a new folder")
    source, _kind, spec = resolve_source(base, Path(home) if home else assistant_home())
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    try:
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:  # shape or module mismatch
        raise ModelLoadError(f"adapter {adapter} does not fit base {base!r}: {exc}") from exc
    tok_source = adapter if (adapter / "tokenizer_config.json").is_file() else Path(source)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_source))
    set_chat_template(tokenizer, spec)  # exported with the template it is served with
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merge-", dir=out.parent))
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("merged %s into %s → %s", adapter, base, out)
    return out
