"""Routes: how many questions the documents answer get a fixed reply instead, and how many small-talk
messages get looked up instead of their reply (``assistant.understanding.message.looked_up``, ``ChatConfig.reply_confidence``).

Prints figures; it is not a test.  No language model is loaded: the route is decided before generation.

    python -m bench.routes [--split dev|report] [--threshold 0.65[,0.8,...]]

- XQuAD (``../shared/datasets/xquad-dev``), every question of ``--split`` about the articles
  ``bench.answers`` indexes, per language, through the shipped intent model: "fixed reply" counts the
  questions that got a fixed reply (greeting, thanks, "what can you do"...) or the out-of-scope one
  although retrieval finds a passage for them, at threshold 0 (never looked up) and at each ``--threshold``
  (several, comma-separated, are compared in one pass: each message is read and looked up once).
- Small talk: the intents files' messages (``knowledge/intents_validation.jsonl``, from which the threshold
  was chosen, and ``bench/data/intents_heldout.jsonl``, which it was not) whose intent has a fixed reply;
  "answered from the documents instead" counts those the threshold sends to retrieval and retrieval
  finds a passage for, on the shipped user guide's index.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

from bench.common import header, save

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "report"], default="report")
    parser.add_argument("--threshold", default=None,
                        help="one or more comma-separated thresholds (default: ChatConfig.reply_confidence)")
    parser.add_argument("--languages", default="ar,de,el,en,es,hi,ro,ru,th,tr,vi,zh")
    args = parser.parse_args(argv)

    from assistant.config import AppConfig, ChatConfig
    from assistant.understanding.message import looked_up
    from assistant.understanding import understand
    from assistant.understanding.intents import default_model, load_spec
    from bench.answers import xquad_cases, xquad_index
    from retrieval import default_index
    from retrieval.embedding import load_embedder

    config = AppConfig.load()
    thresholds = ([ChatConfig().reply_confidence] if args.threshold is None
                  else [float(t) for t in str(args.threshold).split(",")])
    never, chosen = ChatConfig(reply_confidence=0.0), [ChatConfig(reply_confidence=t) for t in thresholds]
    embedder = load_embedder()
    spec, intents = load_spec(), default_model(config.home, embedder=embedder)

    def canned(text: str, index) -> tuple[bool, ...]:
        """(fixed reply when never looked up, fixed reply at each threshold) for a message ``index`` covers."""
        u = understand(text, intents, spec)
        action, confidence = u.route.action, u.intent.confidence
        if action == "answer":
            return (False,) * (1 + len(chosen))
        found = bool(index.search(text, k=4, language=u.language.language))
        return tuple(not (looked_up(action, confidence, c) and found) for c in (never, *chosen))

    rows = []
    totals = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for lang in args.languages.split(","):
            paragraphs, present, _ = xquad_cases(lang, 10**6, 0, 0, args.split)
            index = xquad_index(Path(tmp), lang, paragraphs, embedder)
            counts = [0] * (1 + len(chosen))
            for case in present:
                counts = [n + c for n, c in zip(counts, canned(case.question, index))]
            rows.append(f"| {lang} | {len(present)} | {' | '.join(map(str, counts))} |")
            totals.update({"n": len(present), **{i: c for i, c in enumerate(counts)}})
    guide = default_index(config.home, embedder=embedder)
    small = []
    for path in (ROOT / "knowledge" / "intents_validation.jsonl", ROOT / "bench" / "data" / "intents_heldout.jsonl"):
        texts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        talk = [t["text"] for t in texts if (spec.get(t["intent"]) and spec.get(t["intent"]).action == "reply")]
        seen = [(t, canned(t, guide)) for t in talk]
        for i, threshold in enumerate(thresholds, start=1):
            moved = [t for t, c in seen if c[0] and not c[i]]
            small.append(f"| {path.relative_to(ROOT)} | {threshold} | {len(talk)} | {len(moved)} | "
                         f"{'; '.join(moved[:6])}{' …' if len(moved) > 6 else ''} |")

    out = [
        header("Routes: fixed replies to questions the documents answer"),
        f"`python -m bench.routes --split {args.split}` (threshold {', '.join(map(str, thresholds))}).",
        "",
        f"### XQuAD questions ({args.split} half) that get a fixed reply although retrieval finds a passage",
        "",
        "| language | questions | never looked up | " + " | ".join(f"looked up below {t}" for t in thresholds) + " |",
        "|---|---|---|" + "---|" * len(thresholds),
        *rows,
        f"| all | {totals['n']} | " + " | ".join(str(totals[i]) for i in range(1 + len(thresholds))) + " |",
        "",
        "### Small talk answered from the documents instead of its reply (user guide index)",
        "",
        "| messages | threshold | small talk | answered from the documents instead | which |",
        "|---|---|---|---|---|",
        *small,
    ]
    text = "\n".join(out)
    save("routes", text)
    return text


if __name__ == "__main__":
    print(main())
