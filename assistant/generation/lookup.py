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
