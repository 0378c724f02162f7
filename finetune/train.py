"""LoRA / QLoRA finetuning on chat data, built on transformers' ``Trainer``.

``train(TrainConfig(...))`` reads and validates the data, loads the base model
(4-bit NF4 through bitsandbytes on CUDA = QLoRA; full precision on CPU, where
4-bit training measured slower than fp32), wraps it with a peft LoRA adapter
whose target modules are chosen per architecture, trains with loss on the
assistant's tokens only, and writes the adapter, ``metrics.json`` and a model
card (``README.md``) into ``out``.

Because the loop is transformers' own ``Trainer``, the same code runs under
``accelerate launch`` (several GPUs, DeepSpeed, FSDP) unchanged; see
finetune/README.md.

Knows nothing about the UI, prompts or retrieval: it takes chat dialogues.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from assistant.errors import ConfigError, DataFormatError, ModelLoadError

from .batches import ListDataset, make_collator, reply_loss_trainer
from .card import write_metrics, write_model_card
from .config import TrainConfig, TrainResult
from .data import Dialogue, Encoded, encode, load_dialogues, pack, split_dialogues

log = logging.getLogger(__name__)

# LoRA target modules per architecture (``config.model_type``): every linear
# layer of attention and MLP, the setting QLoRA found to match full finetuning.
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    **{t: ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
       for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
                 "phi3", "olmo", "olmo2", "granite", "smollm3")},
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
    "falcon": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "bloom": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
}


def target_modules_for(model: Any, setting: str = "auto") -> list[str] | str:
    """LoRA target modules: per architecture for ``auto``; unknown architectures get ``all-linear``."""
    if setting == "all-linear":
        return "all-linear"
    if setting != "auto":
        return [m.strip() for m in setting.split(",") if m.strip()]
    model_type = getattr(model.config, "model_type", "")
    if model_type in TARGET_MODULES:
        return list(TARGET_MODULES[model_type])
    log.info("no LoRA target list for model type %r; using all linear layers", model_type)
    return "all-linear"


def resolve_training_setup(config: TrainConfig) -> tuple[str, str]:
    """(device, quantization) actually used: QLoRA on CUDA, an unquantized base on CPU unless overridden."""
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("finetune.device is 'cuda' but torch sees no CUDA GPU; use auto or cpu")
    quantization = config.quantization
    if quantization == "auto":
        quantization = "nf4" if device == "cuda" else "none"
    return device, quantization


CHECKPOINTING_PARAMETERS = 1_000_000_000
"""``gradient_checkpointing="auto"`` turns it on for a base of at least this many parameters."""


def resolve_precision(config: TrainConfig, device: str) -> str:
    """The compute precision actually used: ``auto`` is bf16 on a CUDA GPU that has it (else fp16), and on
    a CPU bf16 where its bf16 matrix products are about as fast as float32 (AMX, AVX-512 BF16), else fp32;
    fp16 needs CUDA."""
    import torch

    precision = config.precision
    if precision == "auto":
        if device != "cuda":
            from assistant.generation.cpu import bf16_matmul_fast

            return "bf16" if bf16_matmul_fast() else "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device != "cuda":
        raise ConfigError("finetune.precision fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
    return precision


def load_base(config: TrainConfig, device: str, quantization: str,
              precision: str = "fp32") -> tuple[Any, Any, str]:
    """(model, tokenizer, source folder) of the base model, ready for peft."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.config import assistant_home
    from assistant.generation.models import resolve_source, set_chat_template

    home = Path(config.home) if config.home else assistant_home()
    source, kind, spec = resolve_source(config.base, home)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # missing files, offline hub id
        raise ModelLoadError(f"base {config.base!r}: tokenizer failed to load: {exc}") from exc
    set_chat_template(tokenizer, spec)  # the template the assistant serves this model with
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0)) if device == "cuda" else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"base {config.base!r} failed to load from {source}: {exc}") from exc
    checkpointing = resolve_checkpointing(config, sum(p.numel() for p in model.parameters()))
    if quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:  # transformers 5 renamed it (the old name warns)
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        model.enable_input_require_grads()
    model.config.use_cache = False
    return model, tokenizer, source


