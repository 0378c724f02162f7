import threading

import pytest
import torch

from assistant.config import GenerationConfig
from assistant.errors import ConfigError, GenerationError
from assistant.generation.local import Generation, PrefixCache
from assistant.generation.scoring import score_continuation


def _prompt(lm, text="How do refunds work?"):
    return lm.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True)["input_ids"]


def test_streamed_text_equals_final_text_and_logprobs_match_teacher_forcing(tiny_lm):
    ids = _prompt(tiny_lm)
    gen = Generation(tiny_lm, ids, GenerationConfig(max_new_tokens=12, repetition_penalty=1.0))
    streamed = "".join(d.text for d in gen)
    result = gen.result
    assert len(result.token_ids) == len(result.logprobs) > 0
    assert streamed.strip() == result.text
    # The kept log-probabilities are the model's own: re-scoring the answer gives the same numbers.
    rescored = score_continuation(tiny_lm, ids, result.token_ids)
    assert rescored == pytest.approx(result.logprobs, abs=1e-4)


def test_cancel_stops_mid_stream(tiny_lm):
    cancel = threading.Event()
    gen = Generation(tiny_lm, _prompt(tiny_lm), GenerationConfig(max_new_tokens=50), cancel=cancel)
    seen = 0
    for _ in gen:
        seen += 1
        if seen == 3:
            cancel.set()
    assert gen.result.finish_reason == "cancelled"
    assert len(gen.result.token_ids) == 3


def test_max_new_tokens_bounds_the_answer(tiny_lm):
    gen = Generation(tiny_lm, _prompt(tiny_lm), GenerationConfig(max_new_tokens=5, repetition_penalty=1.0))
    result = gen.run()
    assert len(result.token_ids) <= 5
    if len(result.token_ids) == 5:
        assert result.finish_reason == "length"


def test_sampling_with_seed_is_reproducible(tiny_lm):
    settings = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    a = Generation(tiny_lm, _prompt(tiny_lm), settings).run().token_ids
    b = Generation(tiny_lm, _prompt(tiny_lm), settings).run().token_ids
    assert a == b


@pytest.mark.parametrize("field,value,match", [
    ("temperature", -1, "temperature"),
    ("temperature", 5, "temperature"),
    ("top_p", 0, "top_p"),
    ("max_new_tokens", 0, "max_new_tokens"),
    ("repetition_penalty", 0.5, "repetition_penalty"),
    ("stop_on_repeat", 1, "stop_on_repeat"),
    ("stop_on_repeat", True, "stop_on_repeat"),
])
def test_invalid_sampling_settings_are_rejected_clearly(field, value, match):
    with pytest.raises(ConfigError, match=match):
        GenerationConfig(**{field: value})


def test_prompt_longer_than_context_is_refused(tiny_lm):
    with pytest.raises(GenerationError, match="context"):
        Generation(tiny_lm, [5] * (tiny_lm.context_length + 1))


def test_prefix_cache_reuse_gives_identical_tokens_and_skips_prefill(tiny_lm):
    settings = GenerationConfig(max_new_tokens=6, repetition_penalty=1.0)
    first = _prompt(tiny_lm)
    cache = PrefixCache()
    r1 = Generation(tiny_lm, first, settings, prefix_cache=cache).run()
    follow = first + r1.token_ids + _prompt(tiny_lm, "And how long does it take?")
    warm = Generation(tiny_lm, follow, settings, prefix_cache=cache).run()
    cold = Generation(tiny_lm, follow, settings).run()
    assert warm.token_ids == cold.token_ids
    assert warm.cached_tokens >= len(first)
    assert warm.logprobs == pytest.approx(cold.logprobs, abs=1e-4)


def test_a_stream_can_be_resumed_on_another_thread(tiny_lm):
    """Gradio and Starlette resume a generator on different worker threads."""
    from concurrent.futures import ThreadPoolExecutor

    gen = Generation(tiny_lm, _prompt(tiny_lm), GenerationConfig(max_new_tokens=6, repetition_penalty=1.2))
    it = iter(gen)
    steps = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(6):
            try:
                steps.append(pool.submit(next, it).result())
            except StopIteration:
                break
    cold = Generation(tiny_lm, _prompt(tiny_lm), GenerationConfig(max_new_tokens=6, repetition_penalty=1.2)).run()
    assert [d.token_id for d in steps] == cold.token_ids[: len(steps)]


