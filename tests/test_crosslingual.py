"""Questions in a language the documents are not written in: rewritten into theirs for retrieval."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from assistant import crosslingual
from assistant.config import ChatConfig, GenerationConfig
from assistant.engine import Engine


def test_the_rewrite_target_is_the_documents_main_language_where_the_questions_is_rare():
    target = crosslingual.target_language
    assert target("de", {"en": 90, "zh": 60}) == "en"
    assert target("zh", {"en": 90, "zh": 60}) is None  # the documents' own language: no rewrite
    assert target("de", {"en": 95, "de": 5}) == "en"  # a few stray German chunks do not stop it
    assert target("de", {"en": 85, "de": 15}) is None
    assert target("unknown", {"en": 10}) is None and target("xx", {"en": 10}) is None
    assert target("de", {}) is None and target("de", {"": 12}) is None  # nothing to rewrite towards
    assert target("de", {"en": 9}, ("zh", "de")) == "en" and target("hi", {"en": 9}, ("zh", "de")) is None


def test_the_model_output_is_kept_only_where_it_is_a_translation():
    clean = crosslingual.clean
    assert clean("Which file formats can I upload?\n", "Welche Dateiformate kann ich hochladen?", "en") \
        == "Which file formats can I upload?"
    assert clean('Translation: "Which file formats can I upload?"', "Welche Dateiformate?", "en") \
        == "Which file formats can I upload?"
    assert clean("English: Where is it?", "Wo ist es?", "en") == "Where is it?"
    # an answer instead of a translation: a question went in, no question came out
    assert clean("Los Angeles Lakers", "ما الفريق الذي فاز في السوبر بول 33؟", "en") is None
    assert clean("Markdown, PDF and Word.", "¿Qué formatos puedo subir?", "en") is None
    assert clean("", "Wo?", "en") is None and clean("   \n ", "Wo?", "en") is None
    assert clean("Wo ist es?", "Wo ist es?", "en") is None  # not translated at all
    assert clean("What? " * 40, "Was?", "en") is None  # far longer than the question
    # a request with no question mark may come back without one
    assert clean("Upload documents", "Dokumente hochladen", "en") == "Upload documents"


def test_the_prompt_shows_worked_examples_in_other_languages_and_the_question_last(tiny_lm):
    prompt = crosslingual.rewrite_prompt(tiny_lm.tokenizer, "  Wie lade ich Dokumente hoch? ", "en")
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert "into English" in prompt.messages[0]["content"]
    assert prompt.messages[-1]["content"] == "Wie lade ich Dokumente hoch?"
    assert [m["content"] for m in prompt.messages[2:7:2]] == [e["en"] for e in crosslingual.EXAMPLES]
    assert all(m["content"] not in {e["en"] for e in crosslingual.EXAMPLES} for m in prompt.messages[1:7:2])
    german = crosslingual.rewrite_prompt(tiny_lm.tokenizer, "Where?", "de").messages
    assert [m["content"] for m in german[2:7:2]] == [e["de"] for e in crosslingual.EXAMPLES]
    assert all(m["content"] not in {e["de"] for e in crosslingual.EXAMPLES} for m in german[1:7:2])
    thai = crosslingual.rewrite_prompt(tiny_lm.tokenizer, "Where?", "th").messages  # no examples in Thai
    assert [m["role"] for m in thai] == ["system", "user"]
    assert prompt.input_ids == tiny_lm.tokenizer(crosslingual.render(tiny_lm.tokenizer, prompt.messages),
                                                 add_special_tokens=False)["input_ids"]


def test_fusion_puts_what_both_searches_find_first_and_breaks_ties_by_the_first_list():
    hits = {c: SimpleNamespace(chunk_id=c) for c in "abcdefg"}
    first = [hits[c] for c in "abcd"]
    second = [hits[c] for c in "ecbf"]
    fused = [h.chunk_id for h in crosslingual.fuse(first, second, 4)]
    assert fused == ["b", "c", "a", "e"]  # b and c found by both; each tie goes to the first list's order
    assert [h.chunk_id for h in crosslingual.fuse(first, [], 3)] == ["a", "b", "c"]
    assert crosslingual.fuse([], [], 4) == []


def test_a_rewrite_stopped_by_the_user_is_not_used(tiny_lm):
    import threading

    from tests.tiny_model import ScriptedBackend

    backend = ScriptedBackend("Which file formats can I upload?", tiny_lm.tokenizer)
    stopped = threading.Event()
    stopped.set()
    assert crosslingual.rewrite(backend, tiny_lm.tokenizer, "Welche Dateiformate?", "en", stopped) is None
    done = crosslingual.rewrite(backend, tiny_lm.tokenizer, "Welche Dateiformate?", "en", threading.Event())
    assert done is not None and done.text == "Which file formats can I upload?" and done.language == "en"


class _TranslatingBackend:
    """Stands in for the answering model (the tiny random model never translates): answers the rewrite
    prompt with ``translation`` and any other prompt with ``answer``; records each prompt's system text."""

    name = "tiny-llama"

    def __init__(self, tokenizer, translation: str, answer: str = "From the sources.", fail: bool = False):
        from tests.tiny_model import ScriptedBackend

        self.translation, self.fail, self.systems = translation, fail, []
        self.rewriting = ScriptedBackend(translation, tokenizer)
        self.answering = ScriptedBackend(answer, tokenizer)

    def generate(self, prompt, settings, cancel, cache):
        system = prompt.messages[0]["content"] if prompt.messages else ""
        self.systems.append(system)
        if system.startswith("You translate questions"):
            if self.fail:
                raise RuntimeError("the model server went away")
            return self.rewriting.generate(prompt, settings, cancel, cache)
        return self.answering.generate(prompt, settings, cancel, cache)


