"""Routes: how many questions the documents answer get a fixed reply instead, and how many small-talk
messages get looked up instead of their reply (``assistant.understanding.message.looked_up``, ``ChatConfig.reply_confidence``).

Prints figures; it is not a test.  No language model is loaded: the route is decided before generation.

    python -m bench.routes [--split dev|report] [--threshold 0.65]

- XQuAD (``../shared/datasets/xquad-dev``), every question of ``--split`` about the articles
  ``bench.answers`` indexes, per language, through the shipped intent model: "fixed reply" counts the
  questions that got a fixed reply (greeting, thanks, "what can you do"...) or the out-of-scope one
  although retrieval finds a passage for them, at threshold 0 (never looked up) and at ``--threshold``.
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
    parser.add_argument("--threshold", type=float, default=None, help="default: ChatConfig.reply_confidence")
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
    threshold = ChatConfig().reply_confidence if args.threshold is None else args.threshold
    never, chosen = ChatConfig(reply_confidence=0.0), ChatConfig(reply_confidence=threshold)
    embedder = load_embedder()
    spec, intents = load_spec(), default_model(config.home, embedder=embedder)

    def canned(text: str, index) -> tuple[bool, bool]:
        """(fixed reply when never looked up, fixed reply at the threshold) for a message ``index`` covers."""
        u = understand(text, intents, spec)
        action, confidence = u.route.action, u.intent.confidence
        if action == "answer":
            return False, False
        found = bool(index.search(text, k=4, language=u.language.language))
        return (not (looked_up(action, confidence, never) and found),
                not (looked_up(action, confidence, chosen) and found))

    rows = []
    totals = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for lang in args.languages.split(","):
            paragraphs, present, _ = xquad_cases(lang, 10**6, 0, 0, args.split)
            index = xquad_index(Path(tmp), lang, paragraphs, embedder)
            before = after = 0
            for case in present:
                b, a = canned(case.question, index)
                before, after = before + b, after + a
            rows.append(f"| {lang} | {len(present)} | {before} | {after} |")
            totals.update(n=len(present), before=before, after=after)
    guide = default_index(config.home, embedder=embedder)
    small = []
    for path in (ROOT / "knowledge" / "intents_validation.jsonl", ROOT / "bench" / "data" / "intents_heldout.jsonl"):
        texts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        talk = [t["text"] for t in texts if (spec.get(t["intent"]) and spec.get(t["intent"]).action == "reply")]
        moved = [t for t in talk if canned(t, guide) == (True, False)]
        small.append(f"| {path.relative_to(ROOT)} | {len(talk)} | {len(moved)} | "
                     f"{'; '.join(moved[:6])}{' …' if len(moved) > 6 else ''} |")

    out = [
        header("Routes: fixed replies to questions the documents answer"),
        f"`python -m bench.routes --split {args.split}` (threshold {threshold}).",
        "",
        f"### XQuAD questions ({args.split} half) that get a fixed reply although retrieval finds a passage",
        "",
        f"| language | questions | never looked up | looked up below {threshold} |",
        "|---|---|---|---|",
        *rows,
        f"| all | {totals['n']} | {totals['before']} | {totals['after']} |",
        "",
        "### Small talk answered from the documents instead of its reply (user guide index)",
        "",
        "| messages | small talk | answered from the documents instead | which |",
        "|---|---|---|---|",
        *small,
    ]
    text = "\n".join(out)
    save("routes", text)
    return text


if __name__ == "__main__":
    print(main())