def test_repetition_penalty_spares_the_prompt(tiny_lm):
    """Quoting a source is what a grounded answer does: only the answer's own earlier tokens
    are penalised, the prompt's are not."""
    from assistant.generation.local import _logits_processors

    processors = _logits_processors(GenerationConfig(repetition_penalty=2.0), prompt_length=3)
    ids = torch.tensor([[5, 6, 7, 8]])  # 5, 6, 7: prompt; 8: generated
    logits = torch.full((1, 20), 4.0)
    out = processors(ids, logits.clone())
    assert out[0, 5] == out[0, 7] == 4.0  # prompt tokens untouched
    assert out[0, 8] == 2.0  # the answer's own token penalised
    # a greedy answer copies a prompt phrase as readily as with no penalty at all
    prompt = tiny_lm.tokenizer("refunds refunds refunds refunds refunds", add_special_tokens=False)["input_ids"]
    plain = Generation(tiny_lm, prompt, GenerationConfig(max_new_tokens=1, repetition_penalty=1.0)).run()
    spared = Generation(tiny_lm, prompt, GenerationConfig(max_new_tokens=1, repetition_penalty=3.0)).run()
    assert spared.token_ids == plain.token_ids


def test_an_answer_that_starts_over_is_cut_before_the_repeat(tiny_lm):
    """Small models fall into loops; the answer ends where it starts repeating itself, and the
    repeated tokens are never streamed (streaming runs stop_on_repeat - 1 tokens behind)."""
    from assistant.generation.local import loop_length, prompt_ngrams

    prompt = _prompt(tiny_lm)
    free = Generation(tiny_lm, prompt, GenerationConfig(max_new_tokens=80, stop_on_repeat=0)).run()
    n = 4
    copied = prompt_ngrams(prompt, n)
    first = next(t for t in range(n, len(free.token_ids) + 1)
                 if loop_length(free.token_ids[:t], n, copied))  # greedy loops here
    dropped = loop_length(free.token_ids[:first], n, copied)
    assert dropped == n  # the tiny model's loop is of its own text: cut where it starts over
    gen = Generation(tiny_lm, prompt, GenerationConfig(max_new_tokens=80, stop_on_repeat=n))
    streamed = "".join(d.text for d in gen)
    cut = gen.result
    assert cut.finish_reason == "repeat"
    assert cut.token_ids == free.token_ids[: first - n]  # everything before the repeated stretch
    assert not any(loop_length(cut.token_ids[:t], n, copied) for t in range(1, len(cut.token_ids) + 1))
    assert streamed.strip() == cut.text and len(cut.logprobs) == len(cut.token_ids)
    # without a repeat, holding back changes nothing: the same answer, all of it streamed
    short = GenerationConfig(max_new_tokens=first - 1, stop_on_repeat=n)
    held = Generation(tiny_lm, prompt, short)
    assert "".join(d.text for d in held).strip() == held.result.text
    assert held.result.token_ids == free.token_ids[: first - 1] and held.result.finish_reason == "length"


def test_streaming_holds_back_only_what_may_start_a_repeat(tiny_lm):
    """The first words of an answer stream at once (they occurred nowhere before), and a run of tokens
    that occurred earlier waits until it either breaks off or is dropped as a repeat."""
    from assistant.generation.local import Echoes

    echoes, ids, held = Echoes(4), [], []
    for token in [5, 6, 7, 5, 6, 9, 5, 6, 7]:
        ids.append(token)
        echoes.add(ids)
        held.append(echoes.held(ids))
    assert held == [0, 0, 0, 1, 2, 0, 1, 2, 3]  # "5 6 7" again: all three held, and n = 4 caps at 3
    prompt = _prompt(tiny_lm)

    def tokens_before_text(settings):
        for i, delta in enumerate(Generation(tiny_lm, prompt, settings)):
            if delta.text:
                return i
        return None

    plain = tokens_before_text(GenerationConfig(max_new_tokens=20, stop_on_repeat=0))
    assert tokens_before_text(GenerationConfig(max_new_tokens=20, stop_on_repeat=8)) == plain  # not 7 later


