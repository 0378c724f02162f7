"""Explain: attention shares, leave-one-out / sampled ablation, sentence
citations, confidence, and the UI renderers.

Most tests use a *copy model* built by hand (no training, no randomness): one
layer whose attention is uniform over the context (zero queries), whose
embeddings are one-hot and whose values pass the token through, so the logit
of every token grows with how often it occurs in the context.  Its answer's
log-likelihood therefore depends on the context by construction: removing the
only source that contains the answer's tokens must hurt most, and its
attention rows are exactly uniform, which pins the aggregation arithmetic.
"""

from __future__ import annotations

import math

import pytest
import torch

from assistant.errors import ConfigError, InputError
from assistant.explain.explainer import chosen_layers, explain, format_table, split_sentences, token_pieces
from assistant.explain.types import ExplainConfig, Explanation
from assistant.explain.view import highlight_html, importance_chart, summary_markdown
from assistant.prompting import PromptParts, build_prompt
from assistant.types import Source, Turn

TEXTS = [
    "Paris is the capital of France.",
    "Refunds are paid back to the card within five days.",
    "退款会在五个工作日内退回。",
    "Hallo, wie kann ich helfen? Bonjour, comment puis-je aider?",
]
# Each answer's tokens occur in one source and hardly anywhere else (checked in the test).
ANSWERS = ["Paris capital France", "Refunds are paid back", "五个工作日内", "comment puis-je aider"]


def _sources(texts=TEXTS):
    return [Source(chunk_id=str(i), doc_id=f"d{i}", text=t, source=f"doc{i}.md", title=f"Doc {i}",
                   heading="Part", score=1.0 - i / 10, dense_score=0.5, bm25_score=2.0) for i, t in enumerate(texts)]


def _turn(lm, answer, history=True, sources=None, message="How do refunds work?"):
    sources = _sources() if sources is None else sources
    hist = [Turn(user="hello there?", answer="Hi, how can I help?")] if history else []
    # a fixed data-tag suffix (drawn at random in the app), so the copy model's prompt is the same every run
    prompt = build_prompt(lm.tokenizer, PromptParts(system="You help.", message=message, history=hist,
                                                    sources=sources, marker="3f9a2c7e"), budget=900)
    ids = lm.tokenizer(answer, add_special_tokens=False)["input_ids"]
    return Turn(user=message, answer=answer, sources=sources, prompt_ids=prompt.input_ids,
                segments=prompt.segments, answer_ids=ids, answer_logprobs=[])


@pytest.fixture(scope="module")
def copy_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    from assistant.generation.models import wrap_loaded
    from tiny_model import tiny_tokenizer

    tok = tiny_tokenizer()
    v = len(tok)
    config = LlamaConfig(vocab_size=v, hidden_size=v, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=2048,
                         eos_token_id=tok.eos_token_id, bos_token_id=0, pad_token_id=0, tie_word_embeddings=True)
    config._attn_implementation = "sdpa"  # explain must switch to eager itself
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(v))  # (vocab, hidden=vocab): one-hot
        attn = model.model.layers[0].self_attn
        attn.q_proj.weight.zero_()  # all scores 0 → uniform causal attention
        attn.k_proj.weight.zero_()
        attn.v_proj.weight.copy_(torch.eye(v))
        attn.o_proj.weight.copy_(torch.eye(v))
        model.model.layers[0].mlp.down_proj.weight.zero_()
    return wrap_loaded(model, tok, name="copy-model")


# -- sentence splitting --------------------------------------------------------

def test_split_sentences_english():
    text = "Refunds take 3.5 days, e.g. on cards. Contact Dr. Smith! Is it done? Yes.\nNext line"
    assert split_sentences(text) == ["Refunds take 3.5 days, e.g. on cards.", "Contact Dr. Smith!", "Is it done?",
                                     "Yes.", "Next line"]


def test_split_sentences_chinese_and_mixed():
    assert split_sentences("退款需要五天。请联系我们！可以吗？好的") == ["退款需要五天。", "请联系我们！", "可以吗？", "好的"]
    assert split_sentences("他说：“好的。”然后离开了。") == ["他说：“好的。”", "然后离开了。"]
    assert split_sentences("Refunds take five days.退款需要五天。") == ["Refunds take five days.", "退款需要五天。"]
    assert split_sentences("") == [] and split_sentences("   ") == []


