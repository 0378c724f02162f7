"""Model and generation options shared by ``chat``, ``serve`` and ``evaluate``."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import COMPUTE_DTYPES, DEVICES, FAST_DECODES, QUANTIZATIONS, AppConfig, GenerationConfig


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--config", help="YAML/JSON config file (default: $ASSISTANT_CONFIG)")
    g.add_argument("--model", help="registry name, Hugging Face id, model folder or .gguf file")
    g.add_argument("--adapter", action="append",
                   help="LoRA adapter folder (repeatable; default: the adapter shipped for the model)")
    g.add_argument("--no-adapter", action="store_true",
                   help="do not load any adapter, not even the shipped one (nor the retry adapter)")
    g.add_argument("--retry-adapter", metavar="DIR|none",
                   help="LoRA adapter that answers again when the model declines a question it had sources for "
                        "(default: the shipped one where the registry says so); none: no second try")
    g.add_argument("--quantization", choices=QUANTIZATIONS)
    g.add_argument("--compute-dtype", choices=COMPUTE_DTYPES)
    g.add_argument("--device", choices=DEVICES)
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g.add_argument("--generator", choices=("transformers", "llama.cpp"),
                   help="generate locally with transformers (default) or llama.cpp on the GGUF file")
    g.add_argument("--fast-decode", choices=FAST_DECODES,
                   help="weights of the lean CPU decoder (default int4; mixed: a GGUF file's finer matrices "
                        "as 8-bit rows, about 10%% slower); off = transformers' forward")
    g.add_argument("--home", help="data folder (default: $ASSISTANT_HOME)")
    g.add_argument("--remote-url", help="generate on an OpenAI-compatible server (http://host:port/v1)")
    g.add_argument("--remote-model", help="model name to ask the remote server for")
    s = parser.add_argument_group("generation")
    s.add_argument("--max-new-tokens", type=int)
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-p", type=float)
    s.add_argument("--repetition-penalty", type=float)
    s.add_argument("--lookup", choices=("on", "off"),
                   help="prompt-lookup decoding on the lean CPU forward (default on): drafts copied from the "
                        "sources, checked in one pass; the same answer, faster")
    s.add_argument("--no-retrieval", action="store_true", help="answer without the knowledge index")
    s.add_argument("--no-intents", action="store_true", help="skip intent routing")


def config_from_args(args: argparse.Namespace) -> AppConfig:
    overrides = {"home": args.home} if getattr(args, "home", None) else {}
    config = AppConfig.load(getattr(args, "config", None), **overrides)
    model = config.model
    changes = {k: getattr(args, a) for k, a in (("name", "model"), ("quantization", "quantization"),
                                                  ("compute_dtype", "compute_dtype"), ("device", "device"),
                                                  ("threads", "threads"), ("remote_url", "remote_url"),
                                                  ("fast_decode", "fast_decode"), ("generator", "generator"),
                                                  ("remote_model", "remote_model")) if getattr(args, a, None) is not None}
    if getattr(args, "adapter", None):
        changes["adapters"] = tuple(args.adapter)
    if getattr(args, "retry_adapter", None):
        changes["retry_adapter"] = args.retry_adapter
    if getattr(args, "no_adapter", False):
        changes["adapters"] = ()
        changes["retry_adapter"] = ""
    config.model = dataclasses.replace(model, **changes)
    gen = {k: getattr(args, k) for k in ("max_new_tokens", "temperature", "top_p", "repetition_penalty")
           if getattr(args, k, None) is not None}
    if getattr(args, "lookup", None) == "off":
        gen["lookup_tokens"] = 0
    elif getattr(args, "lookup", None) == "on" and not config.generation.lookup_tokens:
        gen["lookup_tokens"] = GenerationConfig.lookup_tokens
    config.generation = dataclasses.replace(config.generation, **gen)
    return config
