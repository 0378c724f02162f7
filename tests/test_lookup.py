"""Prompt-lookup decoding: drafts from the sequence, the acceptance rule, and generation that gives exactly
the tokens of plain decoding on the lean forward."""

import dataclasses
import threading

import pytest
import torch

from assistant.config import ConfigError, GenerationConfig
from assistant.generation.fastdecode import FastDecoder
from assistant.generation.local import Generation, PrefixCache
from assistant.generation.lookup import DraftLength, PassCosts, PromptLookup, accept


def test_draft_continues_the_latest_longest_match():
    look = PromptLookup([1, 2, 3, 4, 5, 9, 2, 3, 7, 8], max_ngram=3, min_ngram=1)
    look.append([2, 3])  # suffix (2, 3) last occurred before 7, 8
    assert look.draft(4) == [7, 8, 2, 3]
    look.append([4])  # (2, 3, 4) occurred once, at the start: the longer match wins
    assert look.draft(3) == [5, 9, 2]
    assert look.draft(0) == []
    assert PromptLookup([1, 2, 3], min_ngram=2).draft(4) == []  # (2, 3) occurs only as the suffix itself
    with pytest.raises(ValueError):
        PromptLookup([], max_ngram=1, min_ngram=2)


def test_acceptance_keeps_the_models_distribution():
    """A one-token draft accepted with the model's probability, else a draw from the rest: the emitted
    token is distributed as the model's probabilities whatever was proposed."""
    probs = torch.tensor([0.05, 0.5, 0.25, 0.15, 0.05])
    gen = torch.Generator().manual_seed(0)
    draws = 20000
    for proposed in (1, 3, 4, None):
        counts = torch.bincount(torch.tensor([accept(probs, proposed, gen, greedy=False) for _ in range(draws)]),
                                minlength=5).float() / draws
        assert torch.allclose(counts, probs, atol=0.015), (proposed, counts)
    assert accept(probs, 3, gen, greedy=True) == 1  # greedy: the most likely token, proposal or not
    assert accept(torch.tensor([0.0, 1.0]), 1, gen, greedy=False) == 1


def test_lookup_tokens_is_validated():
    with pytest.raises(ConfigError, match="lookup_tokens"):
        GenerationConfig(lookup_tokens=-1)
    with pytest.raises(ConfigError, match="lookup_tokens"):
        GenerationConfig(lookup_tokens=True)


class FlatCosts(PassCosts):
    """Checking a draft costs what a plain step costs (as on a GPU): the tests' answers then draft
    whatever is proposed, whatever this machine's timings."""

    def add(self, rows, seconds):
        pass

    def estimate(self, rows):
        return 1.0


def _fast(tiny_lm, fmt="float32"):
    fast = FastDecoder.build(tiny_lm.model, fmt)
    fast.pass_costs = FlatCosts()
    return dataclasses.replace(tiny_lm, fast=fast)


def test_the_draft_length_weighs_what_a_pass_costs_against_how_often_drafts_are_right():
    flat, cpu = PassCosts(), PassCosts()
    for rows in range(1, 9):
        flat.add(rows, 0.060)
    for rows, ms in {1: 60, 2: 75, 3: 90, 4: 108, 5: 160, 6: 175, 7: 190, 8: 210}.items():  # grows with rows
        cpu.add(rows, ms / 1000)
    sure, unsure = DraftLength(flat, 8), DraftLength(flat, 8)
    sure.observe(40, False)
    unsure.observe(0, True)
    assert sure.choose(8) == 7  # checking costs nothing extra: all the measured lengths allow (8 rows)
    assert sure.choose(3) == 3 and sure.choose(0) == 0
    assert unsure.choose(8) > 0  # still worth it when checking is free
    on_cpu = DraftLength(cpu, 8)
    assert on_cpu.choose(8) == 1  # at a rate of one half, one more row (a quarter of a step) pays
    for _ in range(3):
        on_cpu.observe(0, True)
    assert on_cpu.rate == pytest.approx(0.2) and on_cpu.choose(8) == 0  # at one in five it does not
    on_cpu.observe(30, True)  # then 30 drafted tokens in a row were the model's
    assert 2 <= on_cpu.choose(8) <= 4  # worth checking a few, not eight rows at 3.5 times a step
    # unmeasured row counts are estimated from one row's time, so each gets tried
    fresh = PassCosts()
    fresh.add(1, 0.05)
    assert fresh.estimate(1) == 0.05 and fresh.estimate(5) == pytest.approx(0.05 * 1.4)
    fresh.add(3, 0.09)
    assert fresh.estimate(4) == 0.09  # not below what fewer rows took
    fresh.add(1, 0.10)  # a running mean
    assert 0.05 < fresh.estimate(1) < 0.10