def _english_engine(tiny_lm, store, tmp_path, backend, **chat):
    from retrieval.embedding import HashingEmbedder
    from retrieval.index import KnowledgeIndex

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "formats.md").write_text("# File formats\n\nWhich file formats can you upload? PDF, Word and "
                                     "Markdown files, each up to 20 MB large.\n")
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds are paid back to the original card within five days.\n")
    (docs / "offices.md").write_text("# Offices\n\nOur head office is in Lyon; the Paris office opens at nine.\n")
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    index.add_paths([docs])
    assert index.languages() == {"en": 3}
    return Engine(tiny_lm, store, chat=ChatConfig(context_tokens=1024, translate_queries=True, **chat),
                  generation=GenerationConfig(max_new_tokens=4), index=index, backend=backend)


def test_the_index_counts_its_languages_again_after_an_upload_or_a_removal(tmp_path):
    from retrieval.embedding import HashingEmbedder
    from retrieval.index import KnowledgeIndex

    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    index.add_upload("refunds.md", b"# Refunds\n\nRefunds are paid back to the original card within five days.\n")
    assert index.languages() == {"en": 1}
    index.add_upload("退款.md", "# 退款\n\n退款会在五天内退回到原来的银行卡。\n".encode())
    assert index.languages() == {"en": 1, "zh": 1}
    index.remove("upload:refunds.md")
    assert index.languages() == {"zh": 1}


GERMAN = "Welche Dateiformate kann ich hochladen, und wie groß dürfen sie sein?"


def test_a_question_in_another_language_is_searched_for_in_the_documents_language(tiny_lm, store, tmp_path):
    backend = _TranslatingBackend(tiny_lm.tokenizer, "Which file formats can I upload, and how large may they be?")
    eng = _english_engine(tiny_lm, store, tmp_path, backend)
    conv = store.create("alice")
    turn = eng.run_turn(conv, GERMAN)
    assert turn.language == "de" and turn.route == "answer"
    assert turn.query == GERMAN and turn.query_rewrite == "Which file formats can I upload, and how large may they be?"
    assert turn.sources and turn.sources[0].source.endswith("formats.md")
    assert turn.timings["rewrite"] > 0 and turn.answer == "From the sources."
    # the answer's prompt is the user's question as asked, in the user's language
    assert backend.systems[0].startswith("You translate questions") and "German" in backend.systems[1]
    assert GERMAN in turn_prompt_text(tiny_lm, turn)
    # the rewrite is kept with the turn and shown in its details
    from assistant.web.chatview import meta_line

    assert store.get(conv.id, "alice").turns[-1].query_rewrite == turn.query_rewrite
    assert "also searched as: Which file formats" in meta_line(turn)


def turn_prompt_text(lm, turn) -> str:
    return lm.tokenizer.decode(turn.prompt_ids)


def test_without_a_rewrite_the_question_is_searched_as_asked(tiny_lm, store, tmp_path, caplog):
    import logging

    # the documents' own language: the model is asked nothing but the answer
    same = _TranslatingBackend(tiny_lm.tokenizer, "unused")
    eng = _english_engine(tiny_lm, store, tmp_path, same)
    turn = eng.run_turn(store.create("alice"), "Which file formats can I upload?")
    assert turn.query_rewrite == "" and "rewrite" not in turn.timings and len(same.systems) == 1
    # switched off (the default)
    assert ChatConfig().translate_queries is False
    off = _TranslatingBackend(tiny_lm.tokenizer, "Which file formats can I upload?")
    eng.backend, eng.chat = off, ChatConfig(context_tokens=1024, translate_queries=False)
    turn = eng.run_turn(store.create("alice"), GERMAN)
    assert turn.query_rewrite == "" and not any(s.startswith("You translate") for s in off.systems)
    # the model answers instead of translating, or fails: the turn goes on with the question's own hits
    for backend in (_TranslatingBackend(tiny_lm.tokenizer, "PDF und Word."),
                    _TranslatingBackend(tiny_lm.tokenizer, "x", fail=True)):
        eng.backend, eng.chat = backend, ChatConfig(context_tokens=1024, translate_queries=True)
        with caplog.at_level(logging.WARNING, logger="assistant.crosslingual"):
            turn = eng.run_turn(store.create("alice"), GERMAN)
        assert turn.query_rewrite == "" and turn.answer and turn.route == "answer"
    assert any("rewriting the question into en for retrieval failed (the model server went away)" in r.getMessage()
               for r in caplog.records)


@pytest.mark.slow
def test_the_default_model_rewrites_questions_into_english(real_lm):
    """The shipped model translates, and does not answer, questions in the languages users write in."""
    from assistant.backends import LocalBackend

    backend = LocalBackend(real_lm)
    for question, words in (("Welche Dateiformate kann ich hochladen?", ("file", "format", "upload")),
                            ("¿Cómo inserto el asistente en mi sitio web?", ("assistant", "website")),
                            ("我可以上传哪些格式的文档？", ("format", "upload")),
                            ("Как загрузить мой адаптер на сервер?", ("adapter", "server"))):
        rewrite = crosslingual.rewrite(backend, real_lm.tokenizer, question, "en")
        assert rewrite is not None and rewrite.language == "en", question
        assert rewrite.text.endswith("?") and all(w in rewrite.text.lower() for w in words), (question, rewrite.text)
