"""Token-by-token generation on a local transformers model.

A plain decode loop over the model's KV cache (gpt-fast style) rather than
``model.generate`` with a streamer thread: it yields each token as it comes,
stops at once when the caller's ``cancel`` event is set, and keeps every
answer token's id and log-probability (the explain and confidence features
need them).  Sampling uses transformers' own logits processors.

Knows nothing about conversations or retrieval: it takes prompt token ids.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

from ..config import GenerationConfig
from ..errors import GenerationError
from .batching import serial_here
from .cpu import give_back_freed_memory
from .kvcache import FastCache
from .lookup import DraftLength, PassCosts, PromptLookup, accept
from .models import LoadedModel
from .script_mask import ScriptMask

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass
class TokenDelta:
    """One streamed step: the new text (may be empty mid-character) and its token."""

    text: str
    token_id: int
    logprob: float


@dataclass
class GenerationResult:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    """Log-probability of each answer token under the model (before sampling transforms)."""
    finish_reason: FinishReason = "stop"
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens reused from a previous turn's KV cache (not prefilled again)."""
    time_to_first_token: float = 0.0
    total_time: float = 0.0
    forward_passes: int = 0
    """Forward passes run: one for the prompt, then one per decode step or checked draft."""
    draft_tokens: int = 0
    """Tokens proposed by prompt lookup (``GenerationConfig.lookup_tokens``)."""
    accepted_draft_tokens: int = 0
    """Proposed tokens the model agreed with (each saves one forward pass)."""

    @property
    def decode_tokens_per_second(self) -> float:
        decode_time = self.total_time - self.time_to_first_token
        n = len(self.token_ids) - 1
        return n / decode_time if n > 0 and decode_time > 0 else 0.0