def _prompt(tok, text):
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                   tokenize=True)["input_ids"]


QUESTIONS = [
    "How do refunds work? Refunds are paid back to the card within five days. How do refunds work?",
    "What is the capital of France? Paris is the capital of France.",
    "退款需要多长时间？退款会在五个工作日内退回。",
    "source sources document reference source sources document",
]


@pytest.mark.parametrize("penalty,fmt", [(1.0, "float32"), (1.3, "float32"), (1.0, "bfloat16")])
def test_greedy_lookup_gives_exactly_the_tokens_of_plain_decoding(tiny_lm, penalty, fmt):
    """Several prompts, long enough answers that the tiny model repeats itself (so drafts are proposed
    and accepted): the same tokens and log-probabilities, in fewer forward passes; in bf16 too, where
    one attention call over the draft's rows rounded differently from row-by-row decoding."""
    lm = _fast(tiny_lm, fmt)
    accepted = passes_saved = 0
    for text in QUESTIONS:
        prompt = _prompt(tiny_lm.tokenizer, text)
        plain = GenerationConfig(max_new_tokens=60, temperature=0.0, repetition_penalty=penalty, stop_on_repeat=0,
                                 lookup_tokens=0)
        off = Generation(lm, prompt, plain).run()
        on = Generation(lm, prompt, dataclasses.replace(plain, lookup_tokens=6)).run()
        assert on.token_ids == off.token_ids
        assert on.logprobs == pytest.approx(off.logprobs, abs=1e-4)
        assert on.finish_reason == off.finish_reason
        assert off.draft_tokens == 0 and off.forward_passes == len(off.token_ids) + (off.finish_reason == "stop")
        accepted += on.accepted_draft_tokens
        passes_saved += off.forward_passes - on.forward_passes
    assert accepted > 0 and passes_saved == accepted  # every accepted draft token saved one pass


