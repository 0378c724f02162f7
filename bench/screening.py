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

User messages, for the message check (``screen_message``: takeover attempts only, not requests about
the answer's form): every question of xquad-dev (12 languages), every xSID utterance (19 languages and
dialects), Banking77 and CLINC150 queries, SGD user turns and the guide questions.  The message rules are
the ingestion rules minus those about the answer's form; none was changed after this count.

Takeover messages written after the jailbreak rules (``bench/data/takeover-fresh.jsonl``, 96 attacks and
60 look-alike support messages in 12 languages, by a helper who had read neither the rules nor the other
attack sets): how many the message check declines.  One rule was fixed after this count (Russian
"правил…" also matched "правильный", one benign line), so that benign line is no longer independent.

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
from retrieval.screening import screen, screen_message  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INJECTION = Path(__file__).parent / "data" / "injection.jsonl"
SUITE = Path(__file__).parent / "data" / "injection-suite.jsonl"
FRESH = Path(__file__).parent / "data" / "takeover-fresh.jsonl"


def _rate(flagged: int, total: int) -> str:
    return f"{flagged / total:.3%}" if total else "nan"


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


def messages() -> list[tuple[str, list[str]]]:
    """Ordinary user messages, for the message check (``screen_message``)."""
    import csv

    from bench.understanding import read_xsid
    from finetune.xquad import LANGUAGES, load_language

    out = []
    questions = []
    for lang in LANGUAGES:
        questions += [q["question"] for p in load_language(DATASETS / "xquad-dev", lang) for q in p.qas]
    out.append(("xquad-dev questions, 12 languages", questions))
    xsid = []
    for path in sorted((DATASETS / "xsid-dev").glob("*.valid.conll")):
        xsid += [u["text"] for u in read_xsid(path, limit=10**6)]
    out.append(("xSID utterances, 19 languages and dialects", xsid))
    out.append(("Banking77 customer queries (en)", [r["text"] for split in ("train", "test") for r in
                csv.DictReader(open(DATASETS / "banking77" / f"{split}.csv", encoding="utf-8"))]))
    clinc = json.loads((DATASETS / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    out.append(("CLINC150 queries, in and out of scope (en)", [t for rows in clinc.values() for t, _ in rows]))
    sgd = []
    for path in sorted((DATASETS / "sgd-dialogues").glob("dialogues_*.json")):
        for dialogue in json.loads(path.read_text(encoding="utf-8")):
            sgd += [t["utterance"] for t in dialogue["turns"] if t["speaker"] == "USER"]
    out.append(("SGD user turns (en)", sgd))
    guide = [json.loads(line)["question"] for line in (Path(__file__).parent / "data" / "guide_questions.jsonl")
             .read_text(encoding="utf-8").splitlines() if line.strip()]
    out.append(("user guide questions (6 languages)", guide))
    return out


def fresh_section() -> str:
    """The message check on takeover attempts written after its jailbreak rules, by someone who had not
    read them (``bench/data/takeover-fresh.jsonl``), and on the held-out suite's direct attempts."""
    if not FRESH.is_file():
        return ""
    rows = [json.loads(line) for line in FRESH.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r["flagged"] = bool(screen_message(r["message"]))
    by_lang = []
    for lang in dict.fromkeys(r["language"] for r in rows):
        att = [r for r in rows if r["language"] == lang and r["label"] == "attack"]
        ben = [r for r in rows if r["language"] == lang and r["label"] == "benign"]
        by_lang.append([lang, f"{sum(r['flagged'] for r in att)}/{len(att)}", f"{sum(r['flagged'] for r in ben)}/{len(ben)}"])
    att = [r for r in rows if r["label"] == "attack"]
    ben = [r for r in rows if r["label"] == "benign"]
    by_lang.append(["all", f"{sum(r['flagged'] for r in att)}/{len(att)} ({_rate(sum(r['flagged'] for r in att), len(att))})",
                    f"{sum(r['flagged'] for r in ben)}/{len(ben)} ({_rate(sum(r['flagged'] for r in ben), len(ben))})"])
    families = []
    for fam in sorted({r["family"] for r in att}):
        mine = [r for r in att if r["family"] == fam]
        families.append([fam, len(mine), sum(r["flagged"] for r in mine)])
    suite = [json.loads(line) for line in SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]
    direct = [a for a in suite if a["kind"] == "direct"]
    benign = [a for a in suite if a["kind"] == "benign"]
    return "\n".join([
        "### Takeover messages written after the jailbreak rules (bench/data/takeover-fresh.jsonl)", "",
        "Written by a helper who had read neither the rules nor the other attack sets; declined = the message "
        "check flags it, so it never reaches the model.", "",
        table(["language", "attacks declined", "benign declined (false positives)"], by_lang), "",
        table(["attack family", "n", "declined"], families), "",
        "Missed attacks: " + ("; ".join(f"{r['id']} “{r['message'][:70]}”" for r in att if not r["flagged"]) or "none"),
        "", "False positives: " + ("; ".join(f"{r['id']} “{r['message'][:70]}”" for r in ben if r["flagged"]) or "none"),
        "", f"Held-out suite (bench/data/injection-suite.jsonl), as messages: direct attempts declined "
        f"{sum(bool(screen_message(a['message'])) for a in direct)}/{len(direct)}, benign controls declined "
        f"{sum(bool(screen_message(a['message'])) for a in benign)}/{len(benign)}. Not independent for the jailbreak rules: "
        "they were written after its run showed persona and mode takeovers passing.",
    ])


def main(argv: list[str] | None = None) -> str:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows, examples = [], []
    for name, texts in corpora():
        hits = [(t, f) for t in texts if (f := screen(t))]
        rows.append([name, len(texts), len(hits), _rate(len(hits), len(texts))])
        examples += [f"- {name}: {'; '.join(map(str, f))}" for _, f in hits[:3]]
    msg_rows, msg_examples = [], []
    for name, texts in messages():
        hits = [(t, f) for t in texts if (f := screen_message(t))]
        msg_rows.append([name, len(texts), len(hits), _rate(len(hits), len(texts))])
        msg_examples += [f"- {name}: “{t[:80]}” ({'; '.join(map(str, f))})" for t, f in hits[:5]]
    caught = []
    for line in INJECTION.read_text(encoding="utf-8").splitlines():
        a = json.loads(line)
        text = a["document"]["text"] if a["kind"] == "document" else a.get("message", "")
        caught.append((a["kind"], a["id"], bool(screen(text)), bool(screen_message(a["message"]))))
    inj_rows = []
    for kind, label in (("document", "document-borne attempts"), ("direct", "direct attempts, planted in a document"),
                        ("benign", "benign controls (should pass)")):
        got = [c for k, _, c, _ in caught if k == kind]
        inj_rows.append([label, len(got), sum(got), _rate(sum(got), len(got))])
    missed = [i for k, i, c, _ in caught if k != "benign" and not c]
    as_message = [(k, i, m) for k, i, _, m in caught if k != "document"]
    md = "\n".join([
        header("Screening at ingestion (retrieval.screening)"),
        "`python -m bench.screening`. Flagged = at least one finding in the passage.", "",
        "### Ordinary text (false positives)", "",
        table(["corpus", "passages", "flagged", "rate"], rows), "",
        *(["What was flagged (first 3 per corpus):", "", *examples, ""] if examples else []),
        "### Injected text", "",
        table(["attempts", "n", "flagged", "rate"], inj_rows), "",
        f"Missed: {', '.join(missed) if missed else 'none'}.", "",
        "### User messages (the message check, ``screen_message``: takeover attempts only)", "",
        "Ordinary messages (false positives: each would get the fixed \"can't change my instructions\" reply):", "",
        table(["messages", "n", "flagged", "rate"], msg_rows), "",
        *(["What was flagged (first 5 per corpus):", "", *msg_examples, ""] if msg_examples else []),
        table(["attempts", "n", "flagged", "rate"],
              [["direct attempts, as messages", sum(k == "direct" for k, _, _ in as_message),
                sum(m for k, _, m in as_message if k == "direct"),
                _rate(sum(m for k, _, m in as_message if k == "direct"), sum(k == "direct" for k, _, _ in as_message))],
               ["benign controls (should pass)", sum(k == "benign" for k, _, _ in as_message),
                sum(m for k, _, m in as_message if k == "benign"),
                _rate(sum(m for k, _, m in as_message if k == "benign"), sum(k == "benign" for k, _, _ in as_message))]]),
        "",
        f"Not flagged as messages: {', '.join(i for k, i, m in as_message if k == 'direct' and not m) or 'none'} "
        "(requests about the answer's form, and questions after the staff code, are left to the output guard).",
    ])
    md += "\n\n" + fresh_section()
    print(md)
    save("screening", md)
    return md


if __name__ == "__main__":
    main()