def test_token_pieces_rebuild_the_text_and_keep_cjk_characters_whole(tiny_lm):
    tok = tiny_lm.tokenizer
    text = "退款会在五个工作日内退回。 Refunds!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tok, ids)
    assert "".join(p for p, _, _ in pieces) == text
    assert all("\ufffd" not in p for p, _, _ in pieces)
    assert pieces[0][1] == 0 and pieces[-1][2] == len(ids)


# -- attention -----------------------------------------------------------------

def test_segments_tile_the_prompt_and_shares_sum_to_one(tiny_lm):
    turn = _turn(tiny_lm, "Refunds are paid back within five days.")
    expl = explain(tiny_lm, turn, ExplainConfig(ablation="none"))
    segs = expl.segments
    assert segs[0].start == 0 and segs[-1].end == len(turn.prompt_ids)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    assert [s.label for s in segs] == ["system", "history:1", "source:1", "source:2", "source:3", "source:4", "message"]
    assert math.isclose(sum(s.attention_share for s in segs), 1.0, abs_tol=1e-4)
    assert all(s.attention_share >= 0 for s in segs)
    assert all(s.ablation_importance is None for s in segs) and expl.method == "none"
    # the heat covers the message's own words (not the template markup)
    assert "".join(t for t, _ in expl.message_heat).strip() == "How do refunds work?"
    assert "".join(t for t, _ in expl.source_heat[2]).strip() == TEXTS[2]
    assert expl.notes == [] or not any("retry adapter" in n for n in expl.notes)
    # an answer the retry adapter wrote says so, and which weights explained it (here no adapter is loaded)
    turn.timings["declined_after"] = 1.5
    again = explain(tiny_lm, turn, ExplainConfig(ablation="none"))
    assert any("retry adapter" in n and "model alone" in n for n in again.notes)
    assert "written by the retry adapter" in summary_markdown(again)
    assert [s.attention_share for s in again.segments] == [s.attention_share for s in segs]


@pytest.mark.parametrize("heads,layers", [("mean", "last_half"), ("max", "all"), ("mean", [-1])])
def test_uniform_attention_gives_shares_proportional_to_length(copy_lm, heads, layers):
    turn = _turn(copy_lm, ANSWERS[1])
    expl = explain(copy_lm, turn, ExplainConfig(ablation="none", heads=heads, layers=layers))
    P = len(turn.prompt_ids)
    for seg in expl.segments:
        expected = (seg.end - seg.start - (1 if seg.start == 0 else 0)) / (P - 1)  # the sink token is left out
        assert seg.attention_share == pytest.approx(expected, abs=1e-4), seg.label
    # the model's own setting is restored after the eager pass
    assert copy_lm.model.config._attn_implementation == "sdpa"


def test_chosen_layers():
    assert chosen_layers(ExplainConfig(), 30) == list(range(15, 30))
    assert chosen_layers(ExplainConfig(layers="all"), 3) == [0, 1, 2]
    assert chosen_layers(ExplainConfig(layers=[-1, 0]), 4) == [0, 3]
    with pytest.raises(ConfigError, match="layer 9 does not exist"):
        chosen_layers(ExplainConfig(layers=[9]), 4)


# -- ablation and citations ----------------------------------------------------

