"""Citation markers at answer time (word overlap) against Explain's (leave-one-source-out), on real answers.

The chat puts ``[n]`` after each sentence as soon as an answer is finished, from word overlap with the
sources the model saw, else from the words a translation keeps (anchors: code, names, acronyms;
``assistant.explain.citations.cite``; the "word overlap only" column is the same without anchors); once the user explains the answer, the
markers become Explain's: the source whose removal lowers that sentence's likelihood most
(``from_explanation``).  The overlap markers are a cheap stand-in for Explain's, which cost a further
prompt pass per source.  This measures how good a stand-in they are, on the user-guide questions of
``bench/data/guide_questions.jsonl`` answered by the real default model through ``Engine.respond``:

* sentences marked by each, and how often both mark a sentence with the same source;
* support: of the marked sentences that state one of the question's key facts, the share whose cited
  source holds that fact (a right citation can be checked only where a fact pins it down: a sentence
  saying "`ASSISTANT_ADMIN_KEY`" should cite a passage that says it).

    python -m bench.citations --questions 12

Prints a table and writes ``bench/results/citations.md``.  Not a test: Explain takes tens of seconds
per answer on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.citations")


def sentence_facts(sentence: str, facts: Any) -> list[tuple[str, ...]]:
    """The key facts (each a tuple of alternatives) that ``sentence`` states."""
    from bench.answer_scoring import fact_matched

    return [f for f in facts if fact_matched(sentence, f)]


def supported(source_text: str, stated: list[tuple[str, ...]]) -> bool:
    from bench.answer_scoring import fact_matched

    return any(fact_matched(source_text, f) for f in stated)


def score(answer: str, sources: list[str], facts: Any, overlap: list[tuple[int, int, int]],
          explained: list[tuple[int, int, int]]) -> dict[str, int]:
    """Counts for one answer: sentences, marked by each method, same source, and fact support."""
    from assistant.explain.textspans import sentence_spans

    by_overlap = {(s, e): n for s, e, n in overlap}
    by_explain = {(s, e): n for s, e, n in explained}
    out = dict(sentences=0, overlap=0, explain=0, both=0, same=0, fact_overlap=0, fact_overlap_ok=0,
               fact_explain=0, fact_explain_ok=0)
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        if not sentence.strip():
            continue
        out["sentences"] += 1
        o = next((n for (s, e), n in by_overlap.items() if s < end and e > start), None)
        x = next((n for (s, e), n in by_explain.items() if s < end and e > start), None)
        out["overlap"] += o is not None
        out["explain"] += x is not None
        out["both"] += o is not None and x is not None
        out["same"] += o is not None and o == x
        stated = sentence_facts(sentence, facts)
        if stated and o is not None:
            out["fact_overlap"] += 1
            out["fact_overlap_ok"] += supported(sources[o - 1], stated)
        if stated and x is not None:
            out["fact_explain"] += 1
            out["fact_explain_ok"] += supported(sources[x - 1], stated)
    return out


def main(argv: list[str] | None = None) -> str:
    from assistant.engine import TurnFinished
    from assistant.explain.explainer import explain
    from assistant.explain.citations import cite, from_explanation
    from bench.answer_scoring import load_questions
    from bench.answers import GUIDE_QUESTIONS, guide_sample, runtime_for
    from bench.common import header, median, save, table
    from retrieval import default_index

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=12, help="answerable guide questions, taken round-robin over languages")
    ap.add_argument("--model", default=None, help="registry name (default: the default model)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    from assistant.generation.models import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    questions = guide_sample([q for q in load_questions(GUIDE_QUESTIONS) if q.answerable], args.questions)
    from assistant.generation.models import default_adapters

    # as shipped: the model's adapter where it is on by default, the retry adapter on declines
    rt = runtime_for(model, bool(default_adapters(model)),
                     argparse.Namespace(home=None, threads=None, max_new_tokens=None, retry="on"))
    totals: dict[str, int] = {}
    rows, explain_s = [], []
    with tempfile.TemporaryDirectory(prefix="bench-citations-") as tmp:
        rt.engine.index = default_index(Path(tmp) / "home", embedder=rt.embedder)
        for q in questions:
            conv = rt.store.create("bench")
            turn = next(e.turn for e in rt.engine.respond(conv, q.question) if isinstance(e, TurnFinished))
            if not turn.sources or not turn.answer_ids:
                log.info("%s: no generated answer with sources (%r)", q.id, turn.answer[:60])
                continue
            texts = [s.text for s in turn.sources]
            overlap = turn.citations  # the chat's markers, as the engine set them when the answer finished
            t0 = time.perf_counter()
            explained = from_explanation(turn.answer, explain(rt.lm, turn))
            explain_s.append(time.perf_counter() - t0)
            counts = score(turn.answer, texts, q.facts, overlap, explained)
            words = score(turn.answer, texts, q.facts, cite(turn.answer, texts, by_anchors=False), explained)
            counts.update({f"words_{k}": words[k] for k in ("overlap", "same", "both", "fact_overlap",
                                                             "fact_overlap_ok")})
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
            rows.append([q.id, q.language, counts["sentences"], counts["words_overlap"], counts["overlap"],
                         counts["explain"], counts["same"], f"{counts['fact_overlap_ok']}/{counts['fact_overlap']}",
                         f"{counts['fact_explain_ok']}/{counts['fact_explain']}"])
            log.info("%s: %s", q.id, counts)
            rt.engine.forget(conv.id)

    def share(a: str, b: str) -> str:
        return f"{totals.get(a, 0) / totals[b]:.2f} ({totals.get(a, 0)}/{totals[b]})" if totals.get(b) else "—"

    summary = [
        ["sentences marked", share("words_overlap", "sentences"), share("overlap", "sentences"),
         share("explain", "sentences")],
        ["marked by it and Explain: same source", share("words_same", "words_both"), share("same", "both"), "—"],
        ["marked sentences stating a key fact: cited source holds it",
         share("words_fact_overlap_ok", "words_fact_overlap"), share("fact_overlap_ok", "fact_overlap"),
         share("fact_explain_ok", "fact_explain")],
    ]
    text = "\n".join([
        header(f"Citation markers: at answer time (word overlap, then anchors) vs Explain (ablation), {model}"),
        f"{len(rows)} answers to answerable guide questions, {totals.get('sentences', 0)} sentences; "
        f"Explain took {median(explain_s):.1f} s per answer (median)." if explain_s else "no answers",
        "", table(["", "word overlap only", "chat: word overlap, then anchors", "Explain"], summary), "",
        table(["question", "language", "sentences", "word overlap marks", "chat marks", "Explain marks",
               "chat and Explain: same source", "chat: fact in cited source", "Explain: fact in cited source"],
              rows), "",
        "`python -m bench.citations " + " ".join(sys.argv[1:] if argv is None else argv) + "`"])
    print(text)
    save("citations", text)
    return text


if __name__ == "__main__":
    main()
