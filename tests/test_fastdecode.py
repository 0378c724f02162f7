"""The lean CPU forward against transformers' own, on the tiny Llama model."""

import dataclasses

import pytest
import torch

from assistant.config import GenerationConfig
from assistant.generation.fastdecode import FastDecoder
from assistant.generation.local import Generation, PrefixCache

IDS = list(range(5, 45))


def _reference_logits(model, ids):
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float()  # (seq, vocab)


def test_float32_forward_equals_transformers_through_prefill_decode_and_crop(tiny_lm):
    ref = _reference_logits(tiny_lm.model, IDS)
    fast = FastDecoder.build(tiny_lm.model, "float32")
    cache = fast.new_cache()
    assert torch.allclose(fast.forward(IDS[:20], cache), ref[19], atol=1e-5)  # prefill
    assert torch.allclose(fast.forward(IDS[20:30], cache), ref[29], atol=1e-5)  # prefill after a past
    for i in range(30, 35):  # one token at a time
        assert torch.allclose(fast.forward([IDS[i]], cache), ref[i], atol=1e-5)
    assert cache.get_seq_length() == 35
    cache.crop(-10)  # back to 25 positions, then a different continuation
    assert torch.allclose(fast.forward(IDS[25:40], cache), ref[39], atol=1e-5)
    # the cache grows past its first allocation without changing results
    long = list(range(3, 300)) * 2
    grown = fast.new_cache()
    fast.forward(long[:500], grown)
    assert torch.allclose(fast.forward(long[500:520], grown), _reference_logits(tiny_lm.model, long[:520])[-1],
                          atol=1e-4)


@pytest.mark.parametrize("fmt, tolerance", [("bfloat16", 0.02), ("int4", 0.1)])
def test_low_precision_weights_stay_close(tiny_lm, fmt, tolerance):
    ref = _reference_logits(tiny_lm.model, IDS)[-1]
    fast = FastDecoder.build(tiny_lm.model, fmt)
    cache = fast.new_cache()
    fast.forward(IDS[:-1], cache)
    out = fast.forward(IDS[-1:], cache)  # a decode step: the int4 kernel
    assert float((out - ref).norm() / ref.norm()) < tolerance


def test_generation_on_the_fast_path_matches_transformers(tiny_lm):
    fast_lm = dataclasses.replace(tiny_lm, fast=FastDecoder.build(tiny_lm.model, "float32"))
    prompt = tiny_lm.tokenizer.apply_chat_template([{"role": "user", "content": "How do refunds work?"}],
                                                   add_generation_prompt=True, tokenize=True)["input_ids"]
    settings = GenerationConfig(max_new_tokens=16, temperature=0.0, repetition_penalty=1.0)
    slow = Generation(tiny_lm, prompt, settings).run()
    quick = Generation(fast_lm, prompt, settings).run()
    assert quick.token_ids == slow.token_ids
    assert quick.logprobs == pytest.approx(slow.logprobs, abs=1e-4)
    # a follow-up turn reuses the fast cache and still gives the cold answer
    prefix = PrefixCache()
    first = Generation(fast_lm, prompt, settings, prefix_cache=prefix).run()
    follow = prompt + first.token_ids + prompt[-8:]
    warm = Generation(fast_lm, follow, settings, prefix_cache=prefix).run()
    assert warm.cached_tokens > len(prompt)
    assert warm.token_ids == Generation(fast_lm, follow, settings).run().token_ids


def test_conversations_share_the_prefilled_system_prompt_and_answer_as_cold(tiny_lm):
    """The first turns of different conversations start alike (chat template, system prompt): after two
    cold prompts the common beginning is kept, and a third conversation prefills only what follows it,
    with the answer of a cold start."""
    from assistant.generation.prefixes import SharedPrefixes

    fast = FastDecoder.build(tiny_lm.model, "float32")
    shared_lm = dataclasses.replace(tiny_lm, fast=fast, prefixes=SharedPrefixes(min_tokens=16))
    cold_lm = dataclasses.replace(tiny_lm, fast=fast, prefixes=None)
    system = "You are a support assistant. Answer from the documents. " * 3

    def prompt(question):
        return tiny_lm.tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": question}],
            add_generation_prompt=True, tokenize=True)["input_ids"]

    settings = GenerationConfig(max_new_tokens=12, temperature=0.0, repetition_penalty=1.0)
    questions = ["How do refunds work?", "Where is my parcel?", "Can I change my address?"]
    runs = [Generation(shared_lm, prompt(q), settings, prefix_cache=PrefixCache()).run() for q in questions]
    assert [r.cached_tokens for r in runs[:2]] == [0, 0]  # nothing kept before two prompts were seen
    common = min(len(prompt(q)) for q in questions)
    while len({tuple(prompt(q)[:common]) for q in questions}) > 1:
        common -= 1
    assert runs[2].cached_tokens == common >= 16  # the third starts after the shared beginning
    for q, run in zip(questions, runs):
        assert run.token_ids == Generation(cold_lm, prompt(q), settings).run().token_ids
    # a prompt that shares too little is prefilled whole
    other = tiny_lm.tokenizer("Something else entirely", add_special_tokens=False)["input_ids"]
    assert Generation(shared_lm, other, settings).run().cached_tokens == 0