def _logits_processors(settings: GenerationConfig, prompt_length: int = 0, tokenizer: Any = None) -> Any:
    """Sampling processors.  The repetition penalty counts only the answer's own tokens, not the
    prompt's: an answer grounded in the sources repeats their words, and penalising that pushes
    the model off the very text it should quote.  ``settings.scripts`` masks the tokens of other
    writing systems first (``script_mask.ScriptMask``; needs ``tokenizer``)."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if settings.scripts and tokenizer is not None:
        processors.append(ScriptMask(tokenizer, frozenset(settings.scripts)))
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty,
                                                           prompt_ignore_length=prompt_length))
    if settings.temperature > 0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_p < 1.0:
            processors.append(TopPLogitsWarper(settings.top_p))
    return processors


class Generation:
    """Iterate to stream ``TokenDelta``s; ``result`` is complete once iteration ends.

    ``prefix_cache`` (optional) is a ``PrefixCache`` whose stored KV cache is
    reused when the new prompt starts with the tokens it holds.  ``adapter``: generate
    with the lean decoder's attached adapter (``LoadedModel.retry_adapter``); its keys
    and values differ from the base's, so no prefix cache is taken or stored then.
    """

    def __init__(
        self,
        lm: LoadedModel,
        prompt_ids: Sequence[int],
        settings: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        prefix_cache: "PrefixCache | None" = None,
        adapter: bool = False,
        shared_until: int = 0,
    ) -> None:
        if not prompt_ids:
            raise GenerationError("the prompt is empty: nothing to generate from")
        room = lm.context_length - len(prompt_ids)
        if room < 1:
            raise GenerationError(
                f"the prompt has {len(prompt_ids)} tokens, more than the model's context of {lm.context_length}"
            )
        self.lm = lm
        self.prompt_ids = list(prompt_ids)
        self.settings = settings or GenerationConfig()
        self.max_new_tokens = min(self.settings.max_new_tokens, room)
        self.cancel = cancel or threading.Event()
        if adapter and (lm.fast is None or not lm.fast.has_lora):
            raise GenerationError("no adapter is attached to the lean decoder: nothing to answer again with")
        self.adapter = adapter
        self.shared_until = shared_until
        """Where the beginning conversations share ends (the system prompt: ``Prompt.shared_until``).  On the
        lean forward a cold prompt is prefilled in two passes split there, as it is when that beginning
        comes from ``lm.prefixes``: the same prompt gives the same answer whether or not it was cached
        (one pass over the whole prompt rounds differently in bf16, and greedy answers then differed)."""
        self.prefix_cache = None if adapter else prefix_cache
        self.result = GenerationResult(prompt_tokens=len(self.prompt_ids))

    def __iter__(self) -> Iterator[TokenDelta]:
        import torch

        lm, settings, result = self.lm, self.settings, self.result
        model, tokenizer = lm.model, lm.tokenizer
        device = lm.device
        processors = _logits_processors(settings, len(self.prompt_ids), tokenizer)
        generator = None
        if settings.temperature > 0:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(settings.seed if settings.seed is not None else int(time.time_ns() % 2**31))
        stop_ids = set(lm.stop_token_ids)
        repeat = settings.stop_on_repeat
        echoes = Echoes(repeat) if repeat else None  # how many newest tokens to hold back unseen
        copied = prompt_ngrams(self.prompt_ids, repeat) if repeat else frozenset()
        start = time.perf_counter()
        emitted = ""
        all_ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=device)
        fast = lm.fast
        cache_kw = cache_argument(model)
        joined: list[bool] = []  # this generation is among the batcher's decoding conversations

        def on_decoder_thread(fn: Any, *args: Any) -> Any:
            return decoder_pass(lm, fn, *args, own=bool(joined))

        def forward(ids: list[int], cache: Any, keep: int = 1) -> tuple[Any, Any]:
            """Logits (keep, vocab) after each of the last ``keep`` of ``ids``, and the grown cache."""
            if fast is not None:
                cache = cache if cache is not None else fast.new_cache(adapter=self.adapter)
                if len(ids) == 1 and joined:  # a decode step: batched with other conversations'
                    return lm.batcher.step(ids[0], cache)[None], cache
                return on_decoder_thread(fast.forward_rows, ids, cache, keep), cache
            # inference_mode is thread-local: a generator may be resumed on another
            # thread (Gradio, Starlette), so it wraps each model call, not the loop.
            with torch.inference_mode():
                out = model(input_ids=torch.tensor([ids], dtype=torch.long, device=device), use_cache=True,
                            logits_to_keep=1, **{cache_kw: cache})
            return out.logits[:, -1, :].float(), output_cache(out)

        cache, todo = (None, self.prompt_ids)
        if self.prefix_cache is not None:
            cache, todo = self.prefix_cache.take(self.prompt_ids)
            if cache is not None and (fast is not None) != isinstance(cache, FastCache):
                cache, todo = None, self.prompt_ids  # the cache of the other forward: start cold
        shared = lm.prefixes if fast is not None and not self.adapter else None
        learn = False  # a cold prefill: offer its beginning to the other conversations afterwards
        if cache is None and shared is not None:
            cache, todo = shared.take(self.prompt_ids)  # the system prompt another conversation prefilled
            learn = cache is None
        result.cached_tokens = len(self.prompt_ids) - len(todo)
        split = self.shared_until
        if fast is not None and cache is None and 0 < split < len(self.prompt_ids):
            cache = fast.new_cache(adapter=self.adapter)
            on_decoder_thread(fast.forward_rows, self.prompt_ids[:split], cache, 1)  # the shared beginning, as its own pass
            todo = self.prompt_ids[split:]
            if learn:
                shared.learn(self.prompt_ids, cache, split)
                learn = False
        past_len = len(self.prompt_ids) - len(todo)
        """Positions the cache holds that count: prompt + answer tokens before the last one chosen."""
        # Prompt lookup: only on the lean forward, and only while no other conversation decodes
        # (then the batch already shares each weight read, and a draft would hold the others up).
        drafter = PromptLookup(self.prompt_ids) if fast is not None and settings.lookup_tokens else None
        greedy = settings.temperature <= 0
        # How much of a proposal to check: what the decoder's passes cost by rows, against how often this
        # answer's drafted tokens have been the model's.  A seeded sampled answer goes by the fixed
        # estimate instead: its random draws follow the draft lengths, and measured times vary with load,
        # so the same seed gives the same answer on a busy machine and a quiet one.
        costs = fast.pass_costs if fast is not None and (greedy or settings.seed is None) else PassCosts()
        lengths = DraftLength(costs, settings.lookup_tokens) if drafter is not None else None
        # the passes run on the batcher's thread; what this thread does between them runs on one core
        threads_before = serial_here() if lm.batcher is not None else None
        try:
            while True:
                if len(result.token_ids) >= self.max_new_tokens:
                    result.finish_reason = "length"
                    break
                if self.cancel.is_set():
                    result.finish_reason = "cancelled"
                    break
                draft: list[int] = []
                proposal: list[int] = []
                alone = False  # a decode step that may draft: no other conversation decodes now
                if past_len >= len(self.prompt_ids):  # a decode step (the prompt is in the cache)
                    if lm.batcher is not None and fast is not None and not joined:
                        lm.batcher.join()
                        joined.append(True)
                    alone = drafter is not None and (not joined or lm.batcher.active <= 1)
                    if alone:
                        room = min(settings.lookup_tokens, self.max_new_tokens - len(result.token_ids) - 1,
                                   lm.context_length - past_len - len(todo))
                        proposal = drafter.draft(room)
                        draft = proposal[:lengths.choose(len(proposal))]
                inputs = todo + draft
                began = time.perf_counter()
                rows, cache = forward(inputs, cache, len(draft) + 1)
                if alone:
                    fast.pass_costs.add(len(draft) + 1, time.perf_counter() - began)
                if learn:
                    shared.learn(self.prompt_ids, cache)
                    learn = False
                result.forward_passes += 1
                result.draft_tokens += len(draft)
                base = past_len
                ended = False
                accepted_before = result.accepted_draft_tokens
                for j in range(len(draft) + 1):
                    logits = rows[j:j + 1]
                    with torch.inference_mode():
                        logprobs = torch.log_softmax(logits, dim=-1)
                        scores = processors(all_ids, logits) if len(processors) else logits
                        proposed = draft[j] if j < len(draft) else None
                        probs = None if greedy else torch.softmax(scores, dim=-1)[0].cpu()
                        next_id = accept(scores[0] if greedy else probs, proposed, generator, greedy)
                    past_len = base + len(todo) + j  # the cache up to this row's input counts
                    if not result.token_ids and result.time_to_first_token == 0.0:
                        result.time_to_first_token = time.perf_counter() - start
                    if next_id in stop_ids:
                        result.finish_reason = "stop"
                        ended = True
                        break
                    if proposed is not None and next_id == proposed:
                        result.accepted_draft_tokens += 1
                    result.token_ids.append(next_id)
                    result.logprobs.append(float(logprobs[0, next_id]))
                    if echoes is not None:
                        echoes.add(result.token_ids)
                    all_ids = torch.cat([all_ids, torch.tensor([[next_id]], device=device)], dim=1)
                    if drafter is not None:
                        drafter.append([next_id])
                    looped = loop_length(result.token_ids, repeat, copied) if repeat else 0
                    if looped:
                        # The answer started over: drop the repeat (its last ``repeat`` tokens were held
                        # back unseen; of a longer stretch said twice in a row the start may have streamed,
                        # and the stored answer holds it once).
                        del result.token_ids[-looped:], result.logprobs[-looped:]
                        result.finish_reason = "repeat"
                        ended = True
                        break
                    shown = result.token_ids[: len(result.token_ids) - (echoes.held(result.token_ids) if echoes else 0)]
                    text = tokenizer.decode(shown, skip_special_tokens=True)
                    # Hold back an incomplete multi-byte character until it is whole.
                    delta = text[len(emitted):] if shown and not text.endswith("\ufffd") else ""
                    if delta:
                        emitted = text
                    yield TokenDelta(delta, next_id, result.logprobs[-1])
                    if next_id != proposed or len(result.token_ids) >= self.max_new_tokens \
                            or self.cancel.is_set():
                        break  # the rest of the draft was not the model's (or is not wanted)
                if isinstance(cache, FastCache):
                    cache.crop(past_len)  # take back the inputs after the last row used
                if proposal and not ended:
                    if draft:
                        taken = result.accepted_draft_tokens - accepted_before
                        lengths.observe(taken, taken < len(draft))
                    else:  # not checked: was the proposal what the plain step chose?
                        lengths.observe(int(result.token_ids[-1] == proposal[0]), result.token_ids[-1] != proposal[0])
                todo = [result.token_ids[-1]] if result.token_ids else todo
                if ended:
                    break
            if echoes is not None:  # what was held back is part of the answer after all
                rest = tokenizer.decode(result.token_ids, skip_special_tokens=True)[len(emitted):]
                if rest:
                    emitted += rest
                    yield TokenDelta(rest, result.token_ids[-1], result.logprobs[-1])
        finally:
            if joined:
                lm.batcher.leave()
            if threads_before is not None:
                serial_here(threads_before)
            result.text = tokenizer.decode(result.token_ids, skip_special_tokens=True).strip()
            result.total_time = time.perf_counter() - start
            if self.prefix_cache is not None and cache is not None:
                if isinstance(cache, FastCache):
                    cache.crop(past_len)  # a stream closed mid-draft leaves unchecked positions behind
                # The cache now holds prompt + answer tokens except the last sampled one.
                held = self.prompt_ids + result.token_ids
                self.prefix_cache.store(held[:past_len], cache)
            give_back_freed_memory()

    def run(self) -> GenerationResult:
        """Generate to the end without streaming."""
        for _ in self:
            pass
        return self.result


class Echoes:
    """Which runs of up to ``n - 1`` answer tokens occurred before, so that streaming holds back only the
    newest tokens that may yet become the start of an ``n``-token repeat (``loop_length``).

    A repeat dropped later is the answer's last ``n`` tokens equal to an earlier stretch; while it grows,
    every beginning of it is a run of the newest tokens that occurred earlier.  So the tokens to hold
    are the longest such run, usually none or a word (against the fixed ``n - 1`` held before: the first
    words of an answer waited for 7 more tokens, 0.6 s of the 1.5B model on 2 cores)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.first: dict[tuple[int, ...], int] = {}  # a run of 1 .. n - 1 tokens -> where it first began

    def add(self, ids: list[int]) -> None:
        """Note the runs that end with the newest token of ``ids``."""
        end = len(ids)
        for k in range(1, min(self.n - 1, end) + 1):
            self.first.setdefault(tuple(ids[end - k:]), end - k)

    def held(self, ids: list[int]) -> int:
        """How many of the newest tokens of ``ids`` to keep unseen: the longest run ending there that
        began earlier in the answer too (0: none)."""
        end = len(ids)
        for k in range(min(self.n - 1, end - 1), 0, -1):
            start = self.first.get(tuple(ids[end - k:]))
            if start is not None and start < end - k:
                return k
        return 0


