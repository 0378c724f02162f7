"""Log-probabilities of a given answer after a prompt (teacher forcing), for the engine's checks (the
support check: ``turn_checks.support_low``) and Explain's passes: the transformers model in one pass, or
the lean forward with the prompt's shared prefix taken from its cache (``score_answer``).

Knows nothing about conversations: it takes token ids.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import GenerationError
from .local import decoder_pass
from .models import LoadedModel


def score_continuation(lm: LoadedModel, prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> list[float]:
    """Log-probability of each answer token given the prompt (teacher forcing), one forward pass."""
    import torch

    if not answer_ids:
        return []
    ids = torch.tensor([list(prompt_ids) + list(answer_ids)], dtype=torch.long, device=lm.device)
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0]  # (seq, vocab)
        return token_logprobs(logits[len(prompt_ids) - 1: -1], answer_ids)


LOGPROB_ROWS = 16
"""Rows of logits turned into log-probabilities at a time.  A whole answer's at once made float32 copies of
(answer, vocab), about 100 MB each for 96 tokens of Gemma 3's 262k-token vocabulary: taken 16 rows at a time,
Explain's peak in a Gemma server fell by about 220 MB (``bench/results/memory.md``)."""


def token_logprobs(rows: Any, answer_ids: Sequence[int]) -> list[float]:
    """Log-probability of ``answer_ids[i]`` under the logits ``rows[i]`` ((answer, vocab)), ``LOGPROB_ROWS``
    rows at a time."""
    import torch

    target = torch.as_tensor(list(answer_ids), dtype=torch.long, device=rows.device)
    out = []
    for start in range(0, len(target), LOGPROB_ROWS):
        part = rows[start:start + LOGPROB_ROWS].float()
        picked = part.gather(1, target[start:start + LOGPROB_ROWS, None])[:, 0]
        out.append(picked - torch.logsumexp(part, dim=-1))
    return torch.cat(out).tolist() if out else []


def score_answer(lm: LoadedModel, prompt_ids: Sequence[int], answer_ids: Sequence[int],
                 adapter: bool = False) -> list[float]:
    """``score_continuation`` for the engine's checks, as cheap as the lean forward makes it: the prompt's
    beginning another conversation already prefilled (``lm.prefixes``: the system prompt) is taken from
    its cache, and the rest and the answer go through in one pass.  The same numbers as
    ``score_continuation`` up to the lean forward's rounding.  ``adapter``: with the lean decoder's
    attached adapter (``LoadedModel.retry_adapter``), the whole prompt in that pass (the shared
    prefixes hold the base model's keys)."""
    import torch

    if not answer_ids:
        return []
    fast = lm.fast
    if adapter and (fast is None or not fast.has_lora):
        raise GenerationError("no adapter is attached to the lean decoder: nothing to score with")
    if fast is None:
        return score_continuation(lm, prompt_ids, answer_ids)
    if adapter:
        cache, todo = fast.new_cache(adapter=True), list(prompt_ids)
    else:
        cache, todo = lm.prefixes.take(prompt_ids) if lm.prefixes is not None else (None, list(prompt_ids))
    cache = cache if cache is not None else fast.new_cache()
    ids = list(todo) + list(answer_ids)
    rows = decoder_pass(lm, fast.forward_rows, ids, cache, len(answer_ids) + 1)[:-1]  # (answer, vocab)
    with torch.inference_mode():
        return token_logprobs(rows, answer_ids)