def resolve_checkpointing(config: TrainConfig, parameters: int) -> bool:
    """Whether activations are recomputed in the backward pass: ``auto`` for a base of a billion parameters
    or more, where keeping them costs more memory than a laptop has (``TrainConfig.gradient_checkpointing``)."""
    if config.gradient_checkpointing == "auto":
        return parameters >= CHECKPOINTING_PARAMETERS
    return bool(config.gradient_checkpointing)


def load_data(config: TrainConfig) -> tuple[list[Dialogue], list[Dialogue], int]:
    """(train, eval, skipped lines): the dialogues read and validated (a bad line is reported with its number
    before any model is loaded), eval split off unless ``eval_data`` is given."""
    loaded = load_dialogues(config.data, skip_invalid=config.skip_invalid)
    skipped = len(loaded.skipped)
    if config.eval_data:
        ev = load_dialogues(config.eval_data, skip_invalid=config.skip_invalid)
        skipped += len(ev.skipped)
        return list(loaded.dialogues), list(ev.dialogues), skipped
    train_d, eval_d = split_dialogues(loaded.dialogues, config.eval_fraction, config.seed)
    return list(train_d), list(eval_d), skipped


def build_datasets(config: TrainConfig, tokenizer: Any,
                   data: tuple[list[Dialogue], list[Dialogue], int] | None = None
                   ) -> tuple[list[Encoded], list[Encoded], int]:
    """(train, eval, skipped lines): validated (``load_data``, unless already ``data``), tokenised, optionally
    packed."""
    train_d, eval_d, skipped = data if data is not None else load_data(config)

    def tokenise(ds: Sequence[Dialogue]) -> list[Encoded]:
        out = [encode(tokenizer, d, config.max_length) for d in ds]
        kept = [e for e in out if e.trained_tokens > 0]
        if len(kept) < len(out):
            log.warning("%d of %d dialogues dropped: their first assistant reply ends beyond max_length=%d "
                        "(raise --max-length to keep them)", len(out) - len(kept), len(out), config.max_length)
        return kept

    train_e, eval_e = tokenise(train_d), tokenise(eval_d)
    if not train_e:
        raise DataFormatError(f"{config.data}: no example keeps an assistant token within max_length="
                              f"{config.max_length}; raise max_length")
    if config.packing:
        train_e = pack(train_e, config.max_length)
        eval_e = pack(eval_e, config.max_length)
    return train_e, eval_e, skipped


def _callbacks(config: TrainConfig) -> list[Any]:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """tqdm bar (it shows time left) with loss and tokens/s; records the start step."""

        def __init__(self) -> None:
            self.bar: Any = None
            self.start_step = 0
            self.t0 = 0.0
            self.tokens0 = 0
            self.loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.start_step = state.global_step
            self.t0 = time.perf_counter()
            self.tokens0 = state.num_input_tokens_seen
            if config.progress and state.is_world_process_zero:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="finetune",
                                dynamic_ncols=True, file=sys.stderr)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                elapsed = time.perf_counter() - self.t0
                tps = (state.num_input_tokens_seen - self.tokens0) / elapsed if elapsed > 0 else 0.0
                post = {"tok/s": f"{tps:.0f}"}
                if self.loss is not None:
                    post["loss"] = f"{self.loss:.3f}"
                self.bar.set_postfix(post, refresh=False)
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
            if logs and "eval_loss" in logs:
                log.info("step %d: eval loss %.4f", state.global_step, logs["eval_loss"])

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    cbs: list[Any] = [Progress()]
    if config.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        cbs.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    return cbs


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if platform.system() == "Darwin" else rss / 1024