def _shift(ids: list[int], n: int) -> int:
    """How far back the last ``n`` tokens of ``ids`` occurred before, nearest first (0: they did not)."""
    if len(ids) <= n:
        return 0
    tail = ids[-n:]
    for start in range(len(ids) - n - 1, -1, -1):
        if ids[start:start + n] == tail:
            return len(ids) - n - start
    return 0


def prompt_ngrams(prompt_ids: Sequence[int], n: int) -> frozenset[tuple[int, ...]]:
    """Every run of ``n`` consecutive prompt tokens (what an answer may copy from its sources)."""
    return frozenset(tuple(prompt_ids[i:i + n]) for i in range(len(prompt_ids) - n + 1))


def loop_length(ids: list[int], n: int, copied: frozenset[tuple[int, ...]] = frozenset()) -> int:
    """How many tokens at the end of ``ids`` repeat the answer itself in a loop (0: none), to drop.

    The last ``n`` tokens occurred earlier in the answer, ``p`` tokens back.  A loop, the kind small
    models fall into, is a stretch said twice in a row: ``p <= n`` (the ``n`` overlap their earlier
    occurrence; drop ``n``), or the last ``p`` tokens equal the ``p`` before them (drop those ``p``).
    Parallel items of a list repeat a phrase without being a loop ("`.csv` with `question` and
    `answer` columns, or `.json` with `question` and `answer` fields", also when the answer translates
    the source), so a phrase of new text that recurs apart counts only on its third time (drop that
    one), and one the prompt holds (``copied``: markup such as "`` / `.`` in a list copied from a
    source) never does."""
    shift = _shift(ids, n)
    if not shift:
        return 0
    if shift <= n:
        return n
    if len(ids) >= 2 * shift and ids[-shift:] == ids[-2 * shift:-shift]:
        return shift
    if tuple(ids[-n:]) in copied:
        return 0
    return n if _shift(ids[:-shift], n) else 0


