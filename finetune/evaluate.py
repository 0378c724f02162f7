"""Held-out evaluation of a base model and its adapter on chat dialogues.

For each dialogue the *last* assistant reply is the reference: perplexity of
that reply under the model (teacher forcing), then a greedy reply generated
from everything before it, scored against the reference with ROUGE-L and
BLEU, plus distinct-1 / distinct-2 (diversity of the generated replies) and
the mean reply length.  ``compare`` runs base and adapter on the same model
object so they are measured side by side.

Word tokenisation for the text metrics is language-neutral: runs of letters
and digits, with every CJK / Thai character a token of its own (ROUGE's
default tokenizer would drop all non-ASCII text).

Knows nothing about training or the UI.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .data import Dialogue, encode, prompt_and_reference

log = logging.getLogger(__name__)

_SINGLE = r"\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_SINGLE}]|[^\W{_SINGLE}]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens; CJK and Thai characters count one each."""
    return _TOKEN.findall(text.lower())


class _WordTokenizer:
    """The interface rouge_score expects."""

    def tokenize(self, text: str) -> list[str]:
        return words(text)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over pairs."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WordTokenizer())
    if not predictions:
        return math.nan
    return sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)) / len(predictions)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu) on our word tokens, 0-100."""
    import sacrebleu

    if not predictions:
        return math.nan
    hyp = [" ".join(words(p)) for p in predictions]
    ref = [" ".join(words(r)) for r in references]
    return float(sacrebleu.corpus_bleu(hyp, [ref], tokenize="none").score)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams across the texts (0 when there are none)."""
    grams: Counter = Counter()
    for t in texts:
        w = words(t)
        grams.update(tuple(w[i: i + n]) for i in range(len(w) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


@dataclass
class EvalReport:
    """Scores of one model on one held-out set."""

    name: str
    dialogues: int
    perplexity: float
    """exp(mean negative log-likelihood per reference reply token)."""
    rouge_l: float
    bleu: float
    distinct_1: float
    distinct_2: float
    mean_reply_words: float
    reference_mean_words: float
    seconds: float
    samples: list[tuple[str, str]] = field(default_factory=list)
    """First few (generated, reference) pairs, for a look by eye."""


def reply_nll(model: Any, input_ids: list[int], labels: list[int], device: str) -> tuple[float, int]:
    """(summed negative log-likelihood, token count) over the labelled tokens."""
    import torch

    ids = torch.tensor([input_ids], device=device)
    lab = torch.tensor([labels], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()  # (seq-1, vocab)
    target = lab[0, 1:]
    keep = target != -100
    if not bool(keep.any()):
        return 0.0, 0
    nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
    return float(nll), int(keep.sum())


def evaluate(lm: Any, dialogues: Sequence[Dialogue], name: str = "model", max_new_tokens: int = 64,
             max_length: int = 1024, samples: int = 3) -> EvalReport:
    """Score a ``LoadedModel`` on dialogues (their last assistant reply is the reference)."""
    from assistant.config import GenerationConfig
    from assistant.generation.local import Generation

    t0 = time.perf_counter()
    settings = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    nll_sum, n_tok = 0.0, 0
    preds: list[str] = []
    refs: list[str] = []
    room = min(max_length, lm.context_length - max_new_tokens)
    for d in dialogues:
        enc = encode(lm.tokenizer, d, max_length, last_turn_only=True)
        nll, n = reply_nll(lm.model, enc.input_ids, enc.labels, lm.device)
        nll_sum += nll
        n_tok += n
        prompt, reference = prompt_and_reference(lm.tokenizer, d)
        if len(prompt) > room:  # very long dialogue: keep its end
            prompt = prompt[-room:]
        preds.append(Generation(lm, prompt, settings).run().text)
        refs.append(reference)
    return EvalReport(
        name=name, dialogues=len(preds),
        perplexity=math.exp(nll_sum / n_tok) if n_tok else math.nan,
        rouge_l=rouge_l(preds, refs), bleu=bleu(preds, refs),
        distinct_1=distinct_n(preds, 1), distinct_2=distinct_n(preds, 2),
        mean_reply_words=sum(len(words(p)) for p in preds) / max(1, len(preds)),
        reference_mean_words=sum(len(words(r)) for r in refs) / max(1, len(refs)),
        seconds=time.perf_counter() - t0,
        samples=list(zip(preds, refs))[:samples],
    )


def with_adapter(lm: Any, adapter: str | Path) -> Any:
    """The same ``LoadedModel`` with a LoRA adapter attached (peft)."""
    from peft import PeftModel

    from assistant.errors import ModelLoadError

    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter {adapter}: no adapter_config.json there; give a folder written by "
                             "`assistant finetune`")
    model = PeftModel.from_pretrained(lm.model, str(path))
    model.eval()
    return lm.with_model(model, adapters=(str(path),))


def compare(lm: Any, dialogues: Sequence[Dialogue], adapter: str | Path | None = None,
            **kwargs: Any) -> list[EvalReport]:
    """Base, then base + adapter (when given), on the same dialogues."""
    reports = [evaluate(lm, dialogues, name="base", **kwargs)]
    if adapter:
        reports.append(evaluate(with_adapter(lm, adapter), dialogues, name=f"adapter {Path(adapter).name}",
                                **kwargs))
    return reports


COLUMNS = ("model", "dialogues", "perplexity", "ROUGE-L", "BLEU", "distinct-1", "distinct-2",
           "mean reply words (reference)")


def report_rows(reports: Sequence[EvalReport]) -> list[list[object]]:
    return [[r.name, r.dialogues, round(r.perplexity, 2), round(r.rouge_l, 4), round(r.bleu, 2),
             round(r.distinct_1, 3), round(r.distinct_2, 3),
             f"{r.mean_reply_words:.1f} ({r.reference_mean_words:.1f})"] for r in reports]


def format_table(reports: Sequence[EvalReport]) -> str:
    """Markdown table, one row per model."""
    rows = report_rows(reports)
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    out += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
