"""Answers stay in the writing systems of their user (``assistant.generation.script_mask``)."""

from __future__ import annotations

import pytest
import torch

from assistant.config import ChatConfig, GenerationConfig
from assistant.errors import ConfigError
from assistant.generation.local import Generation
from assistant.generation.script_mask import (ScriptMask, allowed_scripts, byte_level, scripts_written, token_bytes,
                                              vocabulary)
from assistant.understanding.scripts import script_of


def _letters(text: str) -> set[str]:
    return {s for s in map(script_of, text) if s and s not in ("latin", "other")}


def test_whole_and_cut_off_characters_count_by_their_script():
    assert scripts_written("字段".encode()) == {"han"}
    assert scripts_written("Größe".encode()) == {"latin"}
    assert scripts_written("Привет".encode()) == {"cyrillic"}
    assert scripts_written(b" 12; ok") == frozenset()
    assert scripts_written("；".encode()) == frozenset()  # full-width punctuation is no letter
    # a token ending in the first bytes of a character: the script of the code points they can begin
    assert scripts_written("字".encode()[:1]) == {"han"}  # 0xE5: U+5000..U+5FFF
    assert scripts_written("字".encode()[:2]) == {"han"}
    assert scripts_written("П".encode()[:1]) == {"cyrillic"}  # 0xD0: U+0400..U+043F
    assert scripts_written("한".encode()[:1]) == frozenset()  # 0xED: U+D000..U+DFFF, under half of it Hangul
    assert scripts_written("한".encode()[:2]) == {"hangul"}  # 0xED 0x95: all of it
    assert scripts_written("😀".encode()[:2]) == frozenset()  # emoji and the rest of the 4-byte planes: no script
    # bytes continuing a character begun in an earlier token say nothing
    assert scripts_written("字".encode()[1:]) == frozenset()


def test_an_answer_may_use_latin_its_languages_scripts_and_those_of_the_message():
    assert allowed_scripts("de", "Welche Dateiformate kann ich hochladen?") == {"latin"}
    assert allowed_scripts("ja", "料金はいくらですか") == {"latin", "han", "kana"}
    assert allowed_scripts("ru", "Как загрузить файл?") == {"latin", "cyrillic"}
    assert allowed_scripts("en", "What does 你好 mean?") == {"latin", "han"}
    assert allowed_scripts("unknown", "ok") == {"latin"}


def test_vocabulary_entries_are_read_as_the_bytes_they_write():
    assert byte_level(["Ġthe", "Ġa", "▁odd", "x"]) and not byte_level(["▁the", "▁a", "Ġodd"])
    assert token_bytes("ĠfÃ¼r", True) == " für".encode()  # GPT-2's alphabet read back
    assert token_bytes("åŃĹ", True) == "字".encode()
    assert token_bytes("▁für", False) == " für".encode()  # SentencePiece: the text, ▁ a space
    assert token_bytes("ï", False) == "ï".encode()  # not GPT-2's byte 0xEF in a SentencePiece vocabulary
    assert token_bytes("<0xE5>", False) == b"\xe5"  # byte fallback


def test_the_mask_takes_only_tokens_of_other_scripts(tiny_lm):
    tok = tiny_lm.tokenizer
    vocab = vocabulary(tok)
    banned = vocab.mask(frozenset({"latin"}))
    han = [i for i in range(len(tok)) if "han" in scripts_written(token_bytes(tok.convert_ids_to_tokens(i), True))]
    assert han and all(banned[i] for i in han)  # the tiny vocabulary learnt Chinese from its corpus
    for word in ("Paris", " refunds", " Bonjour", "?"):
        assert not any(banned[i] for i in tok(word, add_special_tokens=False)["input_ids"])
    # the corpus has no other script: what else is masked is the lone first bytes of Cyrillic, Greek, ...
    # letters that byte-level BPE keeps in every vocabulary
    others = vocab.mask(frozenset({"latin", "han"})).nonzero().flatten().tolist()
    assert others and all(len(token_bytes(tok.convert_ids_to_tokens(i), True)) == 1 for i in others)
    # as a processor: the best token left is chosen, and scores of the others are untouched
    scores = torch.zeros(1, len(tok))
    scores[0, han[0]], scores[0, 7] = 5.0, 3.0
    out = ScriptMask(tok, frozenset({"latin"}))(torch.tensor([[1]]), scores)
    assert int(out.argmax()) == 7 and out[0, han[0]] == -torch.inf and out[0, 7] == 3.0


def test_a_generated_answer_writes_no_letter_of_a_script_not_allowed(tiny_lm):
    """The tiny random model writes Chinese freely; with the scripts set, never, and the answer is what the
    same model gives when those tokens are its only other choices (the mask changes nothing else)."""
    tok = tiny_lm.tokenizer
    free_han = 0
    for text in ("退款", "How do refunds work? 退款", "Hallo, wie kann ich helfen?"):  # the tiny model repeats
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        free = Generation(tiny_lm, prompt, GenerationConfig(max_new_tokens=24, stop_on_repeat=0)).run()
        kept = Generation(tiny_lm, prompt, GenerationConfig(max_new_tokens=24, stop_on_repeat=0,
                                                            scripts=("latin",))).run()
        free_han += "han" in _letters(free.text)
        assert "han" not in _letters(kept.text)
        written = [scripts_written(token_bytes(tok.convert_ids_to_tokens(i), True)) for i in kept.token_ids]
        assert all(s <= {"latin"} for s in written)
        # up to the first token the mask took away, both answers are the same
        first = next((j for j, i in enumerate(free.token_ids)
                      if not scripts_written(token_bytes(tok.convert_ids_to_tokens(i), True)) <= {"latin"}),
                     len(free.token_ids))
        assert kept.token_ids[:first] == free.token_ids[:first]
    assert free_han  # without the mask, Chinese does come out


def test_the_engine_sets_each_turns_scripts_from_its_language_and_message(tiny_lm, store):
    from tiny_model import ScriptedBackend

    from assistant.engine import Engine

    class Recording(ScriptedBackend):
        def generate(self, prompt, settings, cancel, cache):
            self.settings = settings
            return super().generate(prompt, settings, cancel, cache)

    def scripts(message: str, keep: bool = True) -> tuple[str, ...]:
        backend = Recording("Gut.", tiny_lm.tokenizer)
        eng = Engine(tiny_lm, store, chat=ChatConfig(context_tokens=512, keep_scripts=keep),
                     generation=GenerationConfig(max_new_tokens=8), backend=backend)
        list(eng.respond(store.create("alice"), message))
        return backend.settings.scripts

    assert scripts("Wie lange dauert eine Erstattung bei einer Bestellung?") == ("latin",)
    assert scripts("退款需要多长时间？我的订单什么时候到？") == ("han", "latin")
    assert scripts("Как долго длится возврат денег за заказ?") == ("cyrillic", "latin")
    assert scripts("Wie lange dauert eine Erstattung bei einer Bestellung?", keep=False) == ()


def test_scripts_are_checked_by_name():
    assert GenerationConfig(scripts="latin, han").scripts == ("latin", "han")
    with pytest.raises(ConfigError, match="klingon"):
        GenerationConfig(scripts=("latin", "klingon"))