def cache_argument(model: Any) -> str:
    """Name of the KV-cache argument of ``model.forward``: ``cache`` from
    transformers 5.2x on, ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


class PrefixCache:
    """The KV cache of one conversation's last prompt + answer, for reuse.

    A follow-up turn's prompt usually starts with the previous turn's prompt
    and answer; only the new tokens need a prefill.  One per conversation
    (held by the session), never shared between conversations.
    """

    def __init__(self) -> None:
        self.token_ids: list[int] = []
        self.cache: Any = None

    def take(self, prompt_ids: list[int]) -> tuple[Any, list[int]]:
        """Return (cache or None, the prompt tokens still to prefill)."""
        n = 0
        limit = min(len(self.token_ids), len(prompt_ids) - 1)  # always prefill >= 1 token
        while n < limit and self.token_ids[n] == prompt_ids[n]:
            n += 1
        if self.cache is None or n == 0:
            self.clear()
            return None, prompt_ids
        held = self.cache.get_seq_length()
        if n < held:
            # Sliding-window layers (Gemma 3) cannot be rolled back; start cold.
            if not all(type(layer).__name__ == "DynamicLayer" for layer in getattr(self.cache, "layers", [])):
                self.clear()
                return None, prompt_ids
            self.cache.crop(n - held)  # a negative count: tokens to remove from the end
        cache, self.cache, self.token_ids = self.cache, None, []
        return cache, prompt_ids[n:]

    def store(self, token_ids: list[int], cache: Any) -> None:
        self.token_ids = list(token_ids)
        self.cache = cache

    def clear(self) -> None:
        self.token_ids, self.cache = [], None


def decoder_pass(lm: LoadedModel, fn: Any, *args: Any, own: bool = False) -> Any:
    """``fn(*args)``, a pass of the model (the lean forward's or the transformers model's over the same
    weights): on the decode batcher's thread where there is one and nothing else uses it, otherwise here
    on one core (``DecodeBatcher.run``; ``own``: the caller is one of the batcher's decoding
    conversations).  One pass at a time, so that a conversation starting meanwhile waits for one pass,
    not for a caller's whole series (Explain's)."""
    return lm.batcher.run(fn, *args, own=own) if lm.batcher is not None else fn(*args)
