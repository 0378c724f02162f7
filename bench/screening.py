"""Screening at ingestion (``retrieval.screening``): how often ordinary documents are flagged, and how
many injected documents are caught.  No model; a few seconds.

    python -m bench.screening

Ordinary text, each passage screened as the index screens a chunk:

- xquad-dev, every paragraph in its 12 languages (Wikipedia);
- the shipped user guide (``knowledge/docs``, en + zh), chunked as the app indexes it;
- SGD dialogues (``sgd-dialogues``), every system turn: a support agent's replies, the nearest public
  text to what support teams load.

The rules were adjusted after looking at the xquad-dev and guide passages they flagged (a quoted
"from now on, you should", stray zero-width spaces, "启动助手："), so those two rows are not independent
figures; the SGD rows were measured once, after the rules were fixed.

Injected: the document-borne attempts of ``bench/data/injection.jsonl`` (what ``bench.injection`` uploads)
and, as text planted in a document, its direct attempts; benign controls there should pass.  The rules
were written with these attempts in view, so the injected rows say the rules do what they were meant to,
not how they fare against attacks nobody wrote them for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATASETS, header, save, table  # noqa: E402
from retrieval.chunking import chunk_document, embedding_text  # noqa: E402
from retrieval.readers import extract  # noqa: E402
from retrieval.screening import screen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INJECTION = Path(__file__).parent / "data" / "injection.jsonl"


def _rate(flagged: int, total: int) -> str:
    return f"{flagged / total:.4f}" if total else "nan"


def corpora() -> list[tuple[str, list[str]]]:
    from finetune.xquad import LANGUAGES, load_language

    out = []
    for lang in LANGUAGES:
        out.append((f"xquad-dev {lang}", [p.context for p in load_language(DATASETS / "xquad-dev", lang)]))
    guide = []
    for path in sorted((ROOT / "knowledge" / "docs").rglob("*.md")):
        doc = extract(str(path), path.read_bytes())
        guide += [embedding_text(c) for c in chunk_document(doc, "d", chunk_tokens=200, overlap_tokens=40)]
    out.append(("user guide (en, zh)", guide))
    sgd = []
    for path in sorted((DATASETS / "sgd-dialogues").glob("dialogues_*.json")):
        for dialogue in json.loads(path.read_text(encoding="utf-8")):
            sgd += [t["utterance"] for t in dialogue["turns"] if t["speaker"] == "SYSTEM"]
    out.append(("SGD system turns (en)", sgd))
    return out


def main(argv: list[str] | None = None) -> str:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows, examples = [], []
    for name, texts in corpora():
        hits = [(t, f) for t in texts if (f := screen(t))]
        rows.append([name, len(texts), len(hits), _rate(len(hits), len(texts))])
        examples += [f"- {name}: {'; '.join(map(str, f))}" for _, f in hits[:3]]
    caught = []
    for line in INJECTION.read_text(encoding="utf-8").splitlines():
        a = json.loads(line)
        text = a["document"]["text"] if a["kind"] == "document" else a.get("message", "")
        caught.append((a["kind"], a["id"], bool(screen(text))))
    inj_rows = []
    for kind, label in (("document", "document-borne attempts"), ("direct", "direct attempts, planted in a document"),
                        ("benign", "benign controls (should pass)")):
        got = [c for k, _, c in caught if k == kind]
        inj_rows.append([label, len(got), sum(got), _rate(sum(got), len(got))])
    missed = [i for k, i, c in caught if k != "benign" and not c]
    md = "\n".join([
        header("Screening at ingestion (retrieval.screening)"),
        "`python -m bench.screening`. Flagged = at least one finding in the passage.", "",
        "### Ordinary text (false positives)", "",
        table(["corpus", "passages", "flagged", "rate"], rows), "",
        *(["What was flagged (first 3 per corpus):", "", *examples, ""] if examples else []),
        "### Injected text", "",
        table(["attempts", "n", "flagged", "rate"], inj_rows), "",
        f"Missed: {', '.join(missed) if missed else 'none'}.",
    ])
    print(md)
    save("screening", md)
    return md


if __name__ == "__main__":
    main()