@pytest.mark.parametrize("j", range(len(ANSWERS)))
def test_leave_one_out_ranks_the_source_holding_the_answer_first(copy_lm, j):
    turn = _turn(copy_lm, ANSWERS[j])
    # precondition: source j's text holds most of the answer's tokens, each other source's text few of them
    answer_ids = set(turn.answer_ids)
    for i, text in enumerate(TEXTS):
        present = answer_ids & set(copy_lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        if i == j:
            assert len(present) >= 2 * len(answer_ids) // 3
        else:
            assert len(present) <= len(answer_ids) // 3, (i, present)
    expl = explain(copy_lm, turn, ExplainConfig(ablation="leave_one_out"))
    assert expl.method == "leave_one_out" and expl.notes == []  # re-rendered exactly with build_prompt
    imp = [s.ablation_importance for s in expl.source_scores]
    assert max(range(len(imp)), key=imp.__getitem__) == j, imp
    assert imp[j] > 0
    assert [s.source for s in expl.sentences] == [j + 1]
    assert expl.confidence.grounded
    assert expl.history_importance is not None
    assert expl.timings["ablation_passes"] == len(ANSWERS) + 1  # 4 sources + the history


def test_sampled_ablation_agrees_with_leave_one_out(copy_lm):
    turn = _turn(copy_lm, ANSWERS[1], history=False)
    expl = explain(copy_lm, turn, ExplainConfig(ablation="sampled", n_samples=12))
    imp = [s.ablation_importance for s in expl.source_scores]
    assert expl.method == "sampled" and expl.history_importance is None
    assert max(range(len(imp)), key=imp.__getitem__) == 1, imp
    assert expl.timings["ablation_passes"] == 12


def test_auto_switches_to_sampled_with_many_sources(copy_lm):
    turn = _turn(copy_lm, ANSWERS[0], history=False)
    expl = explain(copy_lm, turn, ExplainConfig(ablation="auto", max_leave_one_out=2, n_samples=8))
    assert expl.method == "sampled"


def test_prefix_cache_reuse_does_not_change_the_result(copy_lm):
    turn = _turn(copy_lm, ANSWERS[3])
    a = explain(copy_lm, turn, ExplainConfig(ablation="leave_one_out", reuse_prefix_cache=True))
    b = explain(copy_lm, turn, ExplainConfig(ablation="leave_one_out", reuse_prefix_cache=False))
    for x, y in zip(a.source_scores, b.source_scores):
        assert x.ablation_importance == pytest.approx(y.ablation_importance, abs=1e-4)


def test_a_conversation_starting_during_an_explanation_waits_for_one_pass_not_for_all(copy_lm, monkeypatch):
    """Explain hands its passes to the decode batcher one at a time: a conversation's prompt arriving
    while the first pass runs is served right after it, before Explain's next pass, and every pass runs
    on the batcher's thread (where the decoder's OpenMP work starts)."""
    import dataclasses
    import threading
    import time

    from assistant.generation.batching import DecodeBatcher

    batcher = DecodeBatcher(object())
    lm = dataclasses.replace(copy_lm, batcher=batcher)
    order: list[tuple[str, str]] = []
    first_pass_running, go_on = threading.Event(), threading.Event()
    forward = lm.model.forward

    def recorded_forward(*args, **kwargs):
        order.append(("explain", threading.current_thread().name))
        if len(order) == 1:
            first_pass_running.set()
            go_on.wait(30)
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", recorded_forward)
    turn = _turn(lm, ANSWERS[1])
    done: list = []
    explaining = threading.Thread(target=lambda: done.append(explain(lm, turn, ExplainConfig(ablation="leave_one_out"))))
    explaining.start()
    assert first_pass_running.wait(30)
    prompt = threading.Thread(target=batcher.call,
                              args=(lambda: order.append(("prompt", threading.current_thread().name)),))
    prompt.start()
    deadline = time.monotonic() + 30
    while batcher.quiet() and time.monotonic() < deadline:  # until the prompt is queued behind the pass
        time.sleep(0.001)
    assert not batcher.quiet()
    go_on.set()
    explaining.join(60)
    prompt.join(60)
    assert len(done) == 1 and done[0].timings["ablation_passes"] == len(TEXTS) + 1
    assert [who for who, _ in order[:2]] == ["explain", "prompt"]
    assert len(order) == 1 + 1 + len(TEXTS) + 1  # the attention pass, the prompt, the ablations
    assert {thread for _, thread in order} == {"decode-batcher"}


def test_sentences_cite_their_own_source(copy_lm):
    answer = "Paris capital France. 五个工作日内。"
    turn = _turn(copy_lm, answer, history=False)
    expl = explain(copy_lm, turn)
    assert [s.text for s in expl.sentences] == ["Paris capital France.", "五个工作日内。"]
    assert [s.source for s in expl.sentences] == [1, 3]


def test_an_answer_without_sources_is_not_grounded(copy_lm):
    turn = _turn(copy_lm, "Paris capital France", history=False, sources=[])
    expl = explain(copy_lm, turn)
    assert expl.source_scores == [] and not expl.confidence.grounded
    assert expl.confidence.label == "low" and expl.confidence.retrieval_top_score is None
    assert all(s.source is None for s in expl.sentences)


def test_confidence_uses_the_answer_probabilities(tiny_lm):
    turn = _turn(tiny_lm, "Refunds are paid. Five days.", history=False)
    turn.answer_logprobs = [math.log(0.9)] * len(turn.answer_ids)
    turn.answer_logprobs[2] = math.log(0.05)
    expl = explain(tiny_lm, turn, ExplainConfig(ablation="none"))
    c = expl.confidence
    assert c.min_prob == pytest.approx(0.05) and c.mean_prob < 0.9
    assert len(c.low_confidence_spans) == 1 and c.low_confidence_spans[0] in turn.answer
    assert c.retrieval_top_score == pytest.approx(1.0)


def test_a_peft_wrapped_model_works(tiny_lm):
    from peft import LoraConfig, get_peft_model

    from assistant.generation.models import wrap_loaded
    from tiny_model import tiny_model

    base = tiny_model(len(tiny_lm.tokenizer), seed=1)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lm = wrap_loaded(peft_model, tiny_lm.tokenizer, name="tiny+lora")
    expl = explain(lm, _turn(lm, "Paris is the capital."), ExplainConfig(ablation="leave_one_out"))
    assert math.isclose(sum(s.attention_share for s in expl.segments), 1.0, abs_tol=1e-4)
    assert all(s.ablation_importance is not None for s in expl.source_scores)


# -- errors --------------------------------------------------------------------

def test_bad_config_and_unexplainable_turns_are_refused(tiny_lm):
    with pytest.raises(ConfigError, match="explain.heads"):
        ExplainConfig(heads="median")
    with pytest.raises(ConfigError, match="explain.ablation"):
        ExplainConfig(ablation="shapley")
    with pytest.raises(ConfigError, match="explain.layers"):
        ExplainConfig(layers="first")
    with pytest.raises(InputError, match="no prompt to explain"):
        explain(tiny_lm, Turn(user="hi", answer="Hello!"))
    turn = _turn(tiny_lm, "x")
    turn.answer_ids, turn.answer = [], ""
    with pytest.raises(InputError, match="no answer tokens"):
        explain(tiny_lm, turn)


# -- rendering -----------------------------------------------------------------

def test_views_escape_text_and_carry_the_figures(copy_lm):
    evil = _sources(TEXTS[:3] + ["<script>alert(1)</script> comment puis-je aider"])
    evil[3].title = "<b>x</b>"
    turn = _turn(copy_lm, "comment puis-je aider", sources=evil, history=False, message="<img src=x onerror=1>?")
    expl = explain(copy_lm, turn)
    page = highlight_html(expl)
    assert "<script" not in page and "<img" not in page and "<b>x" not in page
    assert "&lt;" in page
    md = summary_markdown(expl)
    assert "<script" not in md and "<b>x" not in md and "\\[4\\]" in md
    assert "Attention" in md and "removing it" in md
    chart = importance_chart(expl)
    assert list(chart.columns) == ["source", "method", "value"]
    assert set(chart["method"]) == {"attention", "effect of removing it"}
    assert len(chart) == 2 * len(expl.source_scores)
    assert chart[chart.method == "attention"]["value"].sum() == pytest.approx(1.0)
    table = format_table(expl)
    assert "[4]" in table and "Confidence" in table
    assert isinstance(expl, Explanation)


# -- the real model --------------------------------------------------------------

@pytest.mark.slow
def test_real_4bit_model_explains_and_ranks_the_answering_source(real_lm):
    sources = _sources([
        "Our office in Lyon opens at nine in the morning and closes at six.",
        "Refunds are paid back to the original card within five working days.",
        "The premium plan costs twelve euros per month and includes phone support.",
    ])
    turn = _turn(real_lm, "Refunds are paid back to the original card within five working days.", history=False)
    turn.sources = sources
    prompt = build_prompt(real_lm.tokenizer, PromptParts(system="You help.", message="How do refunds work?",
                                                         sources=sources), budget=900)
    turn.prompt_ids, turn.segments = prompt.input_ids, prompt.segments
    before = real_lm.model.config._attn_implementation
    expl = explain(real_lm, turn)
    assert real_lm.model.config._attn_implementation == before
    assert math.isclose(sum(s.attention_share for s in expl.segments), 1.0, abs_tol=1e-3)
    imp = [s.ablation_importance for s in expl.source_scores]
    assert max(range(3), key=imp.__getitem__) == 1, imp
    assert expl.sentences[0].source == 2 and expl.confidence.grounded


def test_explains_a_turn_made_by_the_engine(engine, store):
    conv = store.create("alice")
    engine.run_turn(conv, "How do refunds work?")
    turn = engine.run_turn(conv, "And how long does it take?")
    assert turn.answer_ids, "the tiny engine produced no answer tokens"
    expl = explain(engine.lm, turn)
    assert [s.label for s in expl.segments][0] == "system" and expl.segments[-1].label == "message"
    assert math.isclose(sum(s.attention_share for s in expl.segments), 1.0, abs_tol=1e-4)
    assert expl.notes == []  # the engine's prompt (with its history) re-renders exactly
    assert not expl.confidence.grounded  # no index: no sources


def test_a_prompt_that_cannot_be_re_rendered_is_ablated_by_cutting_its_token_spans(copy_lm):
    """When the stored prompt cannot be rebuilt from its parts (here its system text was changed after the
    answer), leave-one-out cuts each source's tokens out of the stored prompt instead, and still finds the
    source the answer came from."""
    from dataclasses import replace

    j = 2
    turn = _turn(copy_lm, ANSWERS[j])
    turn.segments = [replace(s, text=s.text + " (edited later)") if s.kind == "system" else s for s in turn.segments]
    expl = explain(copy_lm, turn, ExplainConfig(ablation="leave_one_out"))
    assert any("ablations cut token spans instead" in n for n in expl.notes), expl.notes
    imp = [s.ablation_importance for s in expl.source_scores]
    assert max(range(len(imp)), key=imp.__getitem__) == j, imp


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "gemma3-softcap"])
def test_answer_logprobs_made_a_few_positions_at_a_time_equal_the_models_own_logits(arch):
    """Explain's passes take the answer's log-probabilities from the final norm's output, ``LOGPROB_ROWS``
    positions at a time (a Gemma server's Explain peaked on all positions' logits over its vocabulary at
    once); they are those of the model's own logits, soft-capping included."""
    import torch

    from test_fastdecode import _tiny_gemma3, _tiny_qwen2
    from tiny_model import tiny_model

    from assistant.explain.passes import _answer_logprobs, _forward_logprobs, _head_parts

    if arch == "llama":
        model = tiny_model(400)
    elif arch == "qwen2":
        model = _tiny_qwen2()
    else:
        model = _tiny_gemma3()
        if arch == "gemma3-softcap":
            model.config.final_logit_softcapping = 3.0
    assert _head_parts(model) is not None
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 250, (1, 60), generator=gen)
    target = ids[0, 20:]  # a 40-token "answer" after a 20-token prompt: more than LOGPROB_ROWS positions
    with torch.inference_mode():
        full = model(input_ids=ids, logits_to_keep=41).logits[0]
        expected = _answer_logprobs(full, target)
        out, ours = _forward_logprobs(model, target, input_ids=ids, use_cache=True)
    assert out.logits.shape[1] == 1 and out.past_key_values is not None
    assert ours.shape == (40,)
    assert torch.allclose(ours, expected, atol=1e-4), float((ours - expected).abs().max())


