"""Retrieval benchmark: prints figures, passes or fails nothing.

1. XQuAD dev (12 languages): per language the corpus is its 120 paragraphs and
   the queries its ~595 questions; the one relevant passage is a question's own
   paragraph.  Recall@1, Recall@5 and MRR@10 for dense-only, BM25-only and the
   shipped hybrid ranking (language detected from the query); the same with
   the relevance floor on, the share of questions it answers, and the share of
   off-topic xSID requests (same language, where xSID has it) it rejects;
   hybrid query latency p50/p95 with the query embedding excluded and the
   embedding time alone; ingestion throughput.
2. Cross-language (XQuAD is parallel: paragraph i is the same text in every
   language): questions in each other language against the English paragraphs,
   and English questions against the Chinese ones; Recall@1 / Recall@5 for
   dense-only, BM25-only and the shipped hybrid ranking.  With ``--rewrite N``: the same on N
   report-half questions per language as the engine searches for a user, the question also rewritten
   into English by the default model (``assistant.crosslingual``), and what the rewrite costs.
3. Synthetic scale: search latency at 100k chunks (full hybrid search: BM25 over
   synthetic text + vectors) with the exact and the approximate index, and at 1M
   vectors (dense side only) exact vs IVF, with the approximate recall@10.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py [--sweep] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retrieval.config import RetrievalConfig  # noqa: E402
from retrieval.embedding import embed_query, load_embedder  # noqa: E402
from retrieval.index import KnowledgeIndex  # noqa: E402
from retrieval.types import Chunk, ExtractedDocument, Section  # noqa: E402
from retrieval.vectors import VectorIndex, choose_kind  # noqa: E402

XQUAD = ROOT.parent / "shared" / "datasets" / "xquad-dev"
XSID = ROOT.parent / "shared" / "datasets" / "xsid-dev"
LANGUAGES = ("en", "zh", "de", "es", "ru", "ar", "el", "hi", "ro", "th", "tr", "vi")


@dataclass
class CachedEmbedder:
    """Wraps the real embedder: texts embedded in advance are looked up, others embedded on demand."""

    inner: object
    cache: dict

    @property
    def name(self):
        return self.inner.name

    @property
    def dimension(self):
        return self.inner.dimension

    @property
    def languages(self):
        return self.inner.languages

    @property
    def cosine_baseline(self):
        return getattr(self.inner, "cosine_baseline", 0.0)

    @property
    def cross_lingual(self):
        return getattr(self.inner, "cross_lingual", False)

    def _lookup(self, texts, method, key, batch_size):
        missing = [t for t in texts if (key, t) not in self.cache]
        if missing:
            for t, v in zip(missing, method(missing, batch_size=batch_size)):
                self.cache[(key, t)] = v
        return np.stack([self.cache[(key, t)] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def embed(self, texts, *, batch_size=64, progress=False):
        return self._lookup(texts, self.inner.embed, "passage", batch_size)

    def embed_query(self, texts, *, batch_size=64):
        method = getattr(self.inner, "embed_query", self.inner.embed)
        return self._lookup(texts, method, "query", batch_size)


def load_xquad(lang: str, split: str = "all") -> tuple[list[str], list[tuple[str, int]]]:
    """Every paragraph, and the questions of ``split`` (``all``, or the ``dev`` / ``report`` half of
    ``bench.answers.question_split``) with their paragraph's number."""
    from bench.answers import question_split

    data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    paragraphs, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                if split == "all" or question_split(qa["id"]) == split:
                    questions.append((qa["question"], len(paragraphs)))
            paragraphs.append(para["context"])
    return paragraphs, questions


def load_xsid(lang: str, limit: int = 300) -> list[str]:
    """Voice-assistant requests (alarms, weather, reminders): off-topic for a Wikipedia corpus."""
    path = XSID / f"{lang}.valid.conll"
    if not path.is_file():
        return []
    texts = [line[len("# text = "):].strip() for line in path.read_text(encoding="utf-8").splitlines()
             if line.startswith("# text = ")]
    return texts[:limit]


def ranked_paragraphs(index: KnowledgeIndex, query: str, mode: str, floor: bool) -> list[int]:
    hits = index.search(query, k=10, mode=mode, floor=floor)
    seen: list[int] = []
    for hit in hits:
        p = int(hit.source.rsplit(":", 1)[1])
        if p not in seen:
            seen.append(p)
    return seen


