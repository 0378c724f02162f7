"""FAISS correctness, approximate recall, persistence, incremental updates, corruption errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import IndexCorruptError, IndexNotBuiltError, InputError
from retrieval import store
from retrieval.config import RetrievalConfig
from retrieval.embedding import HashingEmbedder
from retrieval.index import KnowledgeIndex
from retrieval import vectors as vectors_module
from retrieval.vectors import VectorIndex


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x, q, k):
    sims = q @ x.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k], np.sort(sims, axis=1)[:, ::-1][:, :k]


def test_exact_index_equals_numpy_brute_force():
    rng = np.random.default_rng(0)
    x, q = unit(rng, 3000, 48), unit(rng, 25, 48)
    index = VectorIndex.build(x, RetrievalConfig())
    assert index.kind == "flat"
    scores, rows = index.search(q, 10)
    want_rows, want_scores = brute_force(x, q, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert (rows == want_rows).mean() > 0.99  # ties aside, the same rows in the same order


@pytest.mark.parametrize("subset_limit", [0, 10**6])  # faiss selector path, numpy path
def test_filtered_search_equals_brute_force_on_subset(monkeypatch, subset_limit):
    monkeypatch.setattr(vectors_module, "SUBSET_BRUTE_FORCE", subset_limit)
    rng = np.random.default_rng(1)
    x, q = unit(rng, 2000, 32), unit(rng, 10, 32)
    allowed = np.sort(rng.choice(2000, 300, replace=False)).astype(np.int64)
    index = VectorIndex.build(x, RetrievalConfig())
    scores, rows = index.search(q, 5, allowed, x)
    sub_rows, sub_scores = brute_force(x[allowed], q, 5)
    np.testing.assert_allclose(scores, sub_scores, rtol=1e-5, atol=1e-5)
    assert set(rows.ravel()) <= set(allowed.tolist())
    assert (rows == allowed[sub_rows]).mean() > 0.99


def test_hnsw_recall_at_10_on_20k_random_vectors():
    rng = np.random.default_rng(2)
    x, q = unit(rng, 20_000, 64), unit(rng, 100, 64)
    config = RetrievalConfig(approximate_above=10_000)
    index = VectorIndex.build(x, config)
    assert index.kind == "hnsw"
    _, rows = index.search(q, 10)
    want, _ = brute_force(x, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want)])
    assert recall >= 0.95, recall


def test_ivf_with_all_lists_probed_is_exact():
    rng = np.random.default_rng(3)
    x, q = unit(rng, 5000, 32), unit(rng, 20, 32)
    index = VectorIndex.build(x, RetrievalConfig(ivf_nprobe=10_000), kind="ivf")
    index.index.nprobe = index.index.nlist
    _, rows = index.search(q, 10)
    want, _ = brute_force(x, q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want)]) > 0.99


def write_docs(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    topics = ["billing invoices and refunds", "password reset and login", "shipping times and tracking",
              "warranty claims and repairs"]
    paths = []
    for i in range(n):
        p = folder / f"doc{i}.md"
        p.write_text(f"# Topic {i}\n\nThis page is about {topics[i]}.\n\n## Details\n\nMore about {topics[i]} here.\n",
                     encoding="utf-8")
        paths.append(p)
    return paths


def test_incremental_update_reembeds_only_changed_documents(tmp_path):
    docs = write_docs(tmp_path / "docs")
    embedder = HashingEmbedder()
    index = KnowledgeIndex.create(tmp_path / "index", embedder)
    report = index.add_paths([tmp_path / "docs"])
    assert len(report.added) == 3 and not report.errors
    assert embedder.calls == report.chunks_embedded == len(index.chunks)
    index.save()

    index = KnowledgeIndex.load(tmp_path / "index", embedder)
    before = embedder.calls
    again = index.add_paths([tmp_path / "docs"])
    assert len(again.unchanged) == 3 and embedder.calls == before  # nothing changed, nothing embedded

    docs[1].write_text("# Topic 1\n\nThis page is about password reset and login.\n\n## Details\n\n"
                       "Two-factor codes expire after ten minutes.\n", encoding="utf-8")
    changed = index.add_paths([tmp_path / "docs"])
    assert len(changed.updated) == 1 and len(changed.unchanged) == 2
    changed_doc = changed.updated[0]
    # only the one new passage is embedded; the unchanged heading chunk reuses its vector
    assert embedder.calls - before == changed.chunks_embedded == 1
    index.save()
    reloaded = KnowledgeIndex.load(tmp_path / "index", embedder)
    hits = reloaded.search("two-factor codes expire", k=1)
    assert hits and hits[0].doc_id == changed_doc and "ten minutes" in hits[0].text

    calls = embedder.calls
    reloaded.remove(str(docs[0]))
    assert embedder.calls == calls
    assert str(docs[0].resolve()) not in {d.source for d in reloaded.documents()}
    assert all(h.source != str(docs[0].resolve()) for h in reloaded.search("billing invoices refunds", k=10))


def test_stored_vectors_match_fresh_embeddings_after_updates(tmp_path):
    write_docs(tmp_path / "docs", 4)
    embedder = HashingEmbedder()
    index = KnowledgeIndex.create(tmp_path / "index", embedder)
    index.add_paths([tmp_path / "docs"])
    index.remove(str(tmp_path / "docs" / "doc2.md"))
    from retrieval.chunking import embedding_text

    fresh = HashingEmbedder().embed([embedding_text(c) for c in index.chunks])
    np.testing.assert_allclose(index.embeddings, fresh, atol=1e-6)


def saved_index(tmp_path) -> Path:
    write_docs(tmp_path / "docs")
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    index.add_paths([tmp_path / "docs"])
    index.save()
    return tmp_path / "index"


def test_missing_index_says_how_to_build(tmp_path):
    with pytest.raises(IndexNotBuiltError, match=r"assistant index build PATH --index"):
        KnowledgeIndex.load(tmp_path / "nothing", HashingEmbedder())


def test_corrupted_manifest_gives_clear_error(tmp_path):
    folder = saved_index(tmp_path)
    (folder / "manifest.json").write_text('{"format": 1, "generation": ', encoding="utf-8")
    with pytest.raises(IndexCorruptError, match=r"manifest\.json.*assistant index build PATH --index"):
        KnowledgeIndex.load(folder, HashingEmbedder())


def test_truncated_embeddings_file_gives_clear_error(tmp_path):
    folder = saved_index(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest["generation"] / "embeddings.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match=r"embeddings\.npy.*assistant index build"):
        KnowledgeIndex.load(folder, HashingEmbedder())


def test_index_built_with_another_model_is_refused(tmp_path):
    folder = saved_index(tmp_path)
    other = HashingEmbedder(dimension=32, name="hashing-trigram-32")
    with pytest.raises(IndexCorruptError, match=r"hashing-trigram-64.*assistant index build"):
        KnowledgeIndex.load(folder, other)


def test_crash_during_save_leaves_previous_index_usable(tmp_path, monkeypatch):
    folder = saved_index(tmp_path)
    index = KnowledgeIndex.load(folder, HashingEmbedder())
    before = {d.doc_id for d in index.documents()}
    index.remove(index.documents()[0].doc_id)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(index._lexical, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        index.save()
    reopened = KnowledgeIndex.load(folder, HashingEmbedder())
    assert {d.doc_id for d in reopened.documents()} == before
    assert not list(folder.glob(".tmp-*"))
    assert len(list(folder.glob("gen-*"))) == 1


def test_automatic_choice_of_approximate_index(tmp_path):
    write_docs(tmp_path / "docs", 4)
    small = KnowledgeIndex.create(tmp_path / "a", HashingEmbedder())
    small.add_paths([tmp_path / "docs"])
    assert small.vector_kind == "flat"
    big = KnowledgeIndex.create(tmp_path / "b", HashingEmbedder(), RetrievalConfig(approximate_above=2))
    big.add_paths([tmp_path / "docs"])
    assert big.vector_kind == "hnsw"
    big.save()
    assert KnowledgeIndex.load(tmp_path / "b", HashingEmbedder()).vector_kind == "hnsw"
    assert big.search("warranty claims repairs", k=1)[0].source.endswith("doc3.md")


def test_remove_unknown_document_names_the_list_command(tmp_path):
    index = KnowledgeIndex.create(tmp_path / "i", HashingEmbedder())
    with pytest.raises(InputError, match="assistant index list"):
        index.remove("nope")


def test_config_rejects_impossible_values():
    from assistant.errors import ConfigError

    with pytest.raises(ConfigError, match="overlap_tokens"):
        RetrievalConfig(chunk_tokens=50, overlap_tokens=40)
    with pytest.raises(ConfigError, match="approximate_kind"):
        RetrievalConfig(approximate_kind="lsh")


class _PlantedEmbedder:
    """Vectors chosen per text (a stand-in for a cross-lingual model, to set the cosines exactly)."""

    name, dimension, languages, cosine_baseline, cross_lingual = "planted", 2, ("*",), 0.5, True

    def __init__(self, vectors: dict[str, tuple[float, float]]) -> None:
        self.vectors = vectors

    def embed(self, texts, *, batch_size=64, progress=False):
        rows = np.array([next(v for k, v in self.vectors.items() if k in t) for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_chunk_close_in_meaning_passes_the_floor_without_sharing_a_word():
    """Arabic fuses prepositions and articles into words: the right passage may share no exact word."""
    angle = np.arccos(0.7)  # cosine 0.7: rescaled from the 0.5 baseline 0.4, under the mixed floor without words
    embedder = _PlantedEmbedder({"بكاليفورنيا": (1.0, 0.0), "كاليفورنيا": (float(np.cos(angle)), float(np.sin(angle))),
                                 "unrelated": (0.0, 1.0)})
    for dense_floor, found in ((0.30, True), (1.0, False)):
        index = KnowledgeIndex.create("/tmp/unused", embedder, RetrievalConfig(min_relevance_dense=dense_floor))
        from retrieval.types import ExtractedDocument, Section

        index.add_documents([ExtractedDocument("a.txt", "", (Section("تقع المدينة في ولاية كاليفورنيا"),), "h", "txt"),
                             ExtractedDocument("b.txt", "", (Section("unrelated text about kettles"),), "h2", "txt")])
        hits = index.search("ما هي المدن بكاليفورنيا", k=2, language="ar")
        assert [h.source for h in hits] == (["a.txt"] if found else [])


def test_fusion_rescales_cosines_from_the_baseline_and_weighs_bm25_by_how_much_of_the_query_it_matched():
    import numpy as np

    from retrieval.fusion import fuse

    # e5-like cosines: the right chunk 0.92, a wrong one 0.80 that shares more words with the question.
    dense, bm25 = np.array([0.92, 0.80]), np.array([1.0, 3.0])
    # Divided by the best cosine alone, both look alike (1.0 vs 0.87) and BM25 decides.
    assert np.argmax(fuse(dense, bm25, 0.5)) == 1
    # Rescaled from e5's baseline of unrelated texts (0.75), the cosines tell them apart.
    assert np.argmax(fuse(dense, bm25, 0.5, baseline=0.75)) == 0
    # BM25 whose best match holds little of the query counts little; fully confident, it counts fully.
    low = fuse(dense, bm25, 0.5, baseline=0.75, lexical_confidence=0.2)
    assert low[1] < fuse(dense, bm25, 0.5, baseline=0.75)[1] and np.argmax(low) == 0
    assert np.allclose(fuse(dense, bm25, 0.0, lexical_confidence=0.3), 0.3 * bm25 / 3.0)  # words alone: same order
    with pytest.raises(Exception, match="lexical_confidence_coverage"):
        from retrieval.config import RetrievalConfig

        RetrievalConfig(lexical_confidence_coverage=0.0)


def test_a_chunk_passing_on_its_cosine_alone_must_stand_out_from_the_collection():
    """e5 gives a Chinese request about anything a high cosine with every chunk: none stands out, none passes."""
    from retrieval.types import ExtractedDocument, Section

    angle = float(np.arccos(0.7))  # rescaled from the 0.5 baseline: 0.4, over the 0.30 cosine-alone floor
    near = (float(np.cos(angle)), float(np.sin(angle)))
    for others, found in ((near, False), ((0.0, 1.0), True)):
        embedder = _PlantedEmbedder({"问": (1.0, 0.0), "水壶": near, "灯具": others})
        index = KnowledgeIndex.create("/tmp/unused", embedder, RetrievalConfig())
        docs = [ExtractedDocument("k.txt", "", (Section("水壶除垢的步骤如下"),), "h", "txt")]
        docs += [ExtractedDocument(f"f{i}.txt", "", (Section(f"第{i}页介绍灯具的安装"),), f"h{i}", "txt")
                 for i in range(19)]
        index.add_documents(docs)
        hits = index.search("问一个问题", k=2, language="zh")
        # Chinese chunks (the cross-language rule is not in play). Every chunk as close as the kettle page:
        # nothing stands out. Unrelated fillers: the kettle page does.
        assert [h.source for h in hits][:1] == (["k.txt"] if found else []), others


# ---- sentence vectors ---------------------------------------------------------------------------

def test_a_chunk_is_cut_into_sentences_across_scripts_and_hard_wrapped_lines():
    from retrieval.chunking import sentences

    assert sentences("Keys are set with `ASSISTANT_API_KEYS`. Existing client libraries work\n"
                     "when their base URL points at your server.") == [
        "Keys are set with `ASSISTANT_API_KEYS`.",
        "Existing client libraries work\nwhen their base URL points at your server."]
    assert sentences("黑豹队的防守只丢了308分，在联赛中排名第六。他的队友贡献了六次擒杀。") == [
        "黑豹队的防守只丢了308分，在联赛中排名第六。", "他的队友贡献了六次擒杀。"]
    # a heading or a short fragment joins what follows; a list item starts a sentence
    assert sentences("## Uploads\nThe admin area takes these files:\n- Markdown and plain text files\n"
                     "- Word documents with their headings") == [
        "## Uploads\nThe admin area takes these files:", "- Markdown and plain text files",
        "- Word documents with their headings"]
    assert sentences("One sentence is its own chunk vector.") == []
    assert sentences("ใช้เวลาประมาณหนึ่งสัปดาห์ในการซ่อม") == []  # no sentence punctuation: one piece


FILLER = ("Invoices are sent on the first day of every month. Refunds go back to the card that paid. "
          "Shipping labels are printed in the warehouse each morning. Warranty repairs take about a week. "
          "Parcels abroad need a customs declaration. Gift cards never lose their value. "
          "Two-factor codes expire after ten minutes. Our offices close on public holidays. "
          "Returned items must be unused and in their box. Bulk orders get a discount of their own.")


def _text_docs(*texts):
    from retrieval.types import ExtractedDocument, Section

    return [ExtractedDocument(source=f"t:{i}", title="", sections=(Section(text=t),), content_hash=str(hash(t)),
                              kind="txt") for i, t in enumerate(texts)]


def test_the_sentence_that_answers_lifts_its_chunk_above_one_that_is_closer_as_a_whole():
    docs = _text_docs(FILLER, "Two-factor login codes arrive by text message and expire quickly.")
    query = "Do two-factor codes expire after ten minutes?"
    ranked = {}
    for weight in (0.0, 0.5):
        index = KnowledgeIndex.create(Path("/nonexistent"), HashingEmbedder(), RetrievalConfig(sentence_weight=weight))
        index.add_documents(docs)
        ranked[weight] = [h.source for h in index.search(query, k=2, mode="dense", floor=False)]
    assert ranked[0.0] == ["t:1", "t:0"]  # the whole long chunk is further from the question
    assert ranked[0.5] == ["t:0", "t:1"]  # its tenth sentence is the answer


def test_sentence_vectors_stay_with_their_chunks_through_updates_and_a_reload(tmp_path):
    from retrieval.chunking import sentences

    write_docs(tmp_path / "docs", 4)
    (tmp_path / "docs" / "long.md").write_text(FILLER, encoding="utf-8")
    embedder = HashingEmbedder()
    index = KnowledgeIndex.create(tmp_path / "index", embedder)
    index.add_paths([tmp_path / "docs"])
    index.remove(str(tmp_path / "docs" / "doc1.md"))
    (tmp_path / "docs" / "doc3.md").write_text("# Topic 3\n\nWarranty claims need the receipt. Repairs are free.\n",
                                               encoding="utf-8")
    index.add_paths([tmp_path / "docs" / "doc3.md"])
    index.save()
    reloaded = KnowledgeIndex.load(tmp_path / "index", embedder)
    assert isinstance(reloaded.sentence_vectors, np.memmap)  # read from disk as used
    assert len(reloaded.sentence_offsets) == len(reloaded.chunks) + 1
    fresh = HashingEmbedder()
    for row, chunk in enumerate(reloaded.chunks):
        got = np.asarray(reloaded._sentences_of(row), dtype=np.float32)
        parts = sentences(chunk.text)
        want = fresh.embed(parts) if parts else np.zeros((0, fresh.dimension), np.float32)
        np.testing.assert_allclose(got, want, atol=2e-3)  # stored as float16
    assert any(len(sentences(c.text)) > 1 for c in reloaded.chunks)
    hits = reloaded.search("Do two-factor codes expire after ten minutes?", k=1, mode="dense", floor=False)
    assert hits[0].source.endswith("long.md")


def test_an_index_saved_without_sentence_vectors_still_searches_and_gains_them_once(tmp_path):
    from retrieval import default_index

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.md").write_text(FILLER, encoding="utf-8")
    old = KnowledgeIndex.create(tmp_path / "home" / "index", HashingEmbedder(), RetrievalConfig(sentence_weight=0))
    old.add_paths([tmp_path / "docs"])
    old.save()  # as an older version wrote it: no sentence files, no flag
    manifest = json.loads((tmp_path / "home" / "index" / store.MANIFEST).read_text())
    assert manifest["sentence_vectors"] is False and not any("sentence" in f for f in manifest["files"])

    opened = KnowledgeIndex.load(tmp_path / "home" / "index", HashingEmbedder())
    assert opened.sentence_offsets is None
    assert opened.search("two-factor codes", k=1, floor=False)  # ranks by whole chunks meanwhile

    embedder = HashingEmbedder()
    index = default_index(tmp_path / "home", embedder=embedder)  # what the app opens at start
    assert index.sentence_offsets is not None and len(index.sentence_vectors) == 10
    assert embedder.calls == 10  # the sentences only: the chunks keep their vectors
    assert KnowledgeIndex.load(tmp_path / "home" / "index", embedder).sentence_offsets is not None


def test_an_index_saved_with_an_older_word_tokenizer_gets_its_word_index_made_again_once(tmp_path):
    """Arabic words are light-stemmed since tokenizer v2: an index saved with v1 opens, its BM25 side made
    again from the stored text (nothing embedded again), and the app's index is saved with it once."""
    from retrieval import default_index
    from retrieval.text import PREVIOUS_TOKENIZERS, TOKENIZER_NAME

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "cairo.md").write_text("# المدن\n\nتقع القاهرة على نهر النيل وهي أكبر المدن في مصر.\n",
                                                encoding="utf-8")
    (tmp_path / "docs" / "filler.md").write_text(FILLER, encoding="utf-8")
    folder = tmp_path / "home" / "index"
    index = KnowledgeIndex.create(folder, HashingEmbedder())
    index.add_paths([tmp_path / "docs"])
    index.save()
    manifest = json.loads((folder / store.MANIFEST).read_text())
    manifest["tokenizer"] = PREVIOUS_TOKENIZERS[0]  # as the previous version wrote it
    (folder / store.MANIFEST).write_text(json.dumps(manifest))

    embedder = HashingEmbedder()
    opened = KnowledgeIndex.load(folder, embedder)
    assert opened.dirty and embedder.calls == 0
    [hit] = opened.search("بالقاهرة", k=1, mode="bm25", floor=False)  # "in Cairo": matches "القاهرة" as a word
    assert hit.source.endswith("cairo.md") and hit.bm25_score > 0
    default_index(tmp_path / "home", embedder=embedder)
    assert json.loads((folder / store.MANIFEST).read_text())["tokenizer"] == TOKENIZER_NAME
    assert not KnowledgeIndex.load(folder, embedder).dirty and embedder.calls == 0

    manifest = json.loads((folder / store.MANIFEST).read_text())
    manifest["tokenizer"] = "some-future-tokenizer"
    (folder / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="uses tokenizer 'some-future-tokenizer'.*rebuild it with"):
        KnowledgeIndex.load(folder, embedder)


