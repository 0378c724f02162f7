"""A tiny random Llama-style model and a real BPE tokenizer with a ChatML
template, built in memory in well under a second (nanochat's MockModel idea).

Used by fast engine tests; its answers are random, but prompts, spans,
budgets, caching and streaming are exercised for real.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from assistant.generation.models import CHATML_TEMPLATE, LoadedModel, wrap_loaded

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "How do refunds work? Refunds are paid back to the card within five days.",
    "The assistant answers questions from your documents and shows its sources.",
    "退款需要多长时间？退款会在五个工作日内退回。",
    "Hallo, wie kann ich helfen? Bonjour, comment puis-je aider?",
    "system user assistant question answer source sources document reference",
] * 20
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_model(vocab_size: int, seed: int = 0, context: int = 1024, eos_token_id: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        eos_token_id=eos_token_id, bos_token_id=0, pad_token_id=0, tie_word_embeddings=True,
    )
    config._attn_implementation = "eager"
    return LlamaForCausalLM(config).eval()


def tiny_loaded(seed: int = 0, context: int = 1024) -> LoadedModel:
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=seed, context=context, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    return wrap_loaded(model, tok, name="tiny-llama")


class ScriptedBackend:
    """Stands in for a model that has been steered into saying ``text`` (the tiny random model
    never would): streams it word by word (or in the pieces ``split`` matches), with the tiny
    tokenizer's ids, and stops when cancelled."""

    def __init__(self, text: str, tokenizer, name: str = "tiny-llama", split: str = r"\S+\s*") -> None:
        self.text, self.tokenizer, self.name, self.split = text, tokenizer, name, split

    def generate(self, prompt, settings, cancel, cache):
        import re

        from assistant.generation.local import GenerationResult, TokenDelta

        backend = self

        class Scripted:
            result = GenerationResult(prompt_tokens=len(prompt.input_ids))

            def __iter__(self):
                for piece in re.findall(backend.split, backend.text):
                    if cancel.is_set():
                        self.result.finish_reason = "cancelled"
                        return
                    ids = backend.tokenizer(piece, add_special_tokens=False)["input_ids"]
                    self.result.text += piece
                    self.result.token_ids += ids
                    self.result.logprobs += [0.0] * len(ids)
                    yield TokenDelta(piece, ids[-1] if ids else 0, 0.0)
                self.result.text = self.result.text.strip()

        return Scripted()
