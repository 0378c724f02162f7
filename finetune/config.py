"""What a finetuning run is asked for and what it produced: ``TrainConfig`` (checked when built) and
``TrainResult`` (also written to ``metrics.json``).

Shared by the run (``train``), its model card (``card``) and the command line; it trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from assistant.errors import ConfigError
from assistant.generation.registry import DEFAULT_MODEL

TrainQuantization = Literal["auto", "nf4", "none"]
TRAIN_QUANTIZATIONS = ("auto", "nf4", "none")
TrainPrecision = Literal["auto", "fp32", "bf16", "fp16"]
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything one finetuning run needs.  Defaults suit the default model on a laptop CPU."""

    data: str
    """JSONL training data (OpenAI / ShareGPT / Alpaca / app export; see finetune/data.py)."""
    out: str
    """Folder the adapter, metrics.json, README.md and checkpoints/ are written to."""
    base: str = DEFAULT_MODEL
    """Base model: registry name, Hugging Face id, model folder or .gguf file.  The default is the model the
    assistant serves by default, so that the adapter loads on it (``assistant finetune`` takes the model the
    assistant is configured to serve: ``ASSISTANT_MODEL`` or the config file)."""
    eval_data: str | None = None
    """Held-out JSONL for eval loss; ``None`` splits ``eval_fraction`` off ``data``."""
    eval_fraction: float = 0.05
    """Share of ``data`` held out for eval loss when ``eval_data`` is not given (0 disables eval)."""
    skip_invalid: bool = False
    """Drop invalid lines (and log how many) instead of refusing the file."""
    quantization: TrainQuantization = "auto"
    """``nf4``: 4-bit NF4 base (QLoRA); ``none``: full-precision base; ``auto``: nf4 on CUDA, none on CPU."""
    precision: TrainPrecision = "auto"
    """Compute precision of the frozen base: ``auto`` is bf16 (or fp16) on CUDA, and on a CPU bf16 where it
    multiplies bf16 matrices about as fast as float32 (AVX-512 BF16 / AMX; ``cpu.bf16_matmul_fast``), else
    fp32.  ``bf16`` on CPU keeps the base in bfloat16 under autocast (the LoRA weights stay fp32): about three
    times as fast as fp32 where the CPU has bf16 instructions (measured on Qwen2.5-1.5B) and half the memory;
    on an AVX2-only CPU many times slower."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` picks CUDA when present (under ``accelerate launch``, accelerate places the model)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input, in [0, 1)."""
    init_adapter: str | None = None
    """Start from this LoRA adapter (a folder written by ``assistant finetune``) and train it further;
    its rank and target modules are kept, so ``lora_r`` / ``target_modules`` do not apply."""
    target_modules: str = "auto"
    """``auto`` (per architecture, see train.TARGET_MODULES), ``all-linear``, or comma-separated module names."""
    max_length: int = 512
    """Tokens per example (longer dialogues are cut) or per packed block."""
    packing: bool = False
    """Concatenate examples into full ``max_length`` blocks (faster; examples attend across boundaries)."""
    epochs: float = 1.0
    """Passes over the data (ignored when ``max_steps`` > 0)."""
    max_steps: int = 0
    """Optimizer steps to run; 0 means use ``epochs``."""
    batch_size: int = 4
    """Examples per device per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum x devices)."""
    learning_rate: float = 2e-4
    warmup: float = 0.05
    """Warmup: a fraction of all steps if < 1, else a number of steps; then a cosine decay."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    """Gradient clipping (0 disables)."""
    eval_steps: int = 50
    """Evaluate every this many steps (when there is eval data)."""
    save_steps: int = 50
    """Write a checkpoint every this many steps into ``out/checkpoints``."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints."""
    early_stopping_patience: int = 0
    """Stop after this many evaluations without a better eval loss (0: off); keeps the best adapter."""
    logging_steps: int = 10
    seed: int = 42
    resume: bool | str = False
    """``True``: continue from the last checkpoint in ``out/checkpoints``; a path: that checkpoint."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute each layer's activations in the backward pass instead of keeping them: less memory, more
    compute.  ``auto``: on for a base of a billion parameters or more (Qwen2.5-1.5B, batch 4 x 512 tokens,
    bf16 on 2 CPU cores: peak resident memory 18.8 GB without, 9.6 GB with, 27% fewer tokens/s), off below."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    progress: bool = True
    """Show a progress bar (loss, tokens/s, time left)."""
    home: str | None = None
    """Assistant data folder for the model cache (default: ASSISTANT_HOME)."""
    command: str = ""
    """The command line that started the run, recorded in the model card."""

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> None:
            raise ConfigError(f"finetune.{name} {rule}; got {getattr(self, name)!r}")

        if not self.data:
            bad("data", "must name a JSONL file")
        if not self.out:
            bad("out", "must name an output folder")
        if self.quantization not in TRAIN_QUANTIZATIONS:
            bad("quantization", f"must be one of {TRAIN_QUANTIZATIONS}")
        if self.precision not in TRAIN_PRECISIONS:
            bad("precision", f"must be one of {TRAIN_PRECISIONS}")
        if self.device not in ("auto", "cpu", "cuda"):
            bad("device", "must be auto, cpu or cuda")
        if self.gradient_checkpointing not in (True, False, "auto"):
            bad("gradient_checkpointing", "must be true, false or auto")
        if not isinstance(self.lora_r, int) or self.lora_r < 1:
            bad("lora_r", "must be a whole number >= 1")
        if self.lora_alpha <= 0:
            bad("lora_alpha", "must be > 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            bad("lora_dropout", "must be in [0, 1)")
        if self.max_length < 16:
            bad("max_length", "must be >= 16")
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1")
        if self.grad_accum < 1:
            bad("grad_accum", "must be >= 1")
        if self.learning_rate <= 0:
            bad("learning_rate", "must be > 0")
        if self.warmup < 0:
            bad("warmup", "must be >= 0 (a fraction < 1 or a number of steps)")
        if self.max_grad_norm < 0:
            bad("max_grad_norm", "must be >= 0")
        if self.max_steps < 0:
            bad("max_steps", "must be >= 0 (0: use epochs)")
        if self.max_steps == 0 and self.epochs <= 0:
            bad("epochs", "must be > 0 when max_steps is 0")
        if not 0.0 <= self.eval_fraction < 1.0:
            bad("eval_fraction", "must be in [0, 1)")
        for name in ("eval_steps", "save_steps", "logging_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if self.early_stopping_patience < 0:
            bad("early_stopping_patience", "must be >= 0")
        if self.early_stopping_patience and not (self.eval_data or self.eval_fraction > 0):
            bad("early_stopping_patience", "needs eval data: set eval_data or eval_fraction > 0")
        if self.early_stopping_patience and self.save_steps % self.eval_steps:
            bad("save_steps", f"must be a multiple of eval_steps ({self.eval_steps}) when early stopping is on")
        if self.threads < 0:
            bad("threads", "must be >= 0")


@dataclass
class TrainResult:
    """What a run produced; also written to ``out/metrics.json``."""

    out: str
    base: str
    quantization: str
    device: str
    global_step: int
    start_step: int
    """Step the run started from (> 0 after ``resume``)."""
    train_examples: int
    eval_examples: int
    trained_tokens_per_epoch: int
    """Assistant tokens (the ones that carry loss) in one pass over the training set."""
    first_loss: float
    last_loss: float
    eval_loss: float | None
    train_seconds: float
    tokens_per_second: float
    """Input tokens (prompt + reply, padding excluded) processed per second of training."""
    peak_memory_mb: float
    trainable_parameters: int
    total_parameters: int
    stopped_early: bool = False
    skipped_lines: int = 0
    """Invalid data lines dropped under ``skip_invalid``."""
    precision: str = "fp32"
    """Compute precision the base ran in (``TrainConfig.precision`` resolved)."""
    gradient_checkpointing: bool = False
    """Whether activations were recomputed (``TrainConfig.gradient_checkpointing`` resolved)."""
    model: Any = field(default=None, repr=False, compare=False)
    """The trained peft model, still in memory (not written to metrics.json)."""

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    eval_history: list[tuple[int, float]] = field(default_factory=list)
