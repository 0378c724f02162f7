"""Prompt-lookup drafts for speculative decoding (Saxena, 2023; llama.cpp's lookup decoding).

A grounded answer copies stretches of its sources: names, commands, whole
clauses.  So the text so far is a draft model for free: find the last few
tokens of the answer earlier in the sequence (prompt and answer) and propose
what followed them there.  The caller checks the proposal in one forward pass
(``FastDecoder.forward(..., keep=...)``) and keeps the prefix the model agrees
with; ``accept`` is the acceptance rule that keeps the output exactly the
model's own — token for token under greedy decoding, in distribution when
sampling (speculative sampling with a draft that puts all its mass on one
token: accept it with the model's probability of it, else draw from the rest).

Knows nothing about models or tokenizers: it sees token ids and probabilities.
"""

from __future__ import annotations

from typing import Any, Sequence


class PromptLookup:
    """An n-gram index over a growing token sequence that proposes continuations.

    ``draft(k)`` matches the longest suffix of the sequence (``max_ngram`` tokens
    down to ``min_ngram``) against its most recent earlier occurrence and returns
    up to ``k`` tokens that followed it; ``[]`` when nothing matches.  ``append``
    adds decoded tokens.  Index upkeep is a few dict writes per token.
    """

    def __init__(self, tokens: Sequence[int], max_ngram: int = 3, min_ngram: int = 2) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"n-gram sizes must satisfy 1 <= min_ngram <= max_ngram; got {min_ngram}, {max_ngram}")
        self.min_ngram, self.max_ngram = min_ngram, max_ngram
        self.tokens: list[int] = []
        self._next: list[dict[tuple[int, ...], int]] = [{} for _ in range(max_ngram + 1)]
        """Per n: n-gram -> where the token after its latest occurrence sits."""
        self.append(tokens)

    def append(self, tokens: Sequence[int]) -> None:
        seq = self.tokens
        for t in tokens:
            i = len(seq)  # the n-grams ending just before position i are followed by t
            for n in range(self.min_ngram, self.max_ngram + 1):
                if i >= n:
                    self._next[n][tuple(seq[i - n:i])] = i
            seq.append(int(t))

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` proposed next tokens (``[]``: no match, decode one at a time)."""
        seq = self.tokens
        if k < 1:
            return []
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if len(seq) < n:
                continue
            at = self._next[n].get(tuple(seq[-n:]))
            if at is not None:
                return seq[at:at + k]
        return []


def accept(probs: Any, proposed: int | None, generator: Any = None, greedy: bool = True) -> int:
    """The token to emit at a position whose model distribution is ``probs`` (1-D, summing to 1)
    when the draft proposed ``proposed`` there (``None``: no proposal).

    Greedy: the most likely token, so a proposal survives only when it is that token.  Sampling:
    the proposal is kept with probability ``probs[proposed]``; otherwise a token is drawn from
    ``probs`` with the proposal removed and renormalised.  The result is distributed exactly as
    ``probs`` (Leviathan et al., 2023, with a one-hot draft), so lookup never changes what the
    model would have said, only how many passes it takes.
    """
    import torch

    if greedy:
        return int(torch.argmax(probs))
    if proposed is None:
        return int(torch.multinomial(probs, 1, generator=generator)[0])
    p = float(probs[proposed])
    if float(torch.rand((), generator=generator)) < p:
        return int(proposed)
    rest = probs.clone()
    rest[proposed] = 0.0
    if float(rest.sum()) <= 0.0:  # all mass on the proposal (only reachable through rounding)
        return int(proposed)
    return int(torch.multinomial(rest / rest.sum(), 1, generator=generator)[0])


class PassCosts:
    """Seconds a decode pass takes by the number of rows it checks (1: a plain step), a running mean
    per row count.  Kept by the decoder (``FastDecoder.pass_costs``), so that its generations share
    what they have measured.  A row count not measured yet is estimated as ``1 + UNMEASURED_SLOPE *
    (rows - 1)`` times one row's cost, cheap enough that each length gets tried, but never below what
    fewer rows were measured to cost (more rows never take less time)."""

    UNMEASURED_SLOPE = 0.1
    WEIGHT = 0.2
    """Of a new measurement in the running mean."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}

    def add(self, rows: int, seconds: float) -> None:
        old = self.seconds.get(rows)
        self.seconds[rows] = seconds if old is None else old + self.WEIGHT * (seconds - old)

    def estimate(self, rows: int) -> float:
        if rows in self.seconds:
            return self.seconds[rows]
        one = self.seconds.get(1, 1.0)
        fewer = [t for r, t in self.seconds.items() if r < rows]
        return max([one * (1.0 + self.UNMEASURED_SLOPE * (rows - 1))] + fewer)


class DraftLength:
    """How many of the proposed tokens to check in the next pass: the number with the most expected
    tokens per second.

    Checking k drafted tokens is one pass over k + 1 rows.  Where that costs about what one row costs
    (GPUs; a CPU's 4-bit kernel that multiplies several rows per weight read) every proposal is worth
    checking.  On 2 AMD EPYC cores torch's 4-bit kernel costs 1.04x one row's time for 2 rows, 1.5x for
    4 and 3x for 8 (a 1536 x 8960 matrix, measured): there a long draft costs more than it wins unless
    nearly all of it is the model's.  So the length comes from two estimates: the pass time by rows
    (``PassCosts``) and ``rate``, the chance that a drafted token is the model's, learnt on this answer
    at every step where the prompt offers a draft (checked or not: the proposal is compared with the
    token the step chose).  With rate a, a k-token draft yields 1 + a + ... + a^k tokens a pass on
    average; the chosen k maximises that over the pass's estimated time (k = 0: a plain step).
    """

    PRIOR = (1.0, 1.0)
    """Drafted tokens accepted and rejected assumed before any is seen (a rate of one half)."""

    def __init__(self, costs: PassCosts, most: int) -> None:
        self.costs, self.most = costs, most
        self.accepted, self.rejected = self.PRIOR

    @property
    def rate(self) -> float:
        return self.accepted / (self.accepted + self.rejected)

    def choose(self, available: int) -> int:
        """Tokens to check out of ``available`` proposed ones (0 to ``min(available, most)``)."""
        a, best, best_k = self.rate, 0.0, 0
        gain = 1.0
        for k in range(min(available, self.most) + 1):
            if k:
                gain += a ** k
            value = gain / self.costs.estimate(k + 1)
            if value > best:
                best, best_k = value, k
        return best_k

    def observe(self, accepted: int, rejected: bool) -> None:
        """A draft's outcome: its first ``accepted`` tokens were the model's, then one was not (``rejected``)
        or the draft ended."""
        self.accepted += accepted
        self.rejected += 1.0 if rejected else 0.0
