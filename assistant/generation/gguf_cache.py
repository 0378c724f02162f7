"""A GGUF file de-quantised once into a transformers safetensors folder (the path for
training, GPUs and full precision; serving on a CPU uses ``gguf_lean`` instead), and the
checks and fingerprint of a GGUF file both paths share.  Knows nothing about the registry."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .. import progress
from ..errors import ModelLoadError

log = logging.getLogger("assistant.generation.models")

# ChatML: used when a tokenizer has no template of its own.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def check_gguf_file(path: Path) -> None:
    """Fail early and clearly on a file that is not GGUF or is obviously truncated."""
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (bad magic {magic!r}); it may be corrupt — download it again")
    if size < 1024:
        raise ModelLoadError(f"GGUF file {path} is truncated ({size} bytes)")


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode())
    with path.open("rb") as fh:  # first and last MiB catch a changed or truncated file
        h.update(fh.read(1 << 20))
        fh.seek(max(0, st.st_size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def dequantize_gguf(path: Path, cache_root: Path, chat_template: str | None = None) -> Path:
    """De-quantise a GGUF file once into a safetensors folder; return the folder.

    Written to a temporary folder and renamed, so a crash never leaves a half
    cache behind.
    """
    check_gguf_file(path)
    target = cache_root / f"{path.stem}-{_file_fingerprint(path)}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with progress.step(f"de-quantising {path.name} (once, one to two minutes)", log=log, detail=str(target)):
        try:
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            gguf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except Exception as exc:  # truncated tensors, unknown architecture, bad metadata
            raise ModelLoadError(f"GGUF file {path} could not be read (corrupt, truncated or unsupported): "
                                 f"{exc}") from exc
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict(), strict=False)
        plain.tie_weights()
        if not tokenizer.chat_template:
            tokenizer.chat_template = chat_template or CHATML_TEMPLATE
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_root))
        try:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