def test_the_prompt_part_of_the_attention_pass_runs_in_chunks_with_the_same_result(monkeypatch, tiny_lm):
    """Without sliding windows, the attention pass prefills the prompt up to its last token
    ``PREFILL_CHUNK`` tokens a pass (each its own ``decoder_pass``, so a conversation starting meanwhile
    waits for one chunk) and reads attention over that cache: the same attention shares, answer
    log-probabilities and cache as one pass over everything."""
    from assistant.explain import passes

    turn = _turn(tiny_lm, ANSWERS[1])
    prompt, answer = list(turn.prompt_ids), list(turn.answer_ids)
    assert len(prompt) > 40 and not passes._windowed(tiny_lm.model)
    config = ExplainConfig()
    calls: list = []
    real_pass = passes.decoder_pass
    monkeypatch.setattr(passes, "decoder_pass", lambda lm, fn, *a, **k: (calls.append(fn), real_pass(lm, fn, *a, **k))[1])
    whole = passes._attention_pass(tiny_lm, prompt, answer, config)
    assert len(calls) == 1
    monkeypatch.setattr(passes, "PREFILL_CHUNK", 16)
    calls.clear()
    chunked = passes._attention_pass(tiny_lm, prompt, answer, config)
    assert len(calls) == -(-(len(prompt) - 1) // 16) + 1  # the chunks, then the eager pass
    assert torch.allclose(chunked[0], whole[0], atol=1e-5)  # attention share per prompt token
    assert torch.allclose(chunked[1], whole[1], atol=1e-4)  # answer log-probabilities
    assert chunked[2].get_seq_length() == whole[2].get_seq_length() == len(prompt) + len(answer)
    assert chunked[3] == whole[3]


def test_models_with_sliding_windows_keep_the_attention_pass_whole():
    """Gemma 3's sliding-window layers cache only their window: attention weights over a cached prompt would
    not line up with its positions, so its attention pass stays one pass."""
    from test_fastdecode import _tiny_gemma3, _tiny_qwen2

    from assistant.explain.passes import _windowed

    assert _windowed(_tiny_gemma3())
    assert not _windowed(_tiny_qwen2())


@pytest.mark.parametrize("arch", ["qwen2", "gemma3"])
def test_the_explain_attention_computes_eager_attention_a_few_query_rows_at_a_time(monkeypatch, arch):
    """The Explain pass attends a chunk of query rows at a time (eager attention held every head's full score
    matrix and its copies: the largest allocation of a windowed model's explanation) and keeps the weights of
    the last rows only, those the hooks read: the same outputs and those rows' weights as eager attention,
    sliding windows, grouped key-value heads and soft-capping included."""
    import torch

    from test_fastdecode import _tiny_gemma3, _tiny_qwen2

    from assistant.explain import passes

    model = _tiny_qwen2() if arch == "qwen2" else _tiny_gemma3()  # Gemma's: windows of 8 tokens
    monkeypatch.setattr(passes, "QUERY_CHUNK", 7)
    ids = torch.randint(3, 250, (1, 60), generator=torch.Generator().manual_seed(1))
    modules = passes.attention_modules(model)

    def run(implementation: str | None, keep: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        seen: list = []
        handles = [m.register_forward_hook(lambda _m, _a, out: seen.append(out[1])) for m in modules]
        try:
            with torch.inference_mode():
                if implementation is None:
                    with passes.eager_attention(model, keep_rows=keep):
                        logits = model(input_ids=ids).logits
                else:
                    before = model.config._attn_implementation
                    model.set_attn_implementation(implementation)
                    logits = model(input_ids=ids).logits
                    model.set_attn_implementation(before)
        finally:
            for h in handles:
                h.remove()
        return logits, seen

    eager_logits, eager_weights = run("eager")
    ours_logits, ours_weights = run(None, keep=12)
    assert torch.allclose(ours_logits, eager_logits, atol=1e-5), float((ours_logits - eager_logits).abs().max())
    assert len(ours_weights) == len(eager_weights) == len(modules)
    for ours, theirs in zip(ours_weights, eager_weights):
        assert ours.shape[2] == 12 and theirs.shape[2] == 60
        assert torch.allclose(ours, theirs[:, :, -12:], atol=1e-6)
    _, all_rows = run(None)  # keep_rows 0: every row
    assert all(w.shape[2] == 60 for w in all_rows)


def test_the_explain_attention_soft_caps_its_scores_as_eager_attention_does(monkeypatch):
    """Soft-capped scores (Gemma 2's attention; transformers' eager function takes ``softcap``)."""
    import torch
    from transformers.models.gemma3.modeling_gemma3 import eager_attention_forward

    from assistant.explain import passes

    monkeypatch.setattr(passes, "QUERY_CHUNK", 5)
    gen = torch.Generator().manual_seed(2)
    module = torch.nn.Module().eval()
    module.head_dim, module.num_key_value_groups = 16, 2
    q, k, v = (torch.randn(1, h, 23, 16, generator=gen) * 3 for h in (4, 2, 2))
    mask = torch.zeros(1, 1, 23, 23).masked_fill(torch.ones(23, 23, dtype=torch.bool).triu(1), float("-inf"))
    theirs = eager_attention_forward(module, q, k, v, mask, scaling=0.25, softcap=2.0)
    token = passes._KEEP_ROWS.set(6)
    try:
        ours = passes._rows_attention(module, q, k, v, mask, scaling=0.25, softcap=2.0)
    finally:
        passes._KEEP_ROWS.reset(token)
    assert torch.allclose(ours[0], theirs[0], atol=1e-6)
    assert torch.allclose(ours[1], theirs[1][:, :, -6:], atol=1e-7)