def metrics(ranks: list[int | None]) -> tuple[float, float, float]:
    r1 = np.mean([r == 1 for r in ranks])
    r5 = np.mean([r is not None and r <= 5 for r in ranks])
    mrr = np.mean([1.0 / r if r else 0.0 for r in ranks])
    return float(r1), float(r5), float(mrr)


def xquad(args, embedder) -> None:
    which = "~595 questions" if args.split == "all" else f"the {args.split} half of the questions"
    print(f"## XQuAD dev: Recall@1 / Recall@5 / MRR@10 (per language: 120 paragraphs, {which})\n")
    config = config_of(args)
    sweep = [float(w) for w in args.sweep.split(",")] if args.sweep else []
    header = ("| lang | dense R@1 | dense R@5 | dense MRR | bm25 R@1 | bm25 R@5 | bm25 MRR | hybrid R@1 | hybrid R@5 "
              "| hybrid MRR | hybrid ≥ best? | hybrid+floor R@1 | floor: questions answered | floor: xSID off-topic rejected |")
    if sweep:
        header += "".join(f" w={w} R@1 |" for w in sweep)
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    latencies, embed_times, ingest_chunks, ingest_seconds = [], [], 0, 0.0
    for lang in args.languages.split(","):
        paragraphs, questions = load_xquad(lang, args.split)
        questions = questions[: args.max_questions] if args.max_questions else questions
        cache: dict = {}
        cached = CachedEmbedder(embedder, cache)
        docs = [ExtractedDocument(source=f"xquad:{lang}:{i}", title="", sections=(Section(text=p),),
                                  content_hash=hashlib.sha256(p.encode()).hexdigest(), kind="txt")
                for i, p in enumerate(paragraphs)]
        index = KnowledgeIndex.create(Path("/nonexistent"), cached, config)
        started = time.perf_counter()
        report = index.add_documents(docs)
        ingest_seconds += time.perf_counter() - started
        ingest_chunks += report.chunks_added
        t0 = time.perf_counter()
        cached.embed_query([q for q, _ in questions], batch_size=128)  # pre-embed: latency below excludes it
        embed_times.append((time.perf_counter() - t0) / len(questions))
        row = {}
        answered = 0
        for mode, floor in (("dense", False), ("bm25", False), ("hybrid", False), ("floor", True)):
            ranks = []
            for q, p in questions:
                t = time.perf_counter()
                ranked = ranked_paragraphs(index, q, "hybrid" if mode == "floor" else mode, floor)
                if mode == "floor":
                    latencies.append(time.perf_counter() - t)
                    answered += bool(ranked)
                ranks.append(ranked.index(p) + 1 if p in ranked else None)
            row[mode] = metrics(ranks)
        off_topic = load_xsid(lang)
        if off_topic:
            cached.embed_query(off_topic, batch_size=128)
            rejected = f"{np.mean([not index.search(q, k=4) for q in off_topic]):.3f}"
        else:
            rejected = "(no xSID set)"
        extra = ""
        for w in sweep:
            index.config.dense_weight = w
            ranks = []
            for q, p in questions:
                ranked = ranked_paragraphs(index, q, "hybrid", True)
                ranks.append(ranked.index(p) + 1 if p in ranked else None)
            extra += f" {metrics(ranks)[0]:.3f} |"
            index.config.dense_weight = config.dense_weight
        best = max(row["dense"][0], row["bm25"][0])
        ok = "yes" if row["hybrid"][0] >= best - 1e-9 else f"no ({row['hybrid'][0] - best:+.3f})"
        cells = " | ".join(f"{v:.3f}" for mode in ("dense", "bm25", "hybrid") for v in row[mode])
        print(f"| {lang} | {cells} | {ok} | {row['floor'][0]:.3f} | {answered / len(questions):.3f} | {rejected} |{extra}",
              flush=True)
    lat = np.array(latencies) * 1000
    print(f"\nhybrid search latency, query embedding excluded (all languages, {len(lat)} queries): "
          f"p50 {np.percentile(lat, 50):.2f} ms, p95 {np.percentile(lat, 95):.2f} ms")
    print(f"query embedding (batched, per query): {np.mean(embed_times) * 1000:.2f} ms")
    embed_query(embedder, ["warm-up"])
    one = [time.perf_counter()]
    for i in range(20):
        embed_query(embedder, [f"How do I upload documents number {i}?"])
        one.append(time.perf_counter())
    print(f"query embedding (single query, as in chat): {np.median(np.diff(one)) * 1000:.2f} ms")
    print(f"ingestion throughput (chunking + embedding + indexing, {ingest_chunks} chunks): "
          f"{ingest_chunks / ingest_seconds:.1f} chunks/s")


