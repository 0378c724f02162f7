"""Ingestion of every format, chunking, tokenization, language detection, search behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import InputError
from retrieval.chunking import chunk_document, split_text
from retrieval.config import RetrievalConfig
from retrieval.embedding import HashingEmbedder
from retrieval.index import KnowledgeIndex
from retrieval.readers import extract
from retrieval.text import count_tokens, detect_language, tokenize


def minimal_pdf(pages: list[str], before: str = "") -> bytes:
    """A valid PDF with one line of Helvetica text per page (pypdf can read it back); ``before``: content
    stream operators drawn ahead of each line (``1 1 1 rg`` makes it white)."""
    from bench.injection_files import pdf_pages

    return pdf_pages([f"{before} BT /F1 12 Tf 72 720 Td ({text}) Tj ET".strip() for text in pages])


def write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Returns policy", level=1)
    document.add_heading("Electronics", level=2)
    document.add_paragraph("Laptops can be returned within thirty days with the receipt.")
    document.save(str(path))


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "guide.md").write_text(
        "# Guide\n\nWelcome.\n\n## Setup\n\n### Linux\n\nInstall the zebrafish package with apt.\n", encoding="utf-8")
    (folder / "notes.txt").write_text("First paragraph about kangaroos.\n\nSecond paragraph about marmalade.\n",
                                      encoding="utf-8")
    (folder / "page.html").write_text(
        "<html><head><title>Opening hours</title></head><body><nav>Home | Products | Contact menu</nav>"
        "<article><h1>Opening hours</h1><p>The xylophone shop opens at nine on weekdays and stays open until "
        "six in the evening. On Saturdays it opens at ten.</p></article>"
        "<footer>Copyright footer boilerplate</footer></body></html>", encoding="utf-8")
    (folder / "manual.pdf").write_bytes(minimal_pdf(["Cover page of the manual", "Calibrate the gyroscope weekly"]))
    write_docx(folder / "policy.docx")
    (folder / "faq.csv").write_text("question,answer\nHow long does delivery take?,Parcels arrive in three days.\n"
                                    "Can I pay by invoice?,Yes for business customers.\n", encoding="utf-8")
    (folder / "faq.json").write_text(json.dumps([{"question": "Do you ship abroad?", "answer": "We ship to Norway."}]),
                                     encoding="utf-8")
    (folder / "faq.jsonl").write_text(json.dumps({"question": "如何重置密码？", "answer": "在登录页面点击忘记密码。"},
                                                 ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def test_end_to_end_every_format(tmp_path, corpus):
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    report = index.add_paths([corpus])
    assert not report.errors, report.errors
    kinds = {Path(d.source).suffix: d.kind for d in index.documents()}
    assert kinds == {".md": "md", ".txt": "txt", ".html": "html", ".pdf": "pdf", ".docx": "docx",
                     ".csv": "faq", ".json": "faq", ".jsonl": "faq"}
    index.save()
    index = KnowledgeIndex.load(tmp_path / "index", HashingEmbedder())

    def top(query: str, **kw):
        hits = index.search(query, k=3, **kw)
        assert hits, query
        return hits[0]

    md = top("zebrafish package apt")
    assert md.source.endswith("guide.md") and md.heading == "Guide > Setup > Linux"
    assert top("kangaroos").source.endswith("notes.txt")
    html = top("xylophone shop opening")
    assert html.source.endswith("page.html") and html.title == "Opening hours"
    assert all("boilerplate" not in c.text and "Products" not in c.text for c in index.chunks
               if c.source.endswith("page.html"))
    pdf = top("calibrate gyroscope")
    assert pdf.source.endswith("manual.pdf") and pdf.page == 2
    docx_hit = top("laptops returned receipt")
    assert docx_hit.source.endswith("policy.docx") and docx_hit.heading == "Returns policy > Electronics"
    faq = top("delivery parcels")
    assert faq.source.endswith("faq.csv") and faq.text.startswith("How long does delivery take?")
    assert "invoice" not in faq.text  # one FAQ entry per chunk
    assert top("ship abroad Norway").source.endswith("faq.json")
    zh = top("忘记密码", language="zh")
    assert zh.source.endswith("faq.jsonl") and zh.language == "zh"
    for hit in (md, pdf, faq, zh):
        assert hit.score > 0 and hit.chunk_id.startswith(hit.doc_id)


def test_unreadable_file_is_reported_and_others_still_ingest(tmp_path, corpus):
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "bad.jsonl").write_text('{"question": "only a question"}\n', encoding="utf-8")
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    report = index.add_paths([corpus, tmp_path / "missing.md"])
    failed = {Path(e.path).name: e.reason for e in report.errors}
    assert set(failed) == {"broken.pdf", "bad.jsonl", "missing.md"}
    assert "answer" in failed["bad.jsonl"] and "line 1" in failed["bad.jsonl"]
    assert "does not exist" in failed["missing.md"]
    assert len(index.documents()) == 8


def test_upload(tmp_path):
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    report = index.add_upload("faq.csv", "question,answer\nWhere is the office?,In Lisbon.\n".encode())
    assert report.added and index.documents()[0].source == "upload:faq.csv"
    assert index.search("office Lisbon")[0].source == "upload:faq.csv"
    index.remove("faq.csv")
    assert index.documents() == []
    with pytest.raises(InputError, match="unsupported file type"):
        index.add_upload("virus.exe", b"MZ")
    with pytest.raises(InputError, match="question"):
        index.add_upload("faq.json", b'[{"q": ""}]')


def test_filters_by_document_and_tag(tmp_path, corpus):
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    index.add_paths([corpus / "guide.md", corpus / "notes.txt"], tags=["manuals"])
    index.add_paths([corpus / "faq.csv"], tags=["faq"])
    assert {h.source.rsplit("/", 1)[-1] for h in index.search("delivery parcels kangaroos", k=10, tags=["manuals"])} <= {
        "guide.md", "notes.txt"}
    notes = next(d for d in index.documents() if d.source.endswith("notes.txt"))
    hits = index.search("zebrafish kangaroos", k=10, doc_ids=[notes.doc_id])
    assert hits and {h.doc_id for h in hits} == {notes.doc_id}
    assert index.search("zebrafish", tags=["nonexistent"]) == []


def test_relevance_floor_returns_nothing_for_unrelated_query(tmp_path, corpus):
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder(languages=("en",)))
    index.add_paths([corpus])
    assert index.search("Quantenchromodynamik auf dem Gitter", language="de") == []
    assert index.search("zebrafish", language="de")  # a real match still passes


def test_dense_side_skipped_for_languages_the_model_does_not_serve(tmp_path, corpus):
    embedder = HashingEmbedder(languages=("en",))
    index = KnowledgeIndex.create(tmp_path / "index", embedder)
    index.add_paths([corpus])
    calls = embedder.calls
    hits = index.search("如何重置密码")
    assert hits and hits[0].source.endswith("faq.jsonl")
    assert embedder.calls == calls and all(h.dense_score == 0.0 for h in hits)
    index.search("How long does delivery take?")
    assert embedder.calls == calls + 1  # English: the dense side counts


def test_cjk_tokenization_uses_character_bigrams():
    assert tokenize("重置密码") == ["重置", "置密", "密码"]
    assert tokenize("我") == ["我"]
    tokens = tokenize("Reset 密码 in ＡＢＣ 2024")
    assert tokens == ["reset", "密码", "in", "abc", "2024"]
    assert "パス" in tokenize("パスワード")
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # combining vowel signs stay inside the word
    assert all(len(t) >= 1 for t in tokenize("ภาษาไทย"))
    assert count_tokens("重置密码 reset") == 5


def test_arabic_words_lose_the_article_fused_prepositions_and_common_endings():
    # the article and a preposition fused with it, "and", the feminine ending written two ways, the
    # optional short vowels: the same word to BM25
    assert tokenize("المدينة") == tokenize("بالمدينة") == tokenize("والمدينة") == tokenize("مدينه") == ["مدين"]
    assert tokenize("المُدَرِّسون") == tokenize("مدرس") == ["مدرس"]  # plural ending, shadda and vowels
    assert tokenize("أحمد") == tokenize("احمد")  # hamza on the alef written or not
    assert tokenize("المـدينة") == ["مدين"]  # the tatweel that stretches a word in titles
    assert tokenize("في") == ["في"] and tokenize("ال") == ["ال"]  # too short to take anything off
    assert tokenize("Cairo القاهرة 2024") == ["cairo", "قاهر", "2024"]


def test_language_detection():
    assert detect_language("如何重置我的密码？") == "zh"
    assert detect_language("パスワードを忘れました") == "ja"
    assert detect_language("비밀번호를 잊어버렸어요") == "ko"
    assert detect_language("How do I reset my password on the website?") == "en"
    assert detect_language("Wie kann ich mein Passwort auf der Webseite zurücksetzen?") == "de"
    assert detect_language("ok") == "und"
    assert detect_language("1234 !!") == "und"


def test_chunks_follow_structure_and_stay_bounded():
    long_paragraph = " ".join(f"word{i}" for i in range(500))
    text = f"# Title\n\nShort intro.\n\n## Part\n\n{long_paragraph}\n\n## Other\n\nTail.\n"
    doc = extract("doc.md", text.encode())
    chunks = chunk_document(doc, "doc-1", chunk_tokens=100, overlap_tokens=20)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(count_tokens(c.text) <= 100 for c in chunks)
    part = [c for c in chunks if c.heading == ("Title", "Part")]
    assert len(part) >= 5
    first, second = part[0].text.split(), part[1].text.split()
    assert first[-20:] == second[:20]  # overlap
    assert chunks[-1].heading == ("Title", "Other") and chunks[-1].text == "Tail."
    assert len({c.content_hash for c in chunks}) == len(chunks)
    assert split_text("short text", 10, 2) == ["short text"]


def test_cli_build_list_search_remove(tmp_path, corpus, monkeypatch, capsys):
    import retrieval.embedding
    import retrieval.index
    from assistant.cli.main import main

    monkeypatch.setattr(retrieval.embedding, "load_embedder", lambda name=None, **kw: HashingEmbedder())
    monkeypatch.setattr(retrieval.index, "load_embedder", lambda name=None, **kw: HashingEmbedder())
    folder = str(tmp_path / "idx")
    assert main(["index", "build", str(corpus / "guide.md"), str(corpus / "faq.csv"), "--index", folder]) == 0
    assert main(["index", "add", str(corpus / "notes.txt"), "--index", folder]) == 0
    capsys.readouterr()
    assert main(["index", "list", "--index", folder]) == 0
    assert capsys.readouterr().out.count("\n") == 3
    assert main(["index", "search", "delivery parcels", "--k", "2", "--json", "--index", folder]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 1 <= len(lines) <= 2 and lines[0]["source"].endswith("faq.csv")
    assert {"source", "text", "score"} <= set(lines[0])
    assert lines == sorted(lines, key=lambda h: -h["score"])
    assert main(["index", "remove", str(corpus / "faq.csv"), "--index", folder]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["index", "search", "delivery parcels", "--json", "--index", folder]) == 0
    assert all(not json.loads(x)["source"].endswith("faq.csv") for x in capsys.readouterr().out.splitlines() if x.strip())
    assert main(["index", "list", "--index", str(tmp_path / "none")]) == 2
    assert "assistant index build" in capsys.readouterr().err


def test_default_index_builds_from_knowledge_base_once(tmp_path):
    from retrieval import DEFAULT_KNOWLEDGE, default_index

    embedder = HashingEmbedder()
    index = default_index(tmp_path, embedder)
    sources = {d.source for d in index.documents()}
    assert any("/en/" in s for s in sources) and any("/zh/" in s for s in sources)
    assert all(s.startswith(str(DEFAULT_KNOWLEDGE)) for s in sources)
    calls = embedder.calls
    again = default_index(tmp_path, embedder)
    assert embedder.calls == calls and len(again.chunks) == len(index.chunks)
    assert index.search("Explain button attention", k=1)[0].source.endswith("explain.md")


def _installed_guide(tmp_path, monkeypatch, where="install"):
    import shutil

    import retrieval

    guide = tmp_path / where / "knowledge" / "docs"
    shutil.copytree(retrieval.DEFAULT_KNOWLEDGE, guide)
    monkeypatch.setattr(retrieval, "DEFAULT_KNOWLEDGE", guide)
    return guide


def test_default_index_follows_the_shipped_guide_after_an_upgrade(tmp_path, monkeypatch):
    from retrieval import default_index

    guide = _installed_guide(tmp_path, monkeypatch)
    embedder = HashingEmbedder()
    index = default_index(tmp_path / "home", embedder)
    index.remove(str((guide / "zh" / "chatting.md").resolve()))  # the support team took this page out
    index.add_upload("prices.md", b"# Prices\n\nThe team's own page: a licence costs 40 euros.\n")
    index.save()
    before = len(index.chunks)
    # the upgrade: one page rewritten, one dropped, one new
    (guide / "en" / "finetuning.md").write_text("# Finetuning\n\nAdapters are trained with the zebra command.\n")
    (guide / "en" / "embedding.md").unlink()
    (guide / "en" / "new-page.md").write_text("# New\n\nA page that is new in this version.\n")
    calls = embedder.calls
    again = default_index(tmp_path / "home", embedder)
    pages = {d.source.removeprefix(str(guide.resolve()) + "/") for d in again.documents()}
    assert "en/finetuning.md" in pages and "upload:prices.md" in pages
    assert not {"en/embedding.md", "zh/chatting.md", "en/new-page.md"} & pages
    fine = [c.text for c in again.chunks if c.source.endswith("en/finetuning.md")]
    assert fine == ["Adapters are trained with the zebra command."]
    assert embedder.calls - calls == 1  # only the new chunk was embedded
    assert again.search("trained with the zebra command", k=1)[0].source.endswith("en/finetuning.md")
    calls = embedder.calls
    assert len(again.chunks) < before
    # saved: opening it again changes and embeds nothing
    assert len(default_index(tmp_path / "home", embedder).chunks) == len(again.chunks)
    assert embedder.calls == calls


def test_default_index_follows_an_installation_that_moved(tmp_path, monkeypatch):
    import shutil

    import retrieval
    from retrieval import default_index

    old = _installed_guide(tmp_path, monkeypatch, "old")
    embedder = HashingEmbedder()
    chunks = len(default_index(tmp_path / "home", embedder).chunks)
    calls = embedder.calls
    new = tmp_path / "new" / "knowledge" / "docs"
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    monkeypatch.setattr(retrieval, "DEFAULT_KNOWLEDGE", new)
    index = default_index(tmp_path / "home", embedder)
    assert all(d.source.startswith(str(new.resolve())) for d in index.documents())
    assert len(index.chunks) == chunks and embedder.calls == calls  # the same text: stored vectors reused
    assert not old.exists()
