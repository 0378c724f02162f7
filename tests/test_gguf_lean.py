"""GGUF blocks straight into packed 4-bit weights: lossless for Q4_K and Q4_1, 8-bit rows for finer
types, checked against the ``gguf`` package's own de-quantisation; the cache's version stamp; the
header reader."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from assistant.errors import ModelLoadError
from assistant.generation.gguf_lean import architecture, tensor_weight


def _blocks(kind, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random but valid blocks: finite f16 scales, any 4-bit (Q6_K: 6-bit) values and sub-scales."""
    from gguf import GGMLQuantizationType as T

    rng = np.random.default_rng(seed)
    size, values = {T.Q4_K: (144, 256), T.Q4_1: (20, 32), T.Q6_K: (210, 256)}[kind]
    n = rows * cols // values
    blocks = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    if kind == T.Q6_K:  # 128 low bytes, 64 high bytes, 16 int8 sub-scales, then the f16 scale
        blocks[:, 208:210] = np.float16(rng.uniform(1e-5, 1e-4, n)).view(np.uint8).reshape(n, 2)
    else:
        blocks[:, 0:2] = np.float16(rng.uniform(0.001, 0.02, n)).view(np.uint8).reshape(n, 2)
        blocks[:, 2:4] = np.float16(rng.uniform(0.001, 0.02, n)).view(np.uint8).reshape(n, 2)
    return blocks.reshape(rows, cols // values * size)


@pytest.mark.parametrize("name", ["Q4_K", "Q4_1", "Q6_K", "Q8_0", "F16"])
def test_tensor_weight_equals_the_gguf_packages_dequantisation(name):
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize, quantize

    from assistant.generation.int4 import Weight

    kind = getattr(T, name)
    rows, cols = 128, 512  # (out, in)
    if kind in (T.Q4_K, T.Q4_1, T.Q6_K):
        data = _blocks(kind, rows, cols)
    else:
        data = quantize(np.random.default_rng(1).normal(0, 0.02, (rows, cols)).astype(np.float32), kind)
    tensor = SimpleNamespace(tensor_type=kind, shape=np.array([cols, rows]), data=data)
    expected = torch.from_numpy(dequantize(data, kind).astype(np.float32)).reshape(rows, cols)
    weight = tensor_weight(tensor)
    assert (weight.out_features, weight.in_features) == (rows, cols)
    got = weight.dequantize().float()
    error = float((got - expected).norm() / expected.norm())
    x = torch.randn(3, cols, generator=torch.Generator().manual_seed(0)).bfloat16()
    product = weight(x).float()  # the decode kernel (3 rows) agrees with the de-quantised matrix
    reference = x.float() @ expected.T
    assert float((product - reference).norm() / reference.norm()) < error + 0.01
    if kind in (T.Q4_K, T.Q4_1):
        assert weight.packed is not None
        assert error < 0.01  # the same 4-bit values; only scale and zero are rounded to bf16
    else:  # finer than 4 bits: 8-bit rows, several times closer to the file than 4-bit groups would be
        assert weight.rows8 is not None and weight.packed is None
        regrouped = Weight.from_float(expected, "int4").dequantize().float()
        assert error < 0.012 and error < float((regrouped - expected).norm() / expected.norm()) / 4


def test_architecture_is_read_from_the_header(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "qwen2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert architecture(path) == "qwen2"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        architecture(bad)


def _tiny_checkpoint(fine: tuple[str, ...] = ()):
    """What ``convert`` returns, for a tiny random Qwen2 built here: packed weights, config, tokenizer;
    the linear layers named in ``fine`` (e.g. ``v_proj``) as 8-bit rows, as a Q4_K_M file's Q6_K ones."""
    from test_fastdecode import _tiny_qwen2
    from tiny_model import tiny_tokenizer

    from assistant.generation.int4 import Weight

    tokenizer = tiny_tokenizer()
    model = _tiny_qwen2(vocab=384)
    tensors = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            store = Weight.from_rows8 if name.split(".")[-1] in fine else lambda w, bias: Weight.from_float(w, "int4", bias)
            tensors.update(store(module.weight, bias=module.bias).state(name))
    embed = model.model.embed_tokens.weight
    tensors.update((Weight.from_rows8(embed) if "embed_tokens" in fine else Weight.from_float(embed, "int4"))
                   .state("model.embed_tokens"))
    tensors.update({k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith("norm.weight")})
    return model, tensors, model.config, tokenizer


def test_the_lean_checkpoint_is_cached_rebuilt_for_a_new_version_and_serves_both_forwards(tmp_path, monkeypatch,
                                                                                          caplog):
    import logging

    import assistant.generation.gguf_lean as lean

    model, tensors, config, tokenizer = _tiny_checkpoint()
    calls = []
    monkeypatch.setattr(lean, "convert", lambda path, mixed=False: calls.append(path) or (dict(tensors), config, tokenizer))
    source = tmp_path / "tiny.gguf"
    first = lean.load_lean(source, tmp_path / "models", "f1")
    again = lean.load_lean(source, tmp_path / "models", "f1")
    assert len(calls) == 1 and first.folder == again.folder  # converted once, then read from the cache
    ids = list(range(5, 45))
    with torch.inference_mode():
        reference = model(torch.tensor([ids])).logits[0, -1]
        shared = again.model(torch.tensor([ids])).logits[0, -1].float()
    lean_logits = again.fast.forward(ids, again.fast.new_cache())
    assert float((lean_logits - reference).norm() / reference.norm()) < 0.2  # 4-bit groups, random model
    assert float((shared - lean_logits).norm() / lean_logits.norm()) < 0.02  # one copy, two forwards
    assert not any(isinstance(m, torch.nn.Linear) for m in again.model.modules())
    # q, k, v and gate, up are stored as the one matrix the decoder multiplies, and used as stored
    from safetensors import safe_open

    with safe_open(str(again.folder / "weights.safetensors"), "pt") as f:
        stored = set(f.keys())
    assert "model.layers.0.self_attn.qkv_proj.packed" in stored and "model.layers.0.mlp.gate_up_proj.packed" in stored
    assert not any(".q_proj." in k or ".up_proj." in k for k in stored)
    monkeypatch.setattr(lean, "CACHE_VERSION", lean.CACHE_VERSION + 1)
    with caplog.at_level(logging.INFO, logger="assistant.generation.gguf_lean"):
        rebuilt = lean.load_lean(source, tmp_path / "models", "f1")
    assert len(calls) == 2 and rebuilt.folder != first.folder and not first.folder.exists()
    assert sum("from another version or --fast-decode setting; rebuilding" in r.getMessage() for r in caplog.records) == 1


def test_matrices_stored_finer_than_4_bits_stay_8_bit_rows_through_cache_fusion_and_both_forwards(tmp_path,
                                                                                                  monkeypatch):
    """A Q4_K_M file's Q6_K layer matrices (v and down of half the layers) are kept as 8-bit rows: cached
    as such, fused with 4-bit q and k into 8-bit rows, shared by the Explain model; and with every layer
    matrix in 8-bit rows, the lean logits come closer to the float model's."""
    import assistant.generation.gguf_lean as lean

    ids = list(range(5, 45))
    errors = {}
    every = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    for fine in ((), ("v_proj", "down_proj"), every):
        model, tensors, config, tokenizer = _tiny_checkpoint(fine)
        monkeypatch.setattr(lean, "convert", lambda path, mixed=False: (dict(tensors), config, tokenizer))
        loaded = lean.load_lean(tmp_path / "tiny.gguf", tmp_path / f"models{len(fine)}", "f1")
        with torch.inference_mode():
            reference = model(torch.tensor([ids])).logits[0, -1]
            shared = loaded.model(torch.tensor([ids])).logits[0, -1].float()
        lean_logits = loaded.fast.forward(ids, loaded.fast.new_cache())
        errors[fine] = float((lean_logits - reference).norm() / reference.norm())
        assert float((shared - lean_logits).norm() / lean_logits.norm()) < 0.02  # one copy, two forwards
        if fine == ("v_proj", "down_proj"):
            from safetensors import safe_open

            with safe_open(str(loaded.folder / "weights.safetensors"), "pt") as f:
                stored = set(f.keys())
            assert {"model.layers.0.self_attn.qkv_proj.rows8", "model.layers.0.mlp.down_proj.rows8",
                    "model.layers.0.mlp.gate_up_proj.packed", "model.embed_tokens.packed"} <= stored
            assert loaded.fast.layers[0].qkv.rows8 is not None and loaded.fast.head is loaded.fast.embed
    # the 4-bit embedding, which is the output layer too, keeps the rest of the error
    assert errors[every] < 0.75 * errors[()] and errors[("v_proj", "down_proj")] < errors[()]


def test_a_finer_output_matrix_beside_a_tied_embedding_refines_the_decoders_scores(tmp_path, monkeypatch):
    """Qwen2.5's Q4_K_M stores its tied output matrix in Q6_K beside a Q4_K embedding: the cached config
    says where in the file it is, the decoder's head is a ``RefinedHead`` reading its rows from there,
    shared with the Explain model, and a decode step's greedy choice is the file matrix's own."""
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize, quantize

    import assistant.generation.gguf_lean as lean
    from assistant.generation.int4 import RefinedHead

    model, tensors, config, tokenizer = _tiny_checkpoint()
    w = model.model.embed_tokens.weight.detach().numpy()
    blocks = quantize(w, T.Q8_0)  # the "finer" output matrix (the gguf package cannot write Q6_K)
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"x" * 96 + blocks.tobytes())
    config.lean_output_rows = {"offset": 96, "type": "Q8_0", "rows": w.shape[0], "cols": w.shape[1]}
    monkeypatch.setattr(lean, "convert", lambda path, mixed=False: (dict(tensors), config, tokenizer))
    loaded = lean.load_lean(source, tmp_path / "models", "f1")
    again = lean.load_lean(source, tmp_path / "models", "f1")  # read back from the cache's config
    for lm in (loaded, again):
        assert isinstance(lm.fast.head, RefinedHead) and lm.fast.head.coarse is lm.fast.embed
        assert lm.model.lm_head.weight_store is lm.fast.head
    fine = torch.from_numpy(dequantize(blocks, T.Q8_0).reshape(w.shape))
    assert torch.equal(again.fast.head.fine.rows(torch.tensor([3, 0, 383])), fine[[3, 0, 383]])
    head, seen = again.fast.head, []
    again.fast.head = lambda x: seen.append(x) or head(x)
    cache = again.fast.new_cache()
    first = again.fast.forward(list(range(5, 45)), cache)
    step = again.fast.forward([int(first.argmax())], cache)  # a decode step
    assert int(step.argmax()) == int((seen[-1].float() @ fine.T).argmax())
    (tmp_path / "tiny.gguf").write_bytes(b"x" * 96)  # the file no longer holds those rows
    with pytest.raises(ModelLoadError, match="does not hold the 384x128 Q8_0 output matrix"):
        lean.load_lean(source, tmp_path / "models", "f1")


def test_the_output_layer_is_re_scored_from_the_files_output_matrix_where_it_is_finer():
    from types import SimpleNamespace

    from gguf import GGMLQuantizationType as T

    from assistant.generation.gguf_lean import output_rows

    def kinds(embed, output):
        named = {"token_embd.weight": embed, "output.weight": output}
        return {k: SimpleNamespace(tensor_type=v) for k, v in named.items() if v is not None}

    assert output_rows(kinds(T.Q4_K, T.Q6_K)) == "output.weight"  # Qwen2.5 in Q4_K_M
    assert output_rows(kinds(T.Q8_0, None)) == "token_embd.weight"  # Gemma 3 270M: tied, Q8_0
    assert output_rows(kinds(T.Q6_K, T.Q4_K)) is None  # the output matrix is what scores
    assert output_rows(kinds(T.Q4_1, None)) is None and output_rows(kinds(T.Q5_0, None)) is None


def test_a_damaged_cache_says_how_to_rebuild_it(tmp_path, monkeypatch):
    import assistant.generation.gguf_lean as lean

    _, tensors, config, tokenizer = _tiny_checkpoint()
    monkeypatch.setattr(lean, "convert", lambda path, mixed=False: (dict(tensors), config, tokenizer))
    folder = lean.load_lean(tmp_path / "tiny.gguf", tmp_path / "models", "f1").folder
    (folder / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="is damaged.*delete that folder"):
        lean.load_lean(tmp_path / "tiny.gguf", tmp_path / "models", "f1")


def test_a_cache_that_cannot_be_written_leaves_the_model_running_from_memory(tmp_path, monkeypatch, caplog):
    """A full disk or a home that is not writable costs the next start a conversion, not this start."""
    import logging

    import assistant.generation.gguf_lean as lean

    _, tensors, config, tokenizer = _tiny_checkpoint()
    monkeypatch.setattr(lean, "convert", lambda path, mixed=False: (dict(tensors), config, tokenizer))
    blocker = tmp_path / "home"
    blocker.write_text("a file where the cache folder's parent should be")
    with caplog.at_level(logging.WARNING, logger="assistant.generation.gguf_lean"):
        unsaved = lean.load_lean(tmp_path / "tiny.gguf", blocker / "models", "f1")
    cached = lean.load_lean(tmp_path / "tiny.gguf", tmp_path / "models", "f1")
    assert unsaved.folder == tmp_path / "tiny.gguf" and blocker.is_file()
    assert any("could not write the model cache" in r.getMessage() and "running from memory" in r.getMessage()
               for r in caplog.records)
    ids = list(range(5, 45))
    assert torch.equal(unsaved.fast.forward(ids, unsaved.fast.new_cache()),
                       cached.fast.forward(ids, cached.fast.new_cache()))
    assert unsaved.tokenizer.encode("hello world") == cached.tokenizer.encode("hello world")


def test_a_lora_adapter_is_merged_into_the_packed_weights(tmp_path, monkeypatch):
    """An adapter trained with peft on the float model, merged into the lean model's 4-bit weights,
    moves the lean logits the way it moves the float model's."""
    from peft import LoraConfig, get_peft_model

    import assistant.generation.gguf_lean as lean

    model, tensors, config, tokenizer = _tiny_checkpoint()
    monkeypatch.setattr(lean, "convert", lambda path, mixed=False: (dict(tensors), config, tokenizer))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = list(range(5, 45))
    with torch.inference_mode():
        with_adapter = peft_model(torch.tensor([ids])).logits[0, -1]
        with peft_model.disable_adapter():
            without = peft_model(torch.tensor([ids])).logits[0, -1]
    merged = lean.load_lean(tmp_path / "tiny.gguf", tmp_path / "models", "f1", adapters=(str(tmp_path / "adapter"),))
    plain = lean.load_lean(tmp_path / "tiny.gguf", tmp_path / "models", "f1")
    got = merged.fast.forward(ids, merged.fast.new_cache())
    base = plain.fast.forward(ids, plain.fast.new_cache())
    assert float((got - with_adapter).norm()) < 0.5 * float((base - with_adapter).norm())
    assert float((with_adapter - without).norm() / without.norm()) > 0.1  # the adapter matters




def test_llama_q_and_k_rows_are_put_back_in_transformers_order():
    """llama.cpp's converter interleaves the rotary halves of each head's q and k rows; the lean loader
    undoes that by taking rows in ``_unpermute`` order (its ``permute``, as convert_hf_to_gguf.py writes it)."""
    from gguf import GGMLQuantizationType as T

    from assistant.generation.gguf_lean import _hf_name, _unpermute

    heads, dim, cols = 4, 16, 64
    hf = np.random.default_rng(0).normal(size=(heads * dim, cols)).astype(np.float32)
    gguf_rows = hf.reshape(heads, 2, dim // 2, cols).swapaxes(1, 2).reshape(hf.shape)  # llama.cpp's permute
    assert np.array_equal(gguf_rows[_unpermute(heads * dim, heads)], hf)
    tensor = SimpleNamespace(tensor_type=T.F32, shape=np.array([cols, heads * dim]), data=gguf_rows)
    got = tensor_weight(tensor, order=_unpermute(heads * dim, heads)).dequantize().float()
    assert float((got - torch.from_numpy(hf)).norm() / np.linalg.norm(hf)) < 0.1  # re-grouped to 4 bits
    # Gemma 3's extra norms find their transformers names; Qwen2's and Llama's "ffn_norm" is another one
    assert _hf_name("blk.3.ffn_norm.weight", "gemma3") == "model.layers.3.pre_feedforward_layernorm.weight"
    assert _hf_name("blk.3.post_ffw_norm.weight", "gemma3") == "model.layers.3.post_feedforward_layernorm.weight"
    assert _hf_name("blk.3.attn_q_norm.weight", "gemma3") == "model.layers.3.self_attn.q_norm.weight"
    assert _hf_name("blk.3.ffn_norm.weight", "llama") == "model.layers.3.post_attention_layernorm.weight"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_the_small_registry_models_load_as_one_packed_copy_that_agrees_with_transformers(name, real_home):
    """SmolLM2 (llama) and Gemma 3 load from their GGUF as packed 4-bit weights, one copy for generation
    and Explain, and predict what transformers' own de-quantised model predicts."""
    from assistant.config import ModelConfig
    from assistant.generation.models import load_model

    lean = load_model(ModelConfig(name=name, adapters=()), home=real_home)
    assert lean.quantization == "int4" and lean.fast is not None
    assert not any(isinstance(m, torch.nn.Linear) for m in lean.model.modules())
    reference = load_model(ModelConfig(name=name, quantization="none", fast_decode="off", adapters=()), home=real_home)
    ids = lean.tokenizer("The capital of France is Paris. The capital of Italy is")["input_ids"]
    with torch.inference_mode():
        want = reference.model(torch.tensor([ids])).logits[0, -1].float()
        explain = lean.model(torch.tensor([ids])).logits[0, -1].float()
    decode = lean.fast.forward(ids, lean.fast.new_cache()).float().reshape(-1)
    for got in (explain, decode):
        assert int(got.argmax()) == int(want.argmax())
        assert float((got - want).norm() / want.norm()) < 0.25  # the file's 5- and 8-bit tensors re-grouped to 4 bits
    assert float((explain - decode).norm() / decode.norm()) < 0.03  # one copy, two forwards


def test_the_retry_adapter_reaches_the_explain_model_only_inside_adapter_active(tmp_path, monkeypatch):
    """The adapter kept unmerged beside the packed weights (the retry adapter) changes the transformers
    model that Explain runs, over the same bytes, only inside ``adapter_active()``: there it agrees with
    the decoder's adapted forward, outside with its base forward."""
    from peft import LoraConfig, get_peft_model

    import assistant.generation.gguf_lean as lean
    from assistant.generation.batching import DecodeBatcher
    from assistant.generation.shared_weights import adapter_active, share_lora

    model, tensors, config, tokenizer = _tiny_checkpoint()
    monkeypatch.setattr(lean, "convert", lambda path, mixed=False: (dict(tensors), config, tokenizer))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj",
                                                                                    "down_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    peft_model.save_pretrained(tmp_path / "adapter")
    loaded = lean.load_lean(tmp_path / "tiny.gguf", tmp_path / "models", "f1")
    loaded.fast.attach_lora(tmp_path / "adapter")
    assert share_lora(loaded.model, loaded.fast)
    ids = list(range(5, 45))
    adapted = loaded.fast.forward(ids, loaded.fast.new_cache(adapter=True))
    base = loaded.fast.forward(ids, loaded.fast.new_cache())
    with torch.inference_mode():
        outside = loaded.model(torch.tensor([ids])).logits[0, -1].float()
        with adapter_active():
            inside = loaded.model(torch.tensor([ids])).logits[0, -1].float()

    def explain_pass():
        with torch.inference_mode():
            return loaded.model(torch.tensor([ids])).logits[0, -1].float()

    with adapter_active():  # a pass handed to the decode batcher's thread runs with the caller's setting
        on_batcher = DecodeBatcher(loaded.fast).call(explain_pass)
    assert float((adapted - base).norm() / base.norm()) > 0.1  # the adapter matters
    assert float((inside - adapted).norm() / adapted.norm()) < 0.02
    assert float((on_batcher - adapted).norm() / adapted.norm()) < 0.02
    assert float((outside - base).norm() / base.norm()) < 0.02