def test_sentence_offsets_that_do_not_fit_the_chunks_give_the_rebuild_message(tmp_path):
    folder = saved_index(tmp_path)
    manifest = json.loads((folder / store.MANIFEST).read_text())
    gen = folder / manifest["generation"]
    offsets = np.load(gen / store.SENTENCE_OFFSETS)
    np.save(gen / store.SENTENCE_OFFSETS, offsets[:-1])
    manifest["files"][store.SENTENCE_OFFSETS] = (gen / store.SENTENCE_OFFSETS).stat().st_size
    (folder / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="sentence vectors .* do not fit .* rebuild it with"):
        KnowledgeIndex.load(folder, HashingEmbedder())


def test_documents_added_with_sentence_vectors_turned_off_leave_none_out_of_step(tmp_path):
    write_docs(tmp_path / "docs", 2)
    (tmp_path / "docs" / "long.md").write_text(FILLER, encoding="utf-8")
    index = KnowledgeIndex.create(tmp_path / "index", HashingEmbedder())
    index.add_paths([tmp_path / "docs" / "doc0.md", tmp_path / "docs" / "doc1.md"])
    index.save()
    off = KnowledgeIndex.load(tmp_path / "index", HashingEmbedder(), RetrievalConfig(sentence_weight=0))
    off.add_paths([tmp_path / "docs" / "long.md"])
    off.save()
    reopened = KnowledgeIndex.load(tmp_path / "index", HashingEmbedder())  # the default weight again: opens
    assert reopened.sentence_offsets is None and len(reopened.chunks) == len(off.chunks)
