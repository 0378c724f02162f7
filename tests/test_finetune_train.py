"""Finetuning outcomes on the tiny model: the loss goes down, LoRA weights move
while base weights stay put, the saved adapter reloads and changes the output,
``resume`` continues from the checkpoint, merge reproduces the adapter, and
the CLI commands run end to end."""

from __future__ import annotations

import json

import pytest
import torch

from assistant.config import ModelConfig
from assistant.generation.models import load_model

QA = [
    ("How do refunds work?", "Refunds are paid back to the card within five days."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What does the assistant do?", "The assistant answers questions from your documents."),
    ("退款需要多长时间？", "退款会在五个工作日内退回。"),
]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from tiny_model import tiny_loaded

    lm = tiny_loaded(seed=1)
    folder = tmp_path_factory.mktemp("tiny-base")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "train.jsonl"
    lines = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                           {"role": "assistant", "content": a}]} for q, a in QA * 4]
    p.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return p


def config(base_dir, data_file, out, **kw):
    from finetune.config import TrainConfig

    settings = dict(data=str(data_file), out=str(out), base=str(base_dir), max_steps=6, batch_size=4,
                    learning_rate=2e-2, warmup=0, logging_steps=1, save_steps=3, eval_fraction=0.0,
                    max_length=128, lora_r=8, lora_dropout=0.0, progress=False, seed=7, home=str(out.parent),
                    precision="fp32")  # the base's weights compared exactly; bf16 has its own test
    settings.update(kw)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(base_dir, data_file, tmp_path_factory):
    from finetune.train import train

    out = tmp_path_factory.mktemp("run") / "adapter"
    return train(config(base_dir, data_file, out))


def test_loss_goes_down(trained):
    losses = [loss for _, loss in trained.loss_history]
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.05


def test_lora_weights_changed_and_base_weights_did_not(trained, base_dir):
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(base_dir).state_dict()
    lora_b = base = 0
    for name, param in trained.model.named_parameters():
        if "lora_B" in name:
            lora_b += 1
            assert param.abs().sum() > 0, f"LoRA parameter {name} has not changed from its zero init"
        elif "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(param.detach().cpu(), original[key]), f"base parameter {key} changed"
            assert not param.requires_grad
            base += 1
    assert lora_b == 2 * 7 and base > 0  # 2 layers x 7 target modules


def test_saved_adapter_reloads_and_changes_output(trained, base_dir):
    ids = torch.tensor([[1, 5, 9, 30, 42, 7]])
    plain = load_model(ModelConfig(name=str(base_dir), quantization="none", device="cpu"), home=base_dir.parent)
    tuned = load_model(ModelConfig(name=str(base_dir), quantization="none", device="cpu",
                                   adapters=(trained.out,)), home=base_dir.parent)
    with torch.inference_mode():
        a = plain.model(input_ids=ids).logits
        b = tuned.model(input_ids=ids).logits
        trained.model.eval()
        c = trained.model(input_ids=ids).logits
    assert not torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(b, c, atol=1e-5)  # what was saved is what was trained


