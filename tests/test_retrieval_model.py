"""The real packaged all-MiniLM-L6-v2 over the shipped knowledge base (slow: loads the model once)."""

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
    assert reopened.embedder.name == embedder.name and reopened.embedder.languages == ("en",)
    assert len(default_index(home, embedder).chunks) == len(index.chunks)
    a = index.search("finetune the model with my dialogues", k=2)
    b = reopened.search("finetune the model with my dialogues", k=2)
    assert [h.chunk_id for h in a] == [h.chunk_id for h in b] and a[0].source.endswith("finetuning.md")