def test_a_prompt_gives_the_same_answer_cached_or_cold_where_its_shared_beginning_is_known():
    """With 4-bit weights and bf16 activations one pass over a whole prompt rounds differently from two
    passes split where a cached system prompt ends.  Told where the shared beginning ends
    (``shared_until``), a cold prompt is prefilled in those same two passes and that beginning is kept:
    the second conversation takes it from the cache and gets the first one's answer, bit for bit."""
    from tiny_model import tiny_tokenizer

    from assistant.generation.models import wrap_loaded
    from assistant.generation.prefixes import SharedPrefixes

    tok = tiny_tokenizer()
    model = _tiny_qwen2(vocab=448)
    fast = FastDecoder.build(model, "int4")
    lm = dataclasses.replace(wrap_loaded(model, tok, name="tiny-qwen2"), fast=fast,
                             prefixes=SharedPrefixes(min_tokens=16))
    system = tok.apply_chat_template([{"role": "system", "content": "You answer from the documents. " * 4}],
                                     tokenize=True)["input_ids"]
    prompt = tok.apply_chat_template([{"role": "system", "content": "You answer from the documents. " * 4},
                                      {"role": "user", "content": "How do refunds work? " * 6}],
                                     add_generation_prompt=True, tokenize=True)["input_ids"]
    split = len(system)
    assert prompt[:split] == system and split >= 16
    settings = GenerationConfig(max_new_tokens=10, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
    cold = Generation(lm, prompt, settings, shared_until=split).run()
    cached = Generation(lm, prompt, settings, shared_until=split).run()
    assert (cold.cached_tokens, cached.cached_tokens) == (0, split)  # kept after one cold prompt
    assert cached.token_ids == cold.token_ids and cached.logprobs == cold.logprobs
    # another system prompt that starts with the same words (another language's): not split where the two
    # part, so its answer is the same as when it comes first
    other_system = [{"role": "system", "content": "You answer from the documents. " * 3 + "Antworte auf Deutsch."}]
    other = tok.apply_chat_template(other_system + [{"role": "user", "content": "How do refunds work? " * 6}],
                                    add_generation_prompt=True, tokenize=True)["input_ids"]
    other_split = len(tok.apply_chat_template(other_system, tokenize=True)["input_ids"])
    common = next(i for i, (a, b) in enumerate(zip(prompt, other)) if a != b)
    assert 16 <= common < split  # they share a beginning, longer than the cache's least
    after = Generation(lm, other, settings, shared_until=other_split).run()
    first = Generation(dataclasses.replace(lm, prefixes=SharedPrefixes(min_tokens=16)), other, settings,
                       shared_until=other_split).run()
    assert after.cached_tokens == 0 and after.logprobs == first.logprobs


def test_adapters_are_merged_into_the_fast_weights():
    from peft import LoraConfig, get_peft_model
    from tiny_model import tiny_loaded

    tiny_lm = tiny_loaded()  # its own copy: peft changes the module in place
    model = get_peft_model(tiny_lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj",
                                                                                          "gate_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained-looking adapter (B starts at zero)
    model.eval()
    lm = dataclasses.replace(tiny_lm, fast=FastDecoder.build(tiny_lm.model, "float32")).with_model(model)
    cache = lm.fast.new_cache()
    with_adapter = _reference_logits(model, IDS)[-1]
    assert torch.allclose(lm.fast.forward(IDS, cache), with_adapter, atol=1e-4)
    with model.disable_adapter():
        assert not torch.allclose(_reference_logits(model, IDS)[-1], with_adapter, atol=1e-3)


def test_other_architectures_keep_the_transformers_path():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert FastDecoder.build(model, "int4") is None


def _tiny_gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=24,
                              sliding_window=8, max_position_embeddings=2048,
                              layer_types=["sliding_attention", "full_attention"] * 2)
    model = Gemma3ForCausalLM(config).eval()
    for name, p in model.named_parameters():
        if "norm" in name:  # Gemma norms start at zero (scale 1 + w); make them matter
            torch.nn.init.normal_(p, std=0.3)
    return model


def test_gemma3_forward_equals_transformers_across_the_sliding_window():
    """Gemma 3: scaled embedding, 1 + w norms, q/k norms, sandwich norms, tanh-GELU, and
    sliding-window layers (window 8 here, so 40 positions cross it many times)."""
    model = _tiny_gemma3()
    ref = _reference_logits(model, IDS)
    fast = FastDecoder.build(model, "float32")
    assert fast is not None
    cache = fast.new_cache()
    assert torch.allclose(fast.forward(IDS[:20], cache), ref[19], atol=1e-5)
    assert torch.allclose(fast.forward(IDS[20:30], cache), ref[29], atol=1e-5)
    for i in range(30, 35):
        assert torch.allclose(fast.forward([IDS[i]], cache), ref[i], atol=1e-5)
    cache.crop(-10)
    assert torch.allclose(fast.forward(IDS[25:40], cache), ref[39], atol=1e-5)
    bf16 = FastDecoder.build(model, "bfloat16")
    out = bf16.forward(IDS, bf16.new_cache())
    assert float((out - ref[-1]).norm() / ref[-1].norm()) < 0.03


@pytest.mark.parametrize("amx", [True, False])
def test_bf16_decode_steps_attend_alike_through_sdpa_or_the_products(tiny_lm, monkeypatch, amx):
    """A bf16 decode step attends through torch's SDPA where the CPU has AMX and through two batched
    products elsewhere (``cpu.cpu_has_amx``); both stay as close to the float32 forward."""
    from assistant.generation import fastdecode

    monkeypatch.setattr(fastdecode, "cpu_has_amx", lambda: amx)
    ref = _reference_logits(tiny_lm.model, IDS)
    fast = FastDecoder.build(tiny_lm.model, "bfloat16")
    cache = fast.new_cache()
    fast.forward(IDS[:30], cache)
    for i in range(30, 40):  # decode steps over a growing cache
        out = fast.forward([IDS[i]], cache)
        assert float((out - ref[i]).norm() / ref[i].norm()) < 0.02
    # and the one-query attention itself agrees between the two ways
    q = torch.randn(1, fast.heads, 1, fast.head_dim).bfloat16()
    keys, values = (torch.randn(fast.kv_heads, 50, fast.head_dim).bfloat16() for _ in range(2))
    monkeypatch.setattr(fastdecode, "cpu_has_amx", lambda: not amx)
    other = fast._attend_one(q, keys, values)
    monkeypatch.setattr(fastdecode, "cpu_has_amx", lambda: amx)
    assert torch.allclose(fast._attend_one(q, keys, values).float(), other.float(), atol=2e-2)


def test_attention_and_activation_precision_are_chosen_from_the_cpu_flags(tmp_path):
    """AMX: SDPA for one query, bf16 activations; AVX-512 BF16 without AMX: the products, bf16; AVX2 only:
    float32 (bf16 products ran 35x slower there).  Read from the flags, not timed."""
    from assistant.generation.cpu import bf16_matmul_fast, cpu_flags, cpu_has_amx

    sapphire, zen4, haswell = tmp_path / "sapphire", tmp_path / "zen4", tmp_path / "haswell"
    sapphire.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    haswell.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse4_2 avx avx2 fma\n")
    assert (cpu_has_amx(str(sapphire)), bf16_matmul_fast(str(sapphire))) == (True, True)
    assert (cpu_has_amx(str(zen4)), bf16_matmul_fast(str(zen4))) == (False, True)
    assert (cpu_has_amx(str(haswell)), bf16_matmul_fast(str(haswell))) == (False, False)
    assert cpu_flags(str(haswell)) == frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
    assert cpu_flags(str(tmp_path / "missing")) is None and cpu_has_amx(str(tmp_path / "missing")) is False


def test_gemma3_with_soft_capping_keeps_the_transformers_path():
    model = _tiny_gemma3()
    model.config.final_logit_softcapping = 30.0
    assert FastDecoder.build(model, "float32") is None


def _tiny_qwen2(vocab: int = 384, tie: bool = True):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_theta=1e6, tie_word_embeddings=tie)
    model = Qwen2ForCausalLM(config).eval()
    for name, p in model.named_parameters():
        if name.endswith("bias"):  # Qwen2's q/k/v biases start at zero; make them matter
            torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_qwen2_forward_equals_transformers_with_biases_and_tied_embeddings(tie):
    model = _tiny_qwen2(tie=tie)
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    ref = _reference_logits(model, IDS)
    fast = FastDecoder.build(model, "float32")
    assert fast is not None and (fast.head is fast.embed) == tie
    cache = fast.new_cache()
    assert torch.allclose(fast.forward(IDS[:20], cache), ref[19], atol=1e-5)
    assert torch.allclose(fast.forward(IDS[20:30], cache), ref[29], atol=1e-5)
    for i in range(30, 35):
        assert torch.allclose(fast.forward([IDS[i]], cache), ref[i], atol=1e-5)
    cache.crop(-10)
    assert torch.allclose(fast.forward(IDS[25:40], cache), ref[39], atol=1e-5)
    grown = fast.new_cache()  # growth past the first allocation
    long = list(range(3, 300)) * 2
    fast.forward(long[:500], grown)
    assert torch.allclose(fast.forward(long[500:520], grown), _reference_logits(model, long[:520])[-1], atol=1e-4)


