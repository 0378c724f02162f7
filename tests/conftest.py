"""Shared fixtures: a tiny random model for fast tests, the real default model
loaded once per session for the few tests that need it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

# The real-model cache is kept between runs (de-quantising the GGUF takes ~40 s);
# everything else a test writes goes to tmp_path.
REAL_HOME = Path(os.environ.get("ASSISTANT_TEST_HOME", Path(__file__).resolve().parent.parent / ".assistant-home"))


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A runtime built in a test hands the cores to its decoder (``DecodeBatcher.own_cores``: torch on one
    thread everywhere else); the next test gets the process's setting back."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_lm():
    from tiny_model import tiny_loaded

    return tiny_loaded()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_lm):
    """The tiny model saved as a model folder, for a real ``assistant`` process to load with ``--model``."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def store():
    from assistant.store import Store

    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture
def engine(tiny_lm, store):
    from assistant.config import ChatConfig, GenerationConfig
    from assistant.engine import Engine

    return Engine(tiny_lm, store, chat=ChatConfig(context_tokens=512), generation=GenerationConfig(max_new_tokens=8))


@pytest.fixture(scope="session")
def real_home() -> Path:
    REAL_HOME.mkdir(parents=True, exist_ok=True)
    return REAL_HOME


@pytest.fixture(scope="session")
def real_lm(real_home):
    """The default model (Qwen2.5-Coder-1.5B-Instruct, packed 4-bit from its GGUF), from its PyPI packages (loaded once)."""
    from assistant.config import ModelConfig
    from assistant.generation.models import load_model

    return load_model(ModelConfig(), home=real_home)
