"""Follow-up retrieval on two-turn cases built from xquad-dev
(bench/data/multiturn_{en,zh}.jsonl, made by bench/make_multiturn.py).

Per language, the corpus is the language's xquad-dev paragraphs in the shipped
hybrid index; the relevant passage is the case's paragraph.  Recall@1 of the
second turn's retrieval with:
  (a) the pronoun message alone,
  (b) the shipped follow-up retrieval (assistant.context.retrieve_for_turn:
      the augmented query, kept only when it agrees with the message's own top 10),
  (c) the original standalone question (the ceiling),
  (d) the original question asked right after an *unrelated* first turn
      (another paragraph's question) through the follow-up method — must not
      lose against (c).
Gap closed = (b - a) / (c - a).

    python -m bench.multiturn
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.common import DATASETS, header, save, table

DATA = Path(__file__).parent / "data"


def build_index(lang: str, folder: Path, embedder):
    from retrieval.index import KnowledgeIndex

    data = json.loads((DATASETS / "xquad-dev" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    docs = folder / "docs"
    docs.mkdir(parents=True)
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(article["paragraphs"]):
            (docs / f"{a}-{p}.txt").write_text(para["context"], encoding="utf-8")
    index = KnowledgeIndex.create(folder / "index", embedder)
    index.add_paths([docs])
    return index


def recall_at_1(index, lang: str, queries: list[str], targets: list[str]) -> float:
    hits = 0
    for q, t in zip(queries, targets):
        res = index.search(q, k=1, language=lang, floor=False)
        if res and Path(res[0].source).stem == t:
            hits += 1
    return hits / max(1, len(queries))


def shipped_recall_at_1(index, lang: str, pairs: list[tuple[str, str]], targets: list[str]) -> float:
    """Recall@1 through the engine's own follow-up retrieval (context.retrieve_for_turn)."""
    from assistant.context import retrieve_for_turn
    from assistant.types import Conversation, Turn

    hits = 0
    for (first, message), t in zip(pairs, targets):
        conv = Conversation()
        conv.turns.append(Turn(user=first, answer="", query=first))
        _, res = retrieve_for_turn(lambda q, k: index.search(q, k=k, language=lang, floor=False), conv, message, 1)
        if res and Path(res[0].source).stem == t:
            hits += 1
    return hits / max(1, len(pairs))


def main(argv: list[str] | None = None) -> str:
    from assistant.context import followup_query
    from assistant.types import Conversation, Turn
    from retrieval.embedding import load_embedder

    embedder = load_embedder()
    rows = []
    for lang in ("en", "zh"):
        cases = [json.loads(l) for l in (DATA / f"multiturn_{lang}.jsonl").read_text(encoding="utf-8").splitlines()]
        with tempfile.TemporaryDirectory() as tmp:
            index = build_index(lang, Path(tmp), embedder)
            targets = [c["paragraph_id"] for c in cases]

            def conv_with(first: str) -> Conversation:
                conv = Conversation()
                conv.turns.append(Turn(user=first, answer="", query=first))
                return conv

            a = recall_at_1(index, lang, [c["turn2"] for c in cases], targets)
            b = shipped_recall_at_1(index, lang, [(c["turn1"], c["turn2"]) for c in cases], targets)
            c_ = recall_at_1(index, lang, [c["turn2_original"] for c in cases], targets)
            unrelated = [cases[(i + len(cases) // 2) % len(cases)]["turn1"] for i in range(len(cases))]
            d = shipped_recall_at_1(index, lang, [(u, c["turn2_original"]) for u, c in zip(unrelated, cases)],
                                    targets)
            naive = recall_at_1(index, lang, [followup_query(conv_with(c["turn1"]), c["turn2"]) for c in cases],
                                targets)
        gap = (b - a) / (c_ - a) if c_ > a else float("nan")
        rows.append([lang, len(cases), a, naive, b, c_, gap, d])
    md = header("Multi-turn follow-up retrieval (xquad-dev two-turn cases)") + "\n" + table(
        ["language", "cases", "(a) message alone R@1", "always-augment R@1", "(b) shipped follow-up R@1", "(c) standalone ceiling R@1",
         "gap closed (b-a)/(c-a)", "(d) standalone after unrelated turn R@1"], rows)
    md += "\n\nCases: bench/data/multiturn_*.jsonl (rule in bench/make_multiturn.py). `python -m bench.multiturn`\n"
    print(md)
    save("multiturn", md)
    return md


if __name__ == "__main__":
    main()