def test_shared_weights_serve_both_forwards_from_one_copy():
    """After ``share_weights`` the transformers model runs on the decoder's packed 4-bit weights: its
    logits (prompt and decode shapes, eager attention for Explain) match the lean forward's, and no
    linear module keeps a weight of its own."""
    from assistant.generation.shared_weights import PackedLinear, share_weights

    model = _tiny_qwen2()
    ref = _reference_logits(model, IDS)[-1]
    fast = FastDecoder.build(model, "int4")
    assert fast.layers[0].qkv.packed is not None and fast.head.packed is not None
    assert share_weights(model, fast)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) < 2000  # norms only
    lean = fast.forward(IDS, fast.new_cache())
    shared = _reference_logits(model, IDS)[-1]
    assert float((lean - ref).norm() / ref.norm()) < 0.2  # 4-bit groups of a random model
    assert float((shared - lean).norm() / lean.norm()) < 0.02  # the same weights, two forwards
    assert isinstance(model.model.layers[0].self_attn.q_proj, PackedLinear)
    model.config._attn_implementation = "eager"
    out = model(torch.tensor([IDS]), output_attentions=True)
    assert out.attentions[0].shape == (1, 4, len(IDS), len(IDS))
    # a decoder rebuilt from the shared model reuses the same bytes
    again = FastDecoder.build(model, "int4")
    assert again.layers[0].o is fast.layers[0].o and again.embed is fast.embed


