"""Finetuning benchmark: training throughput and peak memory of `assistant finetune`
next to a plain transformers Trainer + peft baseline at the same settings
(the default model or ``--model``, LoRA r=16 on all linear layers, 4 x 512-token packed blocks,
fp32 on CPU / QLoRA on CUDA), then base vs adapter on held-out converted SGD
dialogues after a short CPU run.

    .venv/bin/python bench/finetune.py [--model NAME] [--steps 4] [--sgd-steps 8] [--eval-n 8] [--cache rows.json]

Each throughput measurement runs in its own process so peak memory (max RSS
on CPU, max allocated on CUDA) belongs to that configuration alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import DATASETS, header, save, table  # noqa: E402

MODEL = os.environ.get("BENCH_FINETUNE_MODEL", "")  # set by --model, also for the worker processes
SEQ = 512
BATCH = 4
RANK = 16


def _sgd(tmp: Path) -> tuple[Path, Path]:
    from finetune.sgd import convert

    r = convert(DATASETS / "sgd-dialogues", tmp / "sgd-train.jsonl", tmp / "sgd-eval.jsonl", eval_fraction=0.1)
    return r.train_path, r.eval_path  # type: ignore[return-value]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def worker(kind: str, steps: int, data: str, quant: str) -> dict:
    """One throughput measurement; returns tokens/s and peak memory."""
    from finetune.config import TrainConfig
    from finetune.train import train

    tmp = Path(tempfile.mkdtemp(prefix="bench-ft-"))
    cfg = TrainConfig(data=data, out=str(tmp / "out"), base=MODEL, max_steps=steps, batch_size=BATCH,
                      max_length=SEQ, packing=True, lora_r=RANK, lora_alpha=2 * RANK, eval_fraction=0.0,
                      save_steps=10_000, logging_steps=1, progress=False, quantization=quant,  # type: ignore[arg-type]
                      # the baseline's settings: fp32 on a CPU (bf16 autocast on CUDA), every activation kept
                      precision="auto" if _cuda() else "fp32", gradient_checkpointing=False)
    if kind == "assistant finetune":
        r = train(cfg)
        return {"tokens_per_second": r.tokens_per_second, "peak_memory_mb": r.peak_memory_mb,
                "seconds": r.train_seconds, "steps": r.global_step, "first_loss": r.first_loss,
                "last_loss": r.last_loss}
    # Baseline: the textbook recipe — Trainer + peft, default collator, same blocks and settings.
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    from finetune.train import _peak_memory_mb, build_datasets, load_base, resolve_training_setup, target_modules_for

    device, quantization = resolve_training_setup(cfg)
    model, tokenizer, _ = load_base(cfg, device, quantization)
    blocks, _, _ = build_datasets(cfg, tokenizer)
    rows = [{"input_ids": b.input_ids, "labels": b.labels, "attention_mask": [1] * len(b.input_ids)}
            for b in blocks if len(b.input_ids) == SEQ]
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.05,
                                             target_modules=target_modules_for(model), task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(tmp / "baseline"), max_steps=steps, per_device_train_batch_size=BATCH,
                             learning_rate=2e-4, lr_scheduler_type="cosine", logging_steps=1, save_strategy="no",
                             report_to="none", use_cpu=device == "cpu", disable_tqdm=True,
                             bf16=device == "cuda")
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=default_data_collator)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens_per_second": steps * BATCH * SEQ / seconds, "peak_memory_mb": _peak_memory_mb(device),
            "seconds": seconds, "steps": trainer.state.global_step, "first_loss": losses[0], "last_loss": losses[-1]}


def run_worker(kind: str, steps: int, data: Path, quant: str, cache: Path | None = None) -> dict:
    """Run one measurement in a fresh process; with ``cache``, reuse / record results there
    (so an interrupted benchmark does not measure the same row twice)."""
    key = f"{MODEL}|{kind}|{quant}|{steps}"
    stored = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    if key in stored:
        return stored[key]
    cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(steps), "--data", str(data), "--quant", quant]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if cache:
        stored[key] = result
        cache.write_text(json.dumps(stored, indent=1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per throughput measurement")
    ap.add_argument("--sgd-steps", type=int, default=8, help="steps of the short SGD run")
    ap.add_argument("--eval-n", type=int, default=8, help="held-out SGD dialogues to score")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--cache", type=Path, help="JSON file that keeps throughput rows between runs")
    ap.add_argument("--worker")
    ap.add_argument("--data")
    ap.add_argument("--quant", default="none")
    ap.add_argument("--model", help="registry name or folder (default: the assistant's default model)")
    args = ap.parse_args()
    global MODEL
    if args.model:
        os.environ["BENCH_FINETUNE_MODEL"] = MODEL = args.model
    if not MODEL:
        from assistant.generation.models import DEFAULT_MODEL

        os.environ["BENCH_FINETUNE_MODEL"] = MODEL = DEFAULT_MODEL
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.data, args.quant)))
        return

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    train_path, eval_path = _sgd(tmp)
    md = [header("Finetuning"),
          f"Model `{MODEL}`, LoRA r={RANK} (alpha {2 * RANK}) on all linear layers, batch {BATCH} x {SEQ} tokens "
          f"(packed blocks of converted SGD dialogues), {args.steps} optimizer steps per row, fp32 base on CPU.  "
          "Tokens/s counts every input token (prompt + reply); peak memory is the process's max RSS on CPU "
          "(model load included) or max allocated on CUDA.  Load average "
          f"{os.getloadavg()[0]:.1f} when this run started; the two rows ran back to back.  "
          "The baseline computes logits at every position; "
          "`assistant finetune` only where a reply token is predicted.\n"]
    setups = [("cpu", "none")] + ([("cuda", "nf4")] if torch.cuda.is_available() else [])
    rows = []
    for device, quant in setups:
        for kind in ("assistant finetune", "Trainer + peft baseline"):
            m = run_worker(kind, args.steps, train_path, quant, args.cache)
            rows.append([kind, f"{device} {'QLoRA nf4' if quant == 'nf4' else 'LoRA fp32'}", m["steps"],
                         round(m["tokens_per_second"], 1), round(m["peak_memory_mb"]), round(m["seconds"], 1),
                         f"{m['first_loss']:.3f} → {m['last_loss']:.3f}" if m.get("first_loss") is not None
                         else "not recorded"])
    md.append(table(["trainer", "setup", "steps", "tokens/s", "peak memory MB", "seconds", "loss"], rows))
    if not torch.cuda.is_available():
        md.append("\nNo CUDA GPU here: the QLoRA-on-CUDA rows were not measured.")

    # Short CPU run, then base vs adapter on held-out SGD dialogues.
    from assistant.config import ModelConfig
    from assistant.generation.models import load_model
    from finetune.data import load_dialogues
    from finetune.evaluate import compare, format_table
    from finetune.config import TrainConfig
    from finetune.train import train

    out = tmp / "sgd-adapter"
    r = train(TrainConfig(data=str(train_path), out=str(out), base=MODEL, max_steps=args.sgd_steps,
                          batch_size=BATCH, max_length=SEQ, lora_r=RANK, lora_alpha=2 * RANK, learning_rate=5e-4,
                          eval_fraction=0.0, save_steps=10_000, logging_steps=5, progress=False))
    held = load_dialogues(eval_path).dialogues[: args.eval_n]
    lm = load_model(ModelConfig(name=MODEL, quantization="none", device="cpu", adapters=()))
    t0 = time.perf_counter()
    reports = compare(lm, held, out, max_new_tokens=args.max_new_tokens)
    eval_s = time.perf_counter() - t0
    md.append(f"\n### Base vs adapter on held-out SGD dialogues\n\n"
              f"Short CPU run: {r.global_step} steps x {BATCH} dialogues (max {SEQ} tokens, unpacked, loss on "
              f"assistant tokens only), lr 5e-4 cosine, {r.train_seconds / 60:.1f} min of training "
              f"({r.tokens_per_second:.0f} tokens/s), train loss {r.first_loss:.3f} → {r.last_loss:.3f}.  "
              f"Scored on the last assistant reply of {len(held)} held-out dialogues (split by dialogue id), "
              f"greedy, at most {args.max_new_tokens} new tokens, fp32; evaluation took {eval_s / 60:.1f} min.\n")
    md.append(format_table(reports))
    text = "\n".join(md)
    print(text)
    print(f"saved to {save('finetune', text)}")


if __name__ == "__main__":
    main()