def test_metrics_and_model_card_written(trained):
    from pathlib import Path

    out = Path(trained.out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["result"]["global_step"] == 6 and metrics["config"]["lora_r"] == 8
    assert metrics["result"]["tokens_per_second"] > 0
    card = (out / "README.md").read_text()
    assert "r=8" in card and "assistant chat" in card


def test_resume_continues_from_checkpoint(trained, base_dir, data_file, tmp_path):
    from pathlib import Path

    from finetune.train import train

    checkpoint = Path(trained.out) / "checkpoints" / "checkpoint-3"
    assert checkpoint.is_dir()
    resumed = train(config(base_dir, data_file, tmp_path / "resumed", resume=str(checkpoint)))
    assert resumed.start_step == 3 and resumed.global_step == 6
    new_steps = [s for s, _ in resumed.loss_history if s > 3]
    assert new_steps == [4, 5, 6]
    # Same data order, optimizer and scheduler state: the continuation matches the uninterrupted run.
    original = dict(trained.loss_history)
    for step, loss in resumed.loss_history:
        if step > 3:
            assert loss == pytest.approx(original[step], rel=1e-3)


def test_resume_without_checkpoint_is_refused(base_dir, data_file, tmp_path):
    from assistant.errors import ConfigError
    from finetune.train import train

    with pytest.raises(ConfigError, match="no checkpoint"):
        train(config(base_dir, data_file, tmp_path / "fresh", resume=True))


def test_merge_reproduces_adapter_output(trained, base_dir, tmp_path):
    from finetune.merge import merge_adapter

    merged_dir = merge_adapter(str(base_dir), trained.out, tmp_path / "merged", home=tmp_path)
    merged = load_model(ModelConfig(name=str(merged_dir), quantization="none", device="cpu"), home=tmp_path)
    ids = torch.tensor([[1, 5, 9, 30, 42, 7]])
    with torch.inference_mode():
        trained.model.eval()
        assert torch.allclose(merged.model(input_ids=ids).logits, trained.model(input_ids=ids).logits, atol=1e-4)


def test_cli_finetune_skip_invalid_and_evaluate(base_dir, data_file, tmp_path, capsys):
    from assistant.cli.main import main

    data = tmp_path / "mixed.jsonl"
    data.write_text(data_file.read_text() + '{"messages": "oops"}\n', encoding="utf-8")
    out = tmp_path / "cli-adapter"
    common = ["--base", str(base_dir), "--home", str(tmp_path)]
    assert main(["finetune", "--data", str(data), "--out", str(out), "--max-steps", "2", "--save-steps", "2",
                 "--eval-fraction", "0", "--no-progress", "--lr", "1e-2", *common]) == 2  # refused
    assert "mixed.jsonl line 17: `messages` must be a non-empty list" in capsys.readouterr().err
    assert main(["finetune", "--data", str(data), "--out", str(out), "--max-steps", "2", "--save-steps", "2",
                 "--eval-fraction", "0", "--no-progress", "--lr", "1e-2", "--skip-invalid", *common]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 invalid line(s)" in printed and (out / "adapter_config.json").is_file()
    assert main(["evaluate", "--data", str(data_file), "--adapter", str(out), "--limit", "2",
                 "--max-new-tokens", "4", *common]) == 0
    table = capsys.readouterr().out
    assert "| base | 2 |" in table and "| adapter cli-adapter | 2 |" in table and "ROUGE-L" in table


def test_qlora_path_trains_on_a_4bit_base(base_dir, data_file, tmp_path):
    pytest.importorskip("bitsandbytes")
    from finetune.train import train

    result = train(config(base_dir, data_file, tmp_path / "qlora", max_steps=2, save_steps=2, quantization="nf4"))
    assert result.quantization == "nf4"
    assert any(type(m).__name__ == "Linear4bit" for m in result.model.modules())
    assert all(p.abs().sum() > 0 for n, p in result.model.named_parameters() if "lora_B" in n)


def test_bf16_on_cpu_keeps_the_base_in_bf16_and_trains_fp32_lora(base_dir, data_file, tmp_path):
    from finetune.train import train

    result = train(config(base_dir, data_file, tmp_path / "bf16", max_steps=3, save_steps=3, precision="bf16",
                          device="cpu"))
    assert result.precision == "bf16" and result.device == "cpu"
    params = dict(result.model.named_parameters())
    assert {p.dtype for n, p in params.items() if "lora_" in n} == {torch.float32}
    assert {p.dtype for n, p in params.items() if "lora_" not in n} == {torch.bfloat16}
    assert all(p.abs().sum() > 0 for n, p in params.items() if "lora_B" in n)
    assert result.last_loss < result.first_loss
    card = (tmp_path / "bf16" / "README.md").read_text(encoding="utf-8")
    assert "bf16 compute" in card


def test_fp16_without_cuda_is_refused(base_dir, data_file, tmp_path):
    from assistant.errors import ConfigError
    from finetune.train import train

    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed where CUDA is present")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        train(config(base_dir, data_file, tmp_path / "fp16", max_steps=1, precision="fp16"))


def test_cli_options_cover_train_config():
    import argparse
    import dataclasses

    from assistant.cli.finetune import register
    from finetune.config import TrainConfig

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finetune", "--data", "d.jsonl", "--out", "o"])
    missing = {f.name for f in dataclasses.fields(TrainConfig)} - set(vars(args)) - {"progress", "command"}
    assert not missing, f"TrainConfig fields without a CLI option: {missing}"
    defaults = TrainConfig(data="d.jsonl", out="o")
    for f in dataclasses.fields(TrainConfig):
        if f.name in vars(args) and f.name not in ("data", "out", "home", "command", "progress", "base"):
            assert getattr(args, f.name) == getattr(defaults, f.name), f.name


def test_the_cli_trains_on_the_model_the_assistant_serves(tmp_path, monkeypatch):
    """Without --base, an adapter is trained on (and evaluated / merged with) the model the assistant serves,
    so that it loads there; an adapter named on the command line brings its own base."""
    import argparse

    from assistant.cli.finetune import register, serving_model
    from assistant.generation.registry import DEFAULT_MODEL

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    monkeypatch.delenv("ASSISTANT_MODEL", raising=False)
    monkeypatch.delenv("ASSISTANT_CONFIG", raising=False)
    args = parser.parse_args(["finetune", "--data", "d.jsonl", "--out", "o"])
    assert serving_model(args) == DEFAULT_MODEL
    monkeypatch.setenv("ASSISTANT_MODEL", "gemma-3-270m")
    assert serving_model(args) == "gemma-3-270m"
    assert serving_model(parser.parse_args(["finetune", "--data", "d", "--out", "o", "--base", "x/y"])) == "x/y"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m-instruct"}))
    for argv in (["merge", "--adapter", str(adapter), "--out", "m"],
                 ["evaluate", "--data", "d", "--adapter", str(adapter)],
                 ["finetune", "--data", "d", "--out", "o", "--init-adapter", str(adapter)]):
        assert serving_model(parser.parse_args(argv)) == "smollm2-135m-instruct", argv
    (adapter / "adapter_config.json").write_text("{broken")  # unreadable: the served model, not a crash
    assert serving_model(parser.parse_args(["merge", "--adapter", str(adapter), "--out", "m"])) == "gemma-3-270m"


def test_auto_precision_and_checkpointing_follow_the_machine_and_the_model_size():
    from assistant.generation.cpu import bf16_matmul_fast
    from finetune.config import TrainConfig
    from finetune.train import CHECKPOINTING_PARAMETERS, resolve_checkpointing, resolve_precision

    auto = TrainConfig(data="d", out="o")
    assert resolve_precision(auto, "cpu") == ("bf16" if bf16_matmul_fast() else "fp32")
    assert resolve_precision(TrainConfig(data="d", out="o", precision="fp32"), "cpu") == "fp32"
    assert resolve_checkpointing(auto, CHECKPOINTING_PARAMETERS) is True  # Qwen2.5-1.5B: 1.54B
    assert resolve_checkpointing(auto, 268_000_000) is False  # Gemma-3-270M
    assert resolve_checkpointing(TrainConfig(data="d", out="o", gradient_checkpointing=False), 2 * 10**9) is False
    assert resolve_checkpointing(TrainConfig(data="d", out="o", gradient_checkpointing=True), 10**6) is True


def test_gradient_checkpointing_trains_the_same_adapter(base_dir, data_file, tmp_path):
    """Recomputing activations changes memory and time, not the result."""
    from finetune.train import train

    plain = train(config(base_dir, data_file, tmp_path / "plain", max_steps=2, save_steps=2,
                         gradient_checkpointing=False))
    recomputed = train(config(base_dir, data_file, tmp_path / "gc", max_steps=2, save_steps=2,
                              gradient_checkpointing=True))
    assert (plain.gradient_checkpointing, recomputed.gradient_checkpointing) == (False, True)
    assert "gradient checkpointing" in (tmp_path / "gc" / "README.md").read_text(encoding="utf-8")
    assert "gradient checkpointing" not in (tmp_path / "plain" / "README.md").read_text(encoding="utf-8")
    a, b = dict(plain.model.named_parameters()), dict(recomputed.model.named_parameters())
    lora = [n for n in a if "lora_B" in n]
    assert lora and all(a[n].abs().sum() > 0 for n in lora)
    assert all(torch.allclose(a[n], b[n], atol=1e-5) for n in lora)


def test_reply_only_loss_equals_the_full_loss(base_dir, tmp_path):
    """The trainer projects onto the vocabulary only where a reply token is
    predicted; loss and gradients must match the model's own masked loss."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from finetune.batches import make_collator, reply_loss_trainer

    model = AutoModelForCausalLM.from_pretrained(base_dir).float()
    pad = 0
    batch = make_collator(pad)([
        {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
        {"input_ids": [11, 12, 13, 14], "labels": [-100, 12, -100, 14]},
    ])
    full = model(**batch).loss
    full.backward()
    want = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = reply_loss_trainer()(model=model, args=args)
    ours = trainer.compute_loss(model, dict(batch))
    ours.backward()
    got = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert torch.allclose(ours, full, atol=1e-5)
    assert len(got) == len(want) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))
    # with the Trainer's count over the accumulated batch the loss is a sum over that count
    n = int((batch["labels"][:, 1:] != -100).sum())
    summed = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(2 * n))
    assert torch.allclose(summed * 2, full, atol=1e-5)


def test_init_adapter_trains_an_existing_adapter_further(trained, base_dir, data_file, tmp_path):
    from safetensors.torch import load_file

    from finetune.train import train

    out = tmp_path / "further"
    again = train(config(base_dir, data_file, out, max_steps=2, init_adapter=trained.out))
    before = load_file(f"{trained.out}/adapter_model.safetensors")
    after = load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()  # same rank and modules as the adapter it started from
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # it starts from the trained adapter, not from zero: its first loss is near where that run ended
    assert again.first_loss < trained.first_loss
    assert "continued from" in (out / "README.md").read_text()
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(base_dir)  # the base as given, not a cache folder


def test_a_bad_data_file_is_refused_before_the_model_loads(tmp_path):
    """The line and the reason come at once, not after minutes of loading (and de-quantising) the base: here the
    base does not even exist, and the data error is what the user gets."""
    from assistant.errors import DataFormatError
    from finetune.config import TrainConfig
    from finetune.train import train

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                   '{"messages": "oops"}\n', encoding="utf-8")
    cfg = dict(out=str(tmp_path / "out"), base="no-such-model", progress=False, home=str(tmp_path))
    with pytest.raises(DataFormatError, match="line 2"):
        train(TrainConfig(data=str(bad), **cfg))
    with pytest.raises(DataFormatError, match="does not exist"):
        train(TrainConfig(data=str(tmp_path / "missing.jsonl"), **cfg))