def config_of(args) -> RetrievalConfig:
    """The app's retrieval settings, with ``--sentence-weight`` where given."""
    if getattr(args, "sentence_weight", None) is None:
        return RetrievalConfig()
    return RetrievalConfig(sentence_weight=args.sentence_weight)


def _index_of(lang: str, paragraphs: list[str], cached: CachedEmbedder,
              config: RetrievalConfig | None = None) -> KnowledgeIndex:
    docs = [ExtractedDocument(source=f"xquad:{lang}:{i}", title="", sections=(Section(text=p),),
                              content_hash=hashlib.sha256(p.encode()).hexdigest(), kind="txt")
            for i, p in enumerate(paragraphs)]
    index = KnowledgeIndex.create(Path("/nonexistent"), cached, config or RetrievalConfig())
    index.add_documents(docs)
    return index


def cross_language(args) -> None:
    """Questions in one language against the paragraphs of another (see the module docstring)."""
    embedder = load_embedder(args.embedder)
    print(f"\n## Cross-language: questions in X against the paragraphs in Y (xquad-dev; {embedder.name})\n")
    print("| questions → paragraphs | questions | dense R@1 | dense R@5 | bm25 R@1 | bm25 R@5 | hybrid R@1 | hybrid R@5 |")
    print("|---|---|---|---|---|---|---|---|")
    cached = CachedEmbedder(embedder, {})
    indexes: dict[str, KnowledgeIndex] = {}
    pairs = [(lang, "en") for lang in args.languages.split(",") if lang != "en"] + [("en", "zh")]
    hybrid_r1 = []
    for q_lang, p_lang in pairs:
        if p_lang not in indexes:
            indexes[p_lang] = _index_of(p_lang, load_xquad(p_lang)[0], cached, config_of(args))
        _, questions = load_xquad(q_lang, args.split)
        questions = questions[: args.max_questions] if args.max_questions else questions
        cached.embed_query([q for q, _ in questions], batch_size=128)
        cells = []
        for mode in ("dense", "bm25", "hybrid"):
            ranks = []
            for q, p in questions:
                ranked = ranked_paragraphs(indexes[p_lang], q, mode, False)
                ranks.append(ranked.index(p) + 1 if p in ranked else None)
            r1, r5, _ = metrics(ranks)
            cells += [f"{r1:.3f}", f"{r5:.3f}"]
            if mode == "hybrid" and p_lang == "en":
                hybrid_r1.append(r1)
        print(f"| {q_lang} → {p_lang} | {len(questions)} | {' | '.join(cells)} |", flush=True)
    if hybrid_r1:
        print(f"\nmean hybrid R@1 of the {len(hybrid_r1)} non-English languages against English: "
              f"{np.mean(hybrid_r1):.3f}")


