"""What a finetuning run writes beside its adapter: ``metrics.json`` (the
result and the full settings) and a short model card ``README.md`` (base, data,
settings, losses, time, how to load and rebuild it).

Knows nothing about training itself; ``finetune.train`` calls it at the end.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrainConfig, TrainResult


def write_metrics(out: Path, config: TrainConfig, result: TrainResult, source: str, skipped: int) -> Path:
    path = out / "metrics.json"
    data = {"result": result.to_dict(), "config": asdict(config), "base_source": source,
            "skipped_invalid_lines": skipped}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


def write_model_card(out: Path, config: TrainConfig, result: TrainResult, extra: str = "") -> Path:
    """A short model card beside the adapter: base, data, settings, results, how to load and rebuild."""
    eval_line = f"{result.eval_loss:.4f}" if result.eval_loss is not None else "n/a (no eval data)"
    card = f"""# LoRA adapter for `{config.base}`

Written by `assistant finetune` (peft LoRA{' on a 4-bit NF4 base (QLoRA)' if result.quantization == 'nf4' else ''}).

| | |
|---|---|
| base model | `{config.base}` ({result.quantization}, {result.precision} compute{', gradient checkpointing' if result.gradient_checkpointing else ''}, trained on {result.device}) |
| data | `{config.data}`{f" (eval: `{config.eval_data}`)" if config.eval_data else ''} |
| examples | {result.train_examples} train, {result.eval_examples} eval; {result.trained_tokens_per_epoch} assistant tokens per epoch |
| LoRA | {f"continued from `{config.init_adapter}` (its rank and targets)" if config.init_adapter else f"r={config.lora_r}, alpha={config.lora_alpha:g}, dropout={config.lora_dropout:g}, targets `{config.target_modules}`"} |
| schedule | {result.global_step} steps, batch {config.batch_size} x {config.grad_accum}, lr {config.learning_rate:g} cosine, warmup {config.warmup:g}, max length {config.max_length}{', packed' if config.packing else ''} |
| loss | train {result.first_loss:.4f} → {result.last_loss:.4f}; eval {eval_line} |
| time | {result.train_seconds / 60:.1f} min, {result.tokens_per_second:.0f} tokens/s, peak memory {result.peak_memory_mb:.0f} MB |

Loss is taken on the assistant's replies only.  Use it:

    assistant chat --model {config.base} --adapter {out}

Rebuild it:

    {config.command or '(command not recorded)'}
{extra}"""
    path = out / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