def test_int4_weight_layout_rows_and_dequantisation_agree_with_the_kernel():
    from assistant.generation.int4 import Weight

    torch.manual_seed(1)
    w, b = torch.randn(192, 96), torch.randn(192)
    packed = Weight.from_float(w, "int4", bias=b)
    dense = packed.dequantize().float()
    assert float((dense - w).norm() / w.norm()) < 0.1  # 4-bit groups of 32
    x = torch.randn(3, 96).bfloat16()
    kernel = packed(x).float()  # 3 rows: the 4-bit kernel
    assert torch.allclose(kernel, x.float() @ dense.T + b, atol=0.3, rtol=0.02)
    many = torch.randn(100, 96).bfloat16()  # above DEQUANT_ROWS: de-quantised, bf16 product
    assert torch.allclose(packed(many).float(), many.float() @ dense.T + b, atol=0.3, rtol=0.02)
    ids = torch.tensor([0, 5, 31, 32, 63, 64, 100, 191])
    assert torch.equal(packed.rows(ids), packed.dequantize()[ids])
    part = packed.rows_slice(64, 192)
    assert torch.allclose(part(x).float(), kernel[:, 64:192], atol=0.3)
    assert part.packed.data_ptr() == packed.packed[64 // packed.block:].data_ptr()  # a view, not a copy
    # its slices, put back together in order, are the matrix itself; anything else is a new one
    assert Weight.concat([packed.rows_slice(0, 64), part]) is packed
    again = Weight.concat([part, packed.rows_slice(0, 64)])
    assert again is not packed and torch.equal(again.dequantize()[:128], packed.dequantize()[64:])


def test_8_bit_rows_agree_with_the_kernel_slice_join_4_bit_groups_and_round_trip():
    """A matrix its file holds finer than 4 bits stays in 8-bit rows: the decode kernel, the prompt path,
    row lookups and a saved copy give its values; joined to 4-bit groups (q and k beside a finer v) the
    product is all 8-bit rows, each part's values kept."""
    from assistant.generation.int4 import Weight

    torch.manual_seed(2)
    w, b = torch.randn(192, 96), torch.randn(192)
    rows8 = Weight.from_rows8(w, bias=b)
    assert rows8.quantized and rows8.rows8.dtype == torch.int8 and rows8.packed is None
    dense = rows8.dequantize().float()
    assert float((dense - w).norm() / w.norm()) < 0.01  # 8 bits a value, one scale a row
    x = torch.randn(3, 96).bfloat16()
    kernel = rows8(x).float()  # 3 rows: torch's 8-bit kernel
    assert torch.allclose(kernel, x.float() @ dense.T + b, atol=0.1, rtol=0.01)
    many = torch.randn(100, 96).bfloat16()  # above DEQUANT_ROWS: de-quantised, bf16 product
    assert torch.allclose(rows8(many).float(), many.float() @ dense.T + b, atol=0.1, rtol=0.01)
    ids = torch.tensor([0, 5, 63, 64, 191])
    assert torch.equal(rows8.rows(ids), rows8.dequantize()[ids])
    assert torch.equal(rows8.rows_slice(64, 128)(x), rows8(x)[:, 64:128])
    again = Weight.from_state(rows8.state("w"), "w", "int4")
    assert torch.equal(again(x), rows8(x)) and again.nbytes == rows8.nbytes < w.numel() * 2
    four = Weight.from_float(torch.randn(128, 96), "int4")
    joined = Weight.concat([four, rows8])
    assert joined.rows8 is not None and joined.out_features == 320
    assert float((joined.dequantize()[:128].float() - four.dequantize().float()).norm()
                 / four.dequantize().float().norm()) < 0.01
    assert torch.equal(joined.dequantize()[128:], rows8.dequantize())
    assert rows8.like(w).rows8 is not None and four.like(w).packed is not None  # merging keeps the format
    odd = Weight.from_rows8(torch.randn(64, 70))  # columns not in groups of 32: dense, as from_float keeps it
    assert odd.rows8 is None and odd.dense is not None


def test_a_refined_head_scores_with_4_bit_groups_and_gives_the_best_their_finer_values():
    """Decode-sized rows: the ``keep`` best of the 4-bit scores carry the finer rows' values, and the top
    choice is the finer matrix's own; a prompt-sized product keeps the 4-bit scores."""
    from assistant.generation.int4 import RefinedHead, Weight

    torch.manual_seed(3)
    w = torch.randn(1024, 64)
    head = RefinedHead(Weight.from_float(w, "int4"), Weight.from_rows8(w), keep=16)
    x = torch.randn(5, 64).bfloat16()
    fine = head.fine(x).float()
    got = head(x).float()
    assert torch.equal(got.argmax(-1), fine.argmax(-1))
    coarse = head.coarse(x).float()
    top = coarse.topk(16, dim=-1).indices  # the rows recomputed
    assert torch.allclose(got.gather(1, top), fine.gather(1, top), atol=0.05, rtol=0.01)
    assert (coarse - fine).abs().max() > 10 * (got.gather(1, top) - fine.gather(1, top)).abs().max()
    together = head(x)  # a speculative draft's rows score as each would alone
    assert all(torch.equal(together[i], head(x[i:i + 1])[0]) for i in range(5))
    many = torch.randn(60, 64).bfloat16()  # above DEQUANT_ROWS: the 4-bit scores
    assert torch.equal(head(many), head.coarse(many))
    with pytest.raises(ValueError, match="rows of the coarse matrix's shape"):
        RefinedHead(Weight.from_float(w, "int4"), Weight.from_rows8(w[:512]))


def _pack_by_hand(q, block):
    """The documented layout (assistant.generation.int4's docstring): byte [b, k, j] = row B b + j | row B b + B/2 + j << 4."""
    n, k = q.shape
    rows = q.to(torch.uint8).reshape(n // block, block, k)
    return (rows[:, : block // 2] | (rows[:, block // 2:] << 4)).transpose(1, 2).contiguous()


def test_int4_layout_is_the_cpus_and_weights_packed_elsewhere_are_repacked_on_load():
    """torch packs 4-bit rows in blocks of 64 with AVX-512 and of 32 with AVX2 only: the probe names this
    CPU's block, the documented layout is exactly the kernel's, and a cache written on a CPU of the other
    layout loads to the same products here."""
    from assistant.generation.int4 import Weight, kernel_block, quantize_groups

    block = kernel_block()
    assert block in (32, 64)
    torch.manual_seed(2)
    w = torch.randn(128, 64)
    here = Weight.from_float(w, "int4")
    q, _scale, _low = quantize_groups(w)
    assert torch.equal(here.packed, _pack_by_hand(q, block))
    other = 96 - block  # the other kernel's block
    state = here.state("w")
    state["w.packed"] = _pack_by_hand(q, other)
    loaded = Weight.from_state(state, "w", "int4")
    assert loaded.block == block and torch.equal(loaded.packed, here.packed)
    x = torch.randn(2, 64).bfloat16()
    assert torch.equal(loaded(x), here(x))


@pytest.mark.parametrize("fmt", ["float32", "int4"])
def test_batched_decoding_gives_each_conversation_its_own_greedy_answer(fmt):
    """Four conversations generating at once through the DecodeBatcher: each gets exactly the tokens
    it gets alone, its own cache and its own stop; the steps really ran as batches."""
    import threading

    from tiny_model import tiny_tokenizer

    from assistant.generation.batching import DecodeBatcher
    from assistant.generation.models import wrap_loaded

    tok = tiny_tokenizer()
    model = _tiny_qwen2(vocab=448)  # the tokenizer's 400 ids, rounded up to the packed rows' 64
    alone = wrap_loaded(model, tok, name="tiny-qwen2")
    alone = dataclasses.replace(alone, fast=FastDecoder.build(model, fmt),
                                stop_token_ids=(tok.convert_tokens_to_ids("<|im_end|>"),))
    together = dataclasses.replace(alone, batcher=DecodeBatcher(alone.fast, max_batch=8))
    questions = ["How do refunds work?", "What is the capital of France?", "退款需要多长时间？", "Hallo, wie kann ich helfen?"]
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                       tokenize=True)["input_ids"] for q in questions]
    lengths = [24, 9, 31, 16]  # they finish at different steps: the batch shrinks as they leave
    settings = [GenerationConfig(max_new_tokens=n, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
                for n in lengths]
    expected = [Generation(alone, p, s).run().token_ids for p, s in zip(prompts, settings)]
    got: list = [None] * 4
    start = threading.Barrier(4)

    def run(i):
        start.wait()
        got[i] = Generation(together, prompts[i], settings[i]).run().token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected
    assert [len(g) for g in got] == lengths
    assert together.batcher.largest >= 2 and together.batcher.steps < together.batcher.rows  # steps were shared
    # the batched step itself, deterministically: four caches stepped together equal each stepped alone
    fast = alone.fast
    singles, batched = [fast.new_cache() for _ in prompts], [fast.new_cache() for _ in prompts]
    for p, a, b in zip(prompts, singles, batched):
        fast.forward(p, a)
        fast.forward(p, b)
    for tokens in ([7, 31, 120, 9], [50, 50, 3, 200], [11, 12, 13, 14]):
        one = torch.stack([fast.forward([t], c) for t, c in zip(tokens, singles)])  # (4, vocab)
        many = fast.forward_batch(tokens, batched)
        assert torch.equal(many.argmax(-1), one.argmax(-1))
        assert torch.allclose(many, one, atol=1e-4 if fmt == "float32" else 5e-2)
    assert [c.length for c in batched] == [c.length for c in singles]


def test_a_failing_batched_step_reaches_every_caller_of_that_batch():
    from assistant.generation.batching import DecodeBatcher

    class Broken:
        def forward(self, ids, cache):
            raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError, match="kernel failed"):
        DecodeBatcher(Broken()).step(3, object())


def test_every_pass_of_a_generation_runs_on_the_batchers_thread(tiny_lm):
    """Prompt, speculative checks and decode steps all start their OpenMP work from one thread (see
    ``batching``); the conversation's own thread samples on one core and gets its setting back after."""
    import threading

    import torch

    from assistant.generation.batching import DecodeBatcher

    fast = FastDecoder.build(tiny_lm.model, "float32")
    lm = dataclasses.replace(tiny_lm, fast=fast, batcher=DecodeBatcher(fast, max_batch=8))
    threads: list = []
    for name in ("forward_rows", "forward"):
        method = getattr(fast, name)

        def record(*args, _method=method):
            threads.append(threading.current_thread())
            return _method(*args)

        setattr(fast, name, record)
    prompt = tiny_lm.tokenizer.apply_chat_template([{"role": "user", "content": "refunds refunds refunds"}],
                                                   add_generation_prompt=True, tokenize=True)["input_ids"]
    before = torch.get_num_threads()
    settings = GenerationConfig(max_new_tokens=12, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
    plain = Generation(dataclasses.replace(tiny_lm, fast=FastDecoder.build(tiny_lm.model, "float32")), prompt,
                       settings).run()
    result = Generation(lm, prompt, settings).run()
    assert result.token_ids == plain.token_ids
    assert len(threads) >= 2 and {t.name for t in threads} == {"decode-batcher"}
    assert torch.get_num_threads() == before


def test_once_the_batcher_owns_the_cores_other_threads_run_torch_on_one():
    """``DecodeBatcher.own_cores``: the batcher's thread keeps the process's thread count, the caller and
    every thread that starts torch work afterwards run on one (no second team of OpenMP threads)."""
    import threading

    import torch

    from assistant.generation.batching import DecodeBatcher

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batcher = DecodeBatcher(object())
        batcher.call(lambda: None)  # its thread already runs before it is given the cores
        batcher.own_cores()
        assert batcher.call(torch.get_num_threads) == 2  # from its next item on
        assert torch.get_num_threads() == 1
        seen: list = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert seen == [1]
        assert torch.ones(4096, 64).sum().item() == 4096 * 64  # torch still works there, on one thread
    finally:
        torch.set_num_threads(before)


def test_a_call_runs_on_the_batchers_thread_and_its_error_reaches_the_caller():
    import threading

    from assistant.generation.batching import DecodeBatcher

    batcher = DecodeBatcher(object())
    assert batcher.call(lambda a, b: (threading.current_thread().name, a + b), 2, 3) == ("decode-batcher", 5)
    # from the batcher's own thread a call runs in place (it would otherwise wait for itself)
    assert batcher.call(lambda: batcher.call(lambda: threading.current_thread().name)) == "decode-batcher"

    def broken():
        raise ValueError("prompt too long")

    with pytest.raises(ValueError, match="prompt too long"):
        batcher.call(broken)
    assert batcher.call(lambda: "still serving") == "still serving"


def test_a_pass_while_others_decode_runs_on_the_callers_thread_on_one_core():
    """A prompt that arrives while other conversations decode does not queue behind their steps on the
    batcher's thread: it runs where it was asked, on one core, and the thread gets its setting back."""
    import threading

    import torch

    from assistant.generation.batching import DecodeBatcher, serial_here

    batcher = DecodeBatcher(object())
    before = torch.get_num_threads()
    here = threading.current_thread().name
    batcher.join()  # another conversation is decoding
    name, threads = batcher.run(lambda: (threading.current_thread().name, torch.get_num_threads()))
    assert name == here
    assert threads == (1 if serial_here(before) is not None else before)
    assert torch.get_num_threads() == before
    batcher.leave()
    assert batcher.run(lambda: threading.current_thread().name) == "decode-batcher"


def _random_adapter(model, folder, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj")):
    """A peft LoRA adapter on ``model`` with trained-looking (non-zero) B matrices, saved to ``folder``;
    returns the peft model (``model`` is changed in place)."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    torch.manual_seed(3)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    peft_model.eval()
    peft_model.save_pretrained(folder)
    return peft_model


def test_an_attached_adapter_changes_only_the_sequences_that_ask_for_it(tmp_path):
    """An adapter kept beside the weights (``attach_lora``): a cache made with ``adapter=True`` gets the
    adapted model's logits (peft's, through prefill and decode steps), any other cache the base model's,
    bit for bit as before; a batch never mixes the two."""
    from assistant.errors import ModelLoadError

    model = _tiny_qwen2(vocab=448)
    fast = FastDecoder.build(model, "float32")  # before peft wraps the modules: the base weights
    plain = fast.forward(IDS, fast.new_cache())
    with pytest.raises(ValueError, match="no adapter attached"):
        fast.new_cache(adapter=True)
    peft_model = _random_adapter(model, tmp_path / "adapter")
    assert fast.attach_lora(tmp_path / "adapter") == 4 * len(fast.layers)  # qkv, o, gate_up, down per layer
    adapted = _reference_logits(peft_model, IDS)
    with peft_model.disable_adapter():
        base = _reference_logits(peft_model, IDS)
    assert not torch.allclose(adapted[-1], base[-1], atol=1e-2)  # the adapter matters
    on, off = fast.new_cache(adapter=True), fast.new_cache()
    assert torch.allclose(fast.forward(IDS[:30], on), adapted[29], atol=1e-4)
    for i in range(30, 34):  # decode steps keep the adapter
        assert torch.allclose(fast.forward([IDS[i]], on), adapted[i], atol=1e-4)
    assert torch.equal(fast.forward(IDS, off), plain)
    with pytest.raises(ValueError, match="mixes"):
        fast.forward_batch([5, 6], [fast.new_cache(adapter=True), fast.new_cache()])
    # an adapter for another model is refused with the reason
    from transformers import Qwen2Config, Qwen2ForCausalLM

    narrow = Qwen2ForCausalLM(Qwen2Config(vocab_size=448, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2))
    _random_adapter(narrow, tmp_path / "other", targets=("q_proj",))
    with pytest.raises(ModelLoadError, match="does not fit the base model"):
        FastDecoder.build(_tiny_qwen2(vocab=448), "float32").attach_lora(tmp_path / "other")


def test_generations_with_and_without_the_adapter_share_the_batcher(tmp_path):
    """Two conversations decoding at once, one with the retry adapter: each gets the tokens it gets
    alone (the batcher runs the adapted steps apart from the base ones), and the adapted one takes no
    prefix cache from the other forward."""
    import threading

    from tiny_model import tiny_tokenizer

    from assistant.generation.batching import DecodeBatcher
    from assistant.generation.models import wrap_loaded

    tok = tiny_tokenizer()
    model = _tiny_qwen2(vocab=448)
    fast = FastDecoder.build(model, "float32")
    _random_adapter(model, tmp_path / "adapter")
    fast.attach_lora(tmp_path / "adapter")
    alone = dataclasses.replace(wrap_loaded(model, tok, name="tiny-qwen2"), fast=fast, retry_adapter=str(tmp_path),
                                stop_token_ids=(tok.convert_tokens_to_ids("<|im_end|>"),))
    together = dataclasses.replace(alone, batcher=DecodeBatcher(fast, max_batch=8))
    prompt = tok.apply_chat_template([{"role": "user", "content": "How do refunds work?"}], add_generation_prompt=True,
                                     tokenize=True)["input_ids"]
    settings = GenerationConfig(max_new_tokens=12, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
    expected = [Generation(alone, prompt, settings, adapter=a).run().token_ids for a in (False, True)]
    assert expected[0] != expected[1]
    got: list = [None, None]
    start = threading.Barrier(2)
    prefix = PrefixCache()

    def run(i):
        start.wait()
        got[i] = Generation(together, prompt, settings, prefix_cache=prefix if i else None, adapter=bool(i)).run()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [g.token_ids for g in got] == expected
    assert prefix.take(prompt)[0] is None  # the adapted run stored no cache for base turns to take


def test_an_answer_is_scored_by_the_model_or_the_adapter_that_wrote_it(tmp_path):
    """``score_answer(adapter=True)`` (the support check of a retry adapter's answer) gives the
    log-probabilities the adapted generation had, and not the base model's."""
    from tiny_model import tiny_tokenizer

    from assistant.errors import GenerationError
    from assistant.generation.scoring import score_answer
    from assistant.generation.models import wrap_loaded

    tok = tiny_tokenizer()
    model = _tiny_qwen2(vocab=448)
    plain = wrap_loaded(model, tok, name="tiny-qwen2")
    fast = FastDecoder.build(model, "float32")
    _random_adapter(model, tmp_path / "adapter")
    fast.attach_lora(tmp_path / "adapter")
    lm = dataclasses.replace(plain, fast=fast, retry_adapter=str(tmp_path))
    prompt = tok.apply_chat_template([{"role": "user", "content": "How do refunds work?"}], add_generation_prompt=True,
                                     tokenize=True)["input_ids"]
    settings = GenerationConfig(max_new_tokens=10, temperature=0.0, repetition_penalty=1.0, stop_on_repeat=0)
    adapted = Generation(lm, prompt, settings, adapter=True).run()
    scored = score_answer(lm, prompt, adapted.token_ids, adapter=True)
    assert scored == pytest.approx(adapted.logprobs, abs=1e-3)
    base = score_answer(lm, prompt, adapted.token_ids)
    assert max(abs(a - b) for a, b in zip(base, scored)) > 1e-2
    with pytest.raises(GenerationError, match="no adapter"):
        score_answer(plain, prompt, adapted.token_ids, adapter=True)


_HEAP_SCENARIO = """
import json
from assistant.generation.cpu import give_back_freed_memory


def resident_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


size = 8 * 2**20
block = bytes(range(256)) * (size // 256)  # written, so resident; freed, it raises glibc's threshold
del block
before = resident_mb()
block = bytes(range(256)) * (size // 256)
above = bytes(range(256)) * 256  # a live block after it in the heap
del block
kept = resident_mb()
given = give_back_freed_memory()
print(json.dumps({"kept": kept - before, "after": resident_mb() - before, "given": given}))
"""


def test_memory_freed_inside_the_heap_goes_back_to_the_system():
    """A large block freed below a live one stays resident (glibc trims only the top of its heap, and
    after the first large block it no longer maps such blocks apart); ``give_back_freed_memory``, run
    when a generation or an explanation ends, hands it back.  In a fresh process, whose heap holds
    nothing else the blocks could fall into."""
    import json
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc_trim: Linux only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _HEAP_SCENARIO], capture_output=True, text=True, env=env,
                         check=True, timeout=120)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if not figures["given"]:
        pytest.skip("not glibc: no malloc_trim")
    assert figures["kept"] > 6  # the freed block stayed resident by itself
    assert figures["after"] < 2


def test_without_libgomp_the_batcher_leaves_torchs_threads_alone(monkeypatch):
    """Where torch's OpenMP is not libgomp, the batcher's thread could not be given its own count back:
    ``own_cores`` then changes nothing rather than leave the decoder on one thread."""
    import torch

    from assistant.generation import batching

    monkeypatch.setattr(batching, "_openmp", lambda: None)
    before = torch.get_num_threads()
    batcher = batching.DecodeBatcher(object())
    batcher.own_cores()
    assert batcher.threads is None and torch.get_num_threads() == before
    assert batcher.call(torch.get_num_threads) == before
