"""``assistant finetune`` / ``evaluate`` / ``merge`` / ``convert-sgd``: wiring
from the command line to the ``finetune`` package, which does the work.

    assistant convert-sgd ../shared/datasets/sgd-dialogues --out sgd.jsonl --eval-out sgd-eval.jsonl
    assistant finetune --data sgd.jsonl --out adapters/sgd
    assistant evaluate --data sgd-eval.jsonl --adapter adapters/sgd
    assistant merge --adapter adapters/sgd --out merged/

``--base`` defaults to the model the assistant serves (``ASSISTANT_MODEL``, the config file, else the
registry's default), so that what is trained loads on it.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_finetune(subparsers)
    _register_evaluate(subparsers)
    _register_merge(subparsers)
    _register_convert(subparsers)


def _register_finetune(subparsers: argparse._SubParsersAction) -> None:
    from finetune.config import TRAIN_QUANTIZATIONS

    p = subparsers.add_parser(
        "finetune", help="train a LoRA / QLoRA adapter on chat data (JSONL)",
        description="Train a LoRA adapter (QLoRA on CUDA) on chat JSONL: OpenAI `messages`, ShareGPT "
                    "`conversations`, Alpaca `instruction`/`output` or the app's export.  Several GPUs: "
                    "accelerate launch -m assistant.cli.main finetune ... (see finetune/README.md).")
    p.add_argument("--data", required=True, help="training JSONL")
    p.add_argument("--base", default=None,
                   help="base model (registry name, HF id, folder, .gguf); default: the model the assistant "
                        "serves (ASSISTANT_MODEL, the config file, else the default model)")
    p.add_argument("--out", required=True, help="adapter folder to write")
    p.add_argument("--eval-data", help="held-out JSONL for eval loss (default: split --eval-fraction off --data)")
    p.add_argument("--eval-fraction", type=float, default=0.05)
    p.add_argument("--skip-invalid", action="store_true", help="drop invalid lines instead of refusing the file")
    p.add_argument("--quantization", choices=TRAIN_QUANTIZATIONS, default="auto",
                   help="nf4 = QLoRA; auto: nf4 on CUDA, none (full precision) on CPU")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="compute precision of the frozen base; auto: bf16/fp16 on CUDA, bf16 on a CPU with "
                        "fast bf16 products (AMX, AVX-512 BF16: about 3x fp32), else fp32")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default="auto", help="auto | all-linear | comma-separated names")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--packing", action="store_true")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=0, help="0: run --epochs")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-4, dest="learning_rate")
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps (<1) or a step count")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--save-steps", type=int, default=50)
    p.add_argument("--save-total-limit", type=int, default=2)
    p.add_argument("--early-stopping", type=int, default=0, dest="early_stopping_patience",
                   help="stop after N evaluations without improvement (0: off)")
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--init-adapter", help="train this existing adapter further (its rank and modules are kept)")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue from the last checkpoint in OUT/checkpoints (or the one given)")
    p.add_argument("--gradient-checkpointing", nargs="?", choices=("auto", "on", "off"), const="on",
                   default="auto", help="recompute activations in the backward pass (less memory, about a "
                                        "quarter slower); auto: on for a base of 1B parameters or more")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--home", help="data folder (default: $ASSISTANT_HOME)")
    p.set_defaults(handler=run_finetune, log_level=logging.INFO)


def run_finetune(args: argparse.Namespace) -> int:
    import dataclasses

    from finetune.config import TrainConfig
    from finetune.train import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["progress"] = not args.no_progress
    values["base"] = serving_model(args)
    values["gradient_checkpointing"] = {"on": True, "off": False}.get(args.gradient_checkpointing, "auto")
    values["command"] = "assistant " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    config = TrainConfig(**values)
    result = train(config)
    logging.getLogger(__name__).info("adapter written to %s", result.out)
    if result.skipped_lines:
        print(f"skipped {result.skipped_lines} invalid line(s) (--skip-invalid)")
    eval_part = f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""
    print(f"adapter: {result.out}  steps {result.start_step}→{result.global_step}, loss "
          f"{result.first_loss:.4f}→{result.last_loss:.4f}{eval_part}, "
          f"{result.tokens_per_second:.0f} tokens/s, {result.train_seconds / 60:.1f} min")
    return 0


def serving_model(args: argparse.Namespace) -> str:
    """The base to train, evaluate or merge on: ``--base`` when given; else the base an adapter named on the
    command line was trained on (its ``adapter_config.json``); else the model the assistant serves
    (``ASSISTANT_MODEL`` or ``model.name`` of the config file, else the registry's default), so that the
    adapter trained loads there without a ``--base`` to remember."""
    import json
    from pathlib import Path

    from assistant.config import AppConfig

    if args.base:
        return args.base
    adapter = getattr(args, "adapter", None) or getattr(args, "init_adapter", None)
    if adapter:
        try:
            recorded = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        name = recorded.get("base_model_name_or_path") if isinstance(recorded, dict) else None
        if isinstance(name, str) and name.strip():
            return name
    return AppConfig.load(getattr(args, "config", None)).model.name


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score base vs adapter on held-out dialogues",
        description="Perplexity, ROUGE-L, BLEU, distinct-1/2 and mean reply length on the last assistant "
                    "reply of each dialogue; base and adapter side by side.")
    p.add_argument("--data", required=True, help="held-out JSONL (any supported format)")
    p.add_argument("--base", default=None,
                   help="default: the adapter's own base (adapter_config.json), else the model the assistant serves")
    p.add_argument("--adapter", help="adapter folder to compare against the base")
    p.add_argument("--limit", type=int, default=0, help="use the first N dialogues (0: all)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--quantization", choices=("none", "nf4", "fp4", "int8"), default="none")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--skip-invalid", action="store_true")
    p.add_argument("--home")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from assistant.config import ModelConfig
    from assistant.generation.models import load_model
    from finetune.data import load_dialogues
    from finetune.evaluate import compare, format_table

    dialogues = load_dialogues(args.data, skip_invalid=args.skip_invalid).dialogues
    if args.limit:
        dialogues = dialogues[: args.limit]
    lm = load_model(ModelConfig(name=serving_model(args), quantization=args.quantization, device=args.device, adapters=(),
                                fast_decode="off"),  # training needs the transformers model's own layers
                    home=Path(args.home) if args.home else None)
    reports = compare(lm, dialogues, args.adapter, max_new_tokens=args.max_new_tokens)
    print(format_table(reports))
    return 0


def _register_merge(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("merge", help="merge a LoRA adapter into the base weights for export")
    p.add_argument("--base", default=None,
                   help="default: the adapter's own base (adapter_config.json), else the model the assistant serves")
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True, help="new folder for the merged model")
    p.add_argument("--home")
    p.set_defaults(handler=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from finetune.merge import merge_adapter

    out = merge_adapter(serving_model(args), args.adapter, args.out, home=args.home)
    print(f"merged model: {out}  (use it: assistant chat --model {out} --quantization none)")
    return 0


def _register_convert(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert-sgd", help="convert Schema-Guided Dialogue files to chat JSONL")
    p.add_argument("source", help="SGD folder (dialogues_*.json) or one file")
    p.add_argument("--out", required=True, help="training JSONL to write")
    p.add_argument("--eval-out", help="JSONL for held-out dialogues (split by dialogue id)")
    p.add_argument("--eval-fraction", type=float, default=0.1)
    p.add_argument("--services", default="", help="comma-separated service prefixes to keep (e.g. Banks,Payment)")
    p.add_argument("--no-system", action="store_true", help="leave out the assistant's system prompt")
    p.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from finetune.sgd import convert

    services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    r = convert(args.source, args.out, args.eval_out, args.eval_fraction,
                system="" if args.no_system else None, services=services)
    print(f"{r.train} dialogues → {r.train_path}" + (f", {r.held_out} held out → {r.eval_path}" if r.eval_path else "")
          + (f", {r.skipped} skipped" if r.skipped else ""))
    return 0