def train(config: TrainConfig) -> TrainResult:
    """Run one finetuning job; returns its ``TrainResult`` (also in ``out/metrics.json``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback, ProgressCallback, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    ckpt_dir = out / "checkpoints"
    resume_from: str | None = None
    if config.resume:
        if isinstance(config.resume, str):
            resume_from = config.resume
            if not Path(resume_from).is_dir():
                raise ConfigError(f"finetune.resume: checkpoint folder {resume_from} does not exist")
        else:
            resume_from = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
            if resume_from is None:
                raise ConfigError(f"finetune.resume: no checkpoint in {ckpt_dir}; run without --resume first")
    set_seed(config.seed)
    device, quantization = resolve_training_setup(config)
    precision = resolve_precision(config, device)
    data = load_data(config)  # a missing or malformed file is refused before minutes of model loading
    model, tokenizer, source = load_base(config, device, quantization, precision)
    checkpointing = resolve_checkpointing(config, sum(p.numel() for p in model.parameters()))  # as load_base did
    train_e, eval_e, skipped = build_datasets(config, tokenizer, data)
    if skipped:
        log.warning("skipped %d invalid line(s)", skipped)

    if config.init_adapter:
        from peft import PeftModel

        if not (Path(config.init_adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"finetune.init_adapter: {config.init_adapter} has no adapter_config.json")
        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
        lora = model.peft_config["default"]
    else:
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=target_modules_for(model, config.target_modules), bias="none",
                          task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    lora.base_model_name_or_path = config.base  # the name the user gave, not a cache folder of this machine
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d on %s: %d trainable of %d parameters (%s, %s, %s%s)", lora.r,
             lora.target_modules, trainable, total, device, quantization, precision,
             ", gradient checkpointing" if checkpointing else "")

    has_eval = bool(eval_e)
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup if config.warmup < 1 else int(config.warmup),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=bool(config.early_stopping_patience and has_eval),
        metric_for_best_model="eval_loss" if config.early_stopping_patience and has_eval else None,
        greater_is_better=False if config.early_stopping_patience and has_eval else None,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",  # autocast; on CPU too
        fp16=precision == "fp16",
        report_to="none",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_pin_memory=device == "cuda",
    )
    callbacks = _callbacks(config)
    trainer = reply_loss_trainer()(model=model, args=args, train_dataset=ListDataset(train_e),
                      eval_dataset=ListDataset(eval_e) if has_eval else None,
                      data_collator=make_collator(tokenizer.pad_token_id), callbacks=callbacks)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # our bar replaces its printed dicts
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - t0
    state = trainer.state
    start_step = callbacks[0].start_step
    tokens = state.num_input_tokens_seen - callbacks[0].tokens0

    losses = [(int(h["step"]), float(h["loss"])) for h in state.log_history if "loss" in h]
    evals = [(int(h["step"]), float(h["eval_loss"])) for h in state.log_history if "eval_loss" in h]
    eval_loss = None
    if has_eval:  # of the adapter being saved (the best one when early stopping)
        eval_loss = float(trainer.evaluate()["eval_loss"])
    result = TrainResult(
        out=str(out), base=config.base, quantization=quantization, device=device,
        global_step=state.global_step, start_step=start_step,
        train_examples=len(train_e), eval_examples=len(eval_e),
        trained_tokens_per_epoch=sum(e.trained_tokens for e in train_e),
        first_loss=losses[0][1] if losses else math.nan, last_loss=losses[-1][1] if losses else math.nan,
        eval_loss=eval_loss, train_seconds=seconds,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        peak_memory_mb=_peak_memory_mb(device), trainable_parameters=trainable, total_parameters=total,
        stopped_early=bool(config.early_stopping_patience) and state.global_step < state.max_steps,
        loss_history=losses, eval_history=evals, skipped_lines=skipped, precision=precision,
        gradient_checkpointing=checkpointing, model=trainer.model,
    )
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        write_metrics(out, config, result, source, skipped)
        write_model_card(out, config, result)
    return result