def test_a_list_copied_from_the_sources_is_not_taken_for_a_loop():
    """A grounded list repeats its markup ("`.json` / `.jsonl`") and, translated, its phrases ("con
    `question` y `answer`" for two formats): a loop is a stretch said twice in a row, or new text said a
    third time; a stretch the prompt holds recurs apart as often as the source has it."""
    from assistant.generation.local import loop_length, prompt_ngrams

    n = 3
    source = [50, 1, 2, 3, 60, 1, 2, 3, 70, 1, 2, 3, 80]  # "`.md` … `.txt` …": markup 1 2 3 thrice
    copied = prompt_ngrams([9, 9] + source + [9], n)
    answer = [40] + source  # the list, copied
    assert [loop_length(answer[:t], n, copied) for t in range(1, len(answer) + 1)] == [0] * len(answer)
    # a phrase of new text (not in the prompt) in two items of a list: not a loop; a third time: cut there
    twice_apart = [41, 7, 8, 9, 42, 7, 8, 9, 43]
    assert [loop_length(twice_apart[:t], n, copied) for t in range(1, len(twice_apart) + 1)] == [0] * len(twice_apart)
    assert loop_length(twice_apart + [7, 8, 9], n, copied) == n
    # new text said again at once: cut where it starts over, short (period <= n) or long
    assert loop_length([41, 7, 8, 9, 7, 8, 9], n, copied) == n
    long_loop = [41, 7, 8, 9, 10, 11, 7, 8, 9, 10, 11]
    found = [loop_length(long_loop[:t], n, copied) for t in range(1, len(long_loop) + 1)]
    assert found[-1] == 5 and not any(found[:-1]) and long_loop[:-5] == [41, 7, 8, 9, 10, 11]
    # a copied sentence said twice in a row (6 tokens, period 6): found when the second time is whole
    sentence = [50, 1, 2, 3, 60, 1]
    twice = [40] + sentence + sentence
    found = [loop_length(twice[:t], n, copied) for t in range(1, len(twice) + 1)]
    assert found[-1] == len(sentence) and not any(found[:-1])
    assert twice[: len(twice) - found[-1]] == [40] + sentence


def test_scoring_on_the_lean_forward_matches_transformers_with_and_without_a_shared_beginning(tiny_lm):
    """``score_answer`` (the engine's support check) gives ``score_continuation``'s numbers on the lean
    forward, cold and when the prompt's beginning comes from the cache another conversation left."""
    import dataclasses

    from assistant.generation.fastdecode import FastDecoder
    from assistant.generation.scoring import score_answer
    from assistant.generation.prefixes import SharedPrefixes

    fast = FastDecoder.build(tiny_lm.model, "float32")
    shared = dataclasses.replace(tiny_lm, fast=fast, prefixes=SharedPrefixes(min_tokens=8))
    cold = dataclasses.replace(tiny_lm, fast=fast, prefixes=None)
    system = "You are a support assistant. Answer from the documents only, briefly and politely."
    answer = tiny_lm.tokenizer("Refunds take five days.", add_special_tokens=False)["input_ids"]
    first = tiny_lm.tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, {"role": "user", "content": "How do refunds work?"}],
        add_generation_prompt=True, tokenize=True)["input_ids"]
    others = [tiny_lm.tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, {"role": "user", "content": q}],
        add_generation_prompt=True, tokenize=True)["input_ids"] for q in ("Where is my parcel?", "Can I pay later?")]
    reference = score_continuation(tiny_lm, first, answer)
    assert score_answer(cold, first, answer) == pytest.approx(reference, abs=1e-4)
    # two other conversations with the same system prompt leave its beginning in the shared caches
    for other in others:
        Generation(shared, other, GenerationConfig(max_new_tokens=2)).run()
    cache, todo = shared.prefixes.take(first)
    assert cache is not None and len(todo) < len(first)
    assert score_answer(shared, first, answer) == pytest.approx(reference, abs=1e-4)
    assert score_answer(shared, first, []) == []


def test_token_logprobs_in_chunks_equal_a_whole_log_softmax():
    """Log-probabilities are taken LOGPROB_ROWS rows at a time (Explain's peak memory on a 262k-token
    vocabulary); the result is the same as one log_softmax over all rows, for a row count that does not
    divide evenly and for none."""
    import torch

    from assistant.generation.scoring import LOGPROB_ROWS, token_logprobs

    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(2 * LOGPROB_ROWS + 3, 1000, generator=gen) * 4
    ids = torch.randint(0, 1000, (rows.shape[0],), generator=gen).tolist()
    expected = torch.log_softmax(rows, dim=-1)[torch.arange(rows.shape[0]), torch.tensor(ids)]
    assert token_logprobs(rows, ids) == pytest.approx(expected.tolist(), abs=1e-5)
    assert token_logprobs(rows.to(torch.bfloat16), ids) == pytest.approx(
        torch.log_softmax(rows.to(torch.bfloat16).float(), dim=-1)[torch.arange(rows.shape[0]), torch.tensor(ids)].tolist(),
        abs=1e-5)
    assert token_logprobs(rows[:0], []) == []