def cross_language_rewrite(args) -> None:
    """Questions in X against the English paragraphs as the engine searches them for a user: as asked, and
    fused with the question rewritten into English by the default model (``assistant.crosslingual``);
    on the first ``--rewrite`` questions of xquad-dev's report half per language (``--rewrite-split dev``:
    the half the fusion and the languages rewritten were chosen on), with what the rewrite costs."""
    import statistics
    import threading

    from assistant import crosslingual
    from assistant.backends import LocalBackend
    from assistant.config import AppConfig, ChatConfig
    from assistant.generation.models import load_model
    from bench.answers import question_split

    config = AppConfig.load()
    lm = load_model(config.model, home=config.home)
    backend = LocalBackend(lm)
    embedder = load_embedder(args.embedder)
    index = _index_of("en", load_xquad("en")[0], CachedEmbedder(embedder, {}), config_of(args))
    print(f"\n## Cross-language with the question rewritten into English ({lm.name}, greedy; {embedder.name}; "
          f"first {args.rewrite} questions of xquad-dev's {args.rewrite_split} half per language)\n")
    print("| questions → paragraphs | questions | hybrid R@1 as asked | R@1 with the rewrite | hybrid R@5 as asked "
          "| R@5 with the rewrite | rewritten | rewrite p50 s | rewrite p95 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    r1_asked, r1_rewrite = [], []
    languages = [x for x in args.languages.split(",") if x != "en"]
    for lang in languages:
        data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        questions, k = [], 0
        for article in data["data"]:
            for para in article["paragraphs"]:
                questions += [(qa["question"], k) for qa in para["qas"] if question_split(qa["id"]) == args.rewrite_split]
                k += 1
        questions = questions[: args.rewrite]
        asked, fused, seconds, rewritten = [], [], [], 0
        for q, p in questions:
            hits = index.search(q, k=crosslingual.DEPTH, language=lang, floor=False)
            started = time.perf_counter()
            rewrite = crosslingual.rewrite(backend, lm.tokenizer, q, "en", threading.Event())
            seconds.append(time.perf_counter() - started)
            both = hits
            if rewrite is not None:
                rewritten += 1
                found = index.search(rewrite.text, k=crosslingual.DEPTH, language="en", floor=False)
                both = crosslingual.fuse(found, hits, crosslingual.DEPTH)
            for ranks, ranked in ((asked, hits), (fused, both)):
                order = list(dict.fromkeys(int(h.source.rsplit(":", 1)[1]) for h in ranked))
                ranks.append(order.index(p) + 1 if p in order else None)
        (a1, a5, _), (f1, f5, _) = metrics(asked), metrics(fused)
        r1_asked.append(a1)
        r1_rewrite.append(f1)
        q95 = float(np.percentile(seconds, 95))
        print(f"| {lang} → en | {len(questions)} | {a1:.3f} | {f1:.3f} | {a5:.3f} | {f5:.3f} | {rewritten} | "
              f"{statistics.median(seconds):.2f} | {q95:.2f} |", flush=True)
    shipped = ChatConfig().translate_from
    chosen = [f if not shipped or lang in shipped else a for lang, a, f in zip(languages, r1_asked, r1_rewrite)]
    print(f"\nmean R@1 of the {len(r1_asked)} languages: as asked {np.mean(r1_asked):.3f}, "
          f"with the rewrite {np.mean(r1_rewrite):.3f}, with the rewrite only from `chat.translate_from` "
          f"({', '.join(shipped) or 'all'}) {np.mean(chosen):.3f}")


def low_rank_vectors(n: int, dim: int, rng, intrinsic: int = 32) -> np.ndarray:
    """Unit vectors with intrinsic dimension ``intrinsic`` (as sentence embeddings are), plus noise."""
    basis = np.random.default_rng(12345).standard_normal((intrinsic, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = rng.standard_normal((m, intrinsic)).astype(np.float32) @ basis
        block += 0.1 * np.linalg.norm(block, axis=1, keepdims=True) / np.sqrt(dim) * rng.standard_normal((m, dim)).astype(np.float32)
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_hybrid(n: int, dim: int, kinds: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30_000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    words = rng.choice(len(vocab), size=(n, 60), p=zipf)
    chunks = [Chunk(chunk_id=f"s:{i}", doc_id=f"s{i // 10}", text=" ".join(vocab[j] for j in row), source=f"synthetic:{i}",
                    title="", heading=(), page=None, language="en", content_hash=str(i), position=i % 10)
              for i, row in enumerate(words)]
    vectors = low_rank_vectors(n, dim, rng)
    queries = [" ".join(vocab[j] for j in rng.choice(len(vocab), 6, p=zipf)) for _ in range(200)]
    qvecs = low_rank_vectors(200, dim, rng)

    class FixedEmbedder:
        name, dimension, languages = "synthetic", dim, ("*",)
        lookup = dict(zip(queries, qvecs))

        def embed(self, texts, **_):
            return np.stack([self.lookup[t] for t in texts])

    config = RetrievalConfig()
    print(f"(shipped default vector index at {n:,} chunks: {choose_kind(n, config)})")
    index = KnowledgeIndex(folder=Path("/nonexistent"), embedder=FixedEmbedder(),
                           config=RetrievalConfig(approximate_above=10**9), chunks=chunks, embeddings=vectors)
    t = time.perf_counter()
    index._rebuild()  # BM25 (and a flat index) once; the vector index is swapped below
    print(f"(BM25 index build for {n:,} chunks, with tokenization: {time.perf_counter() - t:.0f} s)")
    for kind in kinds:
        t = time.perf_counter()
        index._vectors = VectorIndex.build(vectors, config, kind=kind)
        build = time.perf_counter() - t
        lat = []
        for q in queries:
            t = time.perf_counter()
            index.search(q, k=4, language="en")
            lat.append((time.perf_counter() - t) * 1000)
        recall = ""
        if kind != "flat":
            exact = VectorIndex.build(vectors, config, kind="flat")
            _, gt = exact.search(qvecs, 10)
            _, got = index._vectors.search(qvecs, 10)
            recall = f", dense recall@10 vs exact {np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, gt)]):.3f}"
        print(f"{n:>9,} chunks, dim {dim}, {index.vector_kind:>4}: full hybrid search p50 {np.percentile(lat, 50):.2f} ms, "
              f"p95 {np.percentile(lat, 95):.2f} ms (BM25 + vectors + fusion; vector index build {build:.0f} s){recall}",
              flush=True)


def synthetic_vectors(n: int, dim: int, kinds: tuple[str, ...]) -> None:
    rng = np.random.default_rng(1)
    vectors = low_rank_vectors(n, dim, rng)
    qvecs = low_rank_vectors(200, dim, rng)
    gt = None
    for kind in kinds:
        t = time.perf_counter()
        index = VectorIndex.build(vectors, RetrievalConfig(), kind=kind)
        build = time.perf_counter() - t
        lat = []
        for q in qvecs:
            t = time.perf_counter()
            _, rows = index.search(q[None, :], 10)
            lat.append((time.perf_counter() - t) * 1000)
        _, rows = index.search(qvecs, 10)
        if kind == "flat":
            gt = rows
            recall = ""
        else:
            recall = f", recall@10 vs exact {np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, gt)]):.3f}"
        print(f"{n:>9,} vectors, dim {dim}, {kind:>4}: dense search p50 {np.percentile(lat, 50):.2f} ms, "
              f"p95 {np.percentile(lat, 95):.2f} ms (build {build:.0f} s){recall}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--max-questions", type=int, default=0, help="0 = all")
    parser.add_argument("--sweep", default="", help="comma-separated dense weights to compare (tuning)")
    parser.add_argument("--skip-xquad", action="store_true")
    parser.add_argument("--embedder", default=None, help="embedding model (default: the app's)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--split", choices=("all", "dev", "report"), default="all",
                        help="xquad-dev's questions: all, or the half choices were made on (dev) or the other (report)")
    parser.add_argument("--sentence-weight", type=float, default=None,
                        help="RetrievalConfig.sentence_weight for this run (default: the app's; 0: whole chunks only)")
    parser.add_argument("--arabic-stem", choices=("on", "off"), default="on",
                        help="off: BM25 takes Arabic words as written (tokenizer v1), to compare")
    parser.add_argument("--skip-cross", action="store_true", help="skip the cross-language part")
    parser.add_argument("--rewrite", type=int, default=0, metavar="N",
                        help="also the cross-language part with the question rewritten into English by the default "
                             "model, on N report-half questions per language (0: skip; loads the model)")
    parser.add_argument("--rewrite-split", choices=("dev", "report"), default="report",
                        help="the half of xquad-dev's questions --rewrite asks (dev: the one choices were made on)")
    args = parser.parse_args()
    if args.arabic_stem == "off":
        import retrieval.text

        retrieval.text.arabic_stem = lambda word: word
    import faiss

    print(f"# Retrieval benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, no GPU (faiss GPUs: {faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0}), "
          f"Python {platform.python_version()}, faiss {faiss.__version__}\n")
    print(f"settings: {config_of(args)}; questions: {args.split}\n")
    if not args.skip_xquad:
        embedder = load_embedder(args.embedder)
        print(f"embedding model: {embedder.name} (dim {embedder.dimension}, serves {embedder.languages})\n")
        xquad(args, embedder)
    if not args.skip_cross:
        cross_language(args)
    if args.rewrite:
        cross_language_rewrite(args)
    if not args.skip_synthetic:
        print("\n## Synthetic scale (vectors: unit vectors of intrinsic dimension 32 in the stated dimension; "
              "text: 60 Zipf-distributed words per chunk; 200 queries)\n")
        synthetic_hybrid(100_000, 384, ("flat", "hnsw"))
        synthetic_vectors(1_000_000, 64, ("flat", "ivf"))


if __name__ == "__main__":
    main()