def test_lookup_streams_what_it_accepts_and_respects_limits_cancel_and_the_prefix_cache(tiny_lm):
    lm = _fast(tiny_lm)
    prompt = _prompt(tiny_lm.tokenizer, QUESTIONS[0])
    settings = GenerationConfig(max_new_tokens=40, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
    gen = Generation(lm, prompt, settings)
    deltas = list(gen)
    assert "".join(d.text for d in deltas).strip() == gen.result.text
    assert [d.token_id for d in deltas] == gen.result.token_ids and len(gen.result.token_ids) == 40
    # cancel mid-answer: stops within the draft being checked
    cancel = threading.Event()
    stream = iter(Generation(lm, prompt, settings, cancel=cancel))
    for _ in range(5):
        next(stream)
    cancel.set()
    rest = list(stream)
    assert len(rest) <= 1
    # a follow-up turn on the prefix cache a lookup answer left behind gives the cold answer
    prefix = PrefixCache()
    first = Generation(lm, prompt, settings, prefix_cache=prefix).run()
    follow = prompt + first.token_ids + prompt[-8:]
    warm = Generation(lm, follow, settings, prefix_cache=prefix).run()
    assert warm.cached_tokens > len(prompt)
    assert warm.token_ids == Generation(lm, follow, dataclasses.replace(settings, lookup_tokens=0)).run().token_ids
    # a stream closed half-way leaves a cache that still gives the right follow-up
    prefix = PrefixCache()
    stream = iter(Generation(lm, prompt, settings, prefix_cache=prefix))
    shown = [next(stream).token_id for _ in range(7)]
    stream.close()
    again = prompt + shown + prompt[-8:]
    assert Generation(lm, again, settings, prefix_cache=prefix).run().token_ids == \
        Generation(lm, again, dataclasses.replace(settings, lookup_tokens=0)).run().token_ids


def test_sampled_lookup_is_reproducible_with_a_seed(tiny_lm):
    lm = _fast(tiny_lm)
    prompt = _prompt(tiny_lm.tokenizer, QUESTIONS[3])
    settings = GenerationConfig(max_new_tokens=30, temperature=0.7, seed=3, stop_on_repeat=0)
    first = Generation(lm, prompt, settings).run()
    assert first.token_ids == Generation(lm, prompt, settings).run().token_ids
    # however the decoder's passes measured (a busy machine, another CPU), the same seed, the same answer
    costly = PassCosts()
    for rows in range(1, 40):
        costly.add(rows, 0.01 * rows ** 2)
    lm.fast.pass_costs = costly
    assert Generation(lm, prompt, settings).run().token_ids == first.token_ids


def test_the_decoder_learns_its_pass_costs_and_greedy_answers_stay_the_same(tiny_lm):
    lm = dataclasses.replace(tiny_lm, fast=FastDecoder.build(tiny_lm.model, "float32"))  # measured costs
    prompt = _prompt(tiny_lm.tokenizer, QUESTIONS[0])
    settings = GenerationConfig(max_new_tokens=40, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
    on = Generation(lm, prompt, settings).run()
    assert lm.fast.pass_costs.seconds.get(1, 0) > 0  # plain steps timed
    assert on.token_ids == Generation(lm, prompt, dataclasses.replace(settings, lookup_tokens=0)).run().token_ids
    expensive = PassCosts()
    expensive.add(1, 0.01)
    for rows in range(2, 40):
        expensive.add(rows, 10.0)
    lm.fast.pass_costs = expensive
    costly = Generation(lm, prompt, settings).run()
    assert costly.draft_tokens == 0 and costly.token_ids == on.token_ids  # drafts not worth checking


def test_the_lookup_switch_on_the_command_line(tmp_path):
    import argparse

    from assistant.cli.options import add_model_options, config_from_args

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    home = ["--home", str(tmp_path)]
    assert config_from_args(parser.parse_args(home)).generation.lookup_tokens == GenerationConfig.lookup_tokens
    assert config_from_args(parser.parse_args(home + ["--lookup", "off"])).generation.lookup_tokens == 0
    config = tmp_path / "c.yaml"
    config.write_text("generation:\n  lookup_tokens: 0\n")
    assert config_from_args(parser.parse_args(home + ["--config", str(config)])).generation.lookup_tokens == 0
    on = parser.parse_args(home + ["--config", str(config), "--lookup", "on"])
    assert config_from_args(on).generation.lookup_tokens == GenerationConfig.lookup_tokens


@pytest.mark.slow
def test_greedy_lookup_on_the_real_default_model_gives_the_same_answers(real_lm):
    """The default model answering from a source it can copy from, and chatting freely: the same tokens
    with lookup on as off, and some of them accepted from drafts."""
    import dataclasses as dc

    real = dc.replace(real_lm, prefixes=None, batcher=None)  # both runs prefill cold, decode alone
    source = ("Reference: To embed the assistant on your website, paste the snippet from the admin area. "
              "Two forms are offered: an iframe that shows the chat page, and a web component that adds a chat "
              "button in the corner of the page.")
    settings = GenerationConfig(max_new_tokens=40, temperature=0.0, lookup_tokens=0)
    accepted = 0
    for text in (source + "\n\nQuestion: How do I embed the assistant on my website?", "Explain what a CPU cache is."):
        prompt = _prompt(real.tokenizer, text)
        off = Generation(real, prompt, settings).run()
        on = Generation(real, prompt, dataclasses.replace(settings, lookup_tokens=8)).run()
        assert on.token_ids == off.token_ids
        accepted += on.accepted_draft_tokens
    assert accepted > 0

