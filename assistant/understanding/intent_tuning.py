"""Fine-tuning the sentence embedder on the intents' own examples (opt-in).

The intent classifier normally reads a frozen embedder (the one retrieval
uses).  With many intents and many examples per intent (CLINC150: 150
intents, 100 examples each) a copy of the embedder's transformer, fine-tuned
for a couple of epochs to put each example near its intent, separates the
intents better and leaves messages of no intent further from all of them:
on CLINC150 (trained on its 150 intents) the in-scope accuracy without
threshold goes from 0.960 to 0.965, and at the default threshold rule, chosen
on ``val``, test in-scope accuracy / out-of-scope recall from 0.935 / 0.878 to
0.954 / 0.861 (``bench/understanding.py``).  On the small shipped intents
file (short examples in 21 languages, which the English-only default embedder
reads poorly) it changed little when measured with 439 examples
(cross-validated in-scope accuracy 0.560 -> 0.579, out-of-scope recall 0.933 ->
0.900) for 120 s of training instead of 14.  So it is off by default
(``TrainConfig.encoder_epochs``).

The objective is a cosine-softmax classifier: mean-pooled, L2-normalised
embeddings against one learnt unit vector per label (started at the label's
mean embedding), scaled by ``SCALE``; the out-of-scope label, when the data
has examples of it, is one more label.  Only plain sentence-transformers
models of a transformer, mean pooling and an optional normalisation can be
tuned (all-MiniLM-L6-v2 and most others).  The tuned weights are saved as
safetensors (no pickle) next to the classifier and loaded onto a copy of the
same base embedder.

Knows nothing about TF-IDF, calibration or routing.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.embedding import SentenceTransformerEmbedder

from ..errors import ConfigError, ModelLoadError
from .intent_encoder import mean_pool, mean_pooled_transformer

log = logging.getLogger(__name__)

SCALE = 20.0
"""Inverse temperature of the cosine-softmax objective."""
WEIGHTS_FILE = "encoder.safetensors"


@dataclass(frozen=True)
class TuningConfig:
    epochs: int = 2
    lr: float = 5e-5
    head_lr: float = 1e-2
    batch_size: int = 32
    warmup: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0


class TunedEmbedder(SentenceTransformerEmbedder):
    """A fine-tuned copy of a sentence-transformers embedder; same name and dimension as its base."""

    tuned = True


def _copy(embedder: Any) -> TunedEmbedder:
    found = mean_pooled_transformer(embedder)
    if found is None:
        raise ConfigError(f"intent encoder tuning needs a sentence-transformers model of a transformer with mean "
                          f"pooling; {getattr(embedder, 'name', type(embedder).__name__)!r} is not one "
                          f"(set encoder_epochs to 0)")
    return TunedEmbedder(model=copy.deepcopy(found[0]), name=embedder.name, dimension=int(embedder.dimension),
                         languages=tuple(getattr(embedder, "languages", ("*",))))


def tune(embedder: Any, texts: Sequence[str], y: np.ndarray, config: TuningConfig | None = None) -> TunedEmbedder:
    """A copy of ``embedder`` fine-tuned so that ``texts`` sit near their label ``y`` (label indices)."""
    import torch

    config = config or TuningConfig()
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"intent encoder tuning needs epochs >= 1 and batch_size >= 1; got {config}")
    texts = list(texts)
    y = np.asarray(y)
    if len(texts) != len(y) or not texts:
        raise ValueError(f"tune: {len(texts)} texts but {len(y)} labels")
    tuned = _copy(embedder)
    transformer = tuned.model[0]
    model, tokenizer = transformer.auto_model, transformer.tokenizer
    max_length = int(getattr(tuned.model, "max_seq_length", None) or 256)
    n_labels = int(y.max()) + 1
    start = time.perf_counter()

    def embed(batch: list[str]) -> "torch.Tensor":
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        return mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])  # (b, dim)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        labels = torch.as_tensor(y, dtype=torch.long)
        with torch.no_grad():
            model.eval()
            first = torch.cat([embed(texts[i:i + 128]) for i in range(0, len(texts), 128)])
            centers = torch.zeros(n_labels, first.shape[1])
            centers.index_add_(0, labels, first)
        head = torch.nn.Parameter(torch.nn.functional.normalize(centers + 1e-6, dim=-1))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW([{"params": params, "lr": config.lr}, {"params": [head], "lr": config.head_lr}],
                                      weight_decay=config.weight_decay)
        steps = config.epochs * -(-len(texts) // config.batch_size)
        warm = max(1, int(config.warmup * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps))
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(texts))
            for i in range(0, len(texts), config.batch_size):
                batch = order[i:i + config.batch_size]
                logits = SCALE * embed([texts[j] for j in batch]) @ torch.nn.functional.normalize(head, dim=-1).T
                loss = torch.nn.functional.cross_entropy(logits, labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info("intent encoder tuned on %d examples, %d labels, %d steps in %.0fs (last loss %.3f)",
             len(texts), n_labels, steps, time.perf_counter() - start, float(loss.detach()))
    return tuned


def save(tuned: TunedEmbedder, folder: str | Path) -> Path:
    """Write the tuned transformer's weights to ``folder/encoder.safetensors``."""
    from safetensors.torch import save_file

    path = Path(folder) / WEIGHTS_FILE
    state = {k: v.detach().contiguous() for k, v in tuned.model[0].auto_model.state_dict().items()}
    save_file(state, str(path))
    return path


def load(base: Any, folder: str | Path) -> TunedEmbedder:
    """A copy of ``base`` with the tuned weights of ``folder/encoder.safetensors``."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"intent model in {folder}: {WEIGHTS_FILE} missing; retrain with: assistant intents train")
    tuned = _copy(base)
    try:
        state = load_file(str(path))
        tuned.model[0].auto_model.load_state_dict(state, strict=True)
    except Exception as exc:  # a truncated or foreign file: one clear error, the caller retrains
        raise ModelLoadError(f"intent model in {folder}: {WEIGHTS_FILE} is unreadable or does not fit "
                             f"{getattr(base, 'name', '?')!r} ({exc}); retrain with: assistant intents train") from exc
    tuned.model.eval()
    return tuned
