"""Build the two-turn follow-up cases of bench/multiturn.py from xquad-dev.

The rule (deterministic, no hand edits):
  For each paragraph, take its questions in order and find the first pair
  (q1, q2) that shares a *subject span* which also occurs in the paragraph:
  - English: the longest run of consecutive words common to q1 and q2 with at
    least one word that is not a stop word;
  - Chinese: the longest common substring of at least 2 CJK characters that is
    not only question words.
  Turn 1 is q1 (it names the subject).  Turn 2 is q2 with the span replaced by
  a pronoun ("it" / "它"), so it refers to the subject only by the pronoun.
  The original q2 is kept as the standalone ceiling.
Writes bench/data/multiturn_{en,zh}.jsonl: {"id", "paragraph_id", "turn1",
"turn2", "turn2_original", "span"}.

    python -m bench.make_multiturn
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.common import DATASETS

OUT = Path(__file__).parent / "data"
STOP = {"the", "a", "an", "of", "in", "on", "at", "to", "for", "by", "with", "and", "or", "is", "was", "were", "are",
        "did", "do", "does", "what", "which", "who", "whom", "when", "where", "why", "how", "many", "much", "that",
        "this", "from", "as", "be", "been", "has", "have", "had", "it", "its", "than", "into", "after", "before"}
ZH_QWORDS = set("什么哪里谁多少几怎么为何是的了在和与吗呢年月日个")


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text)


def span_en(q1: str, q2: str) -> str | None:
    a, b = _words(q1), _words(q2)
    best: list[str] = []
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k].lower() == b[j + k].lower():
                k += 1
            if k > len(best) and any(w.lower() not in STOP for w in b[j:j + k]):
                best = b[j:j + k]
    return " ".join(best) if best else None


def span_zh(q1: str, q2: str) -> str | None:
    best = ""
    for i in range(len(q2)):
        for j in range(i + 2, len(q2) + 1):
            piece = q2[i:j]
            if len(piece) > len(best) and piece in q1 and re.fullmatch(r"[\u3400-\u9fff]+", piece) \
                    and not set(piece) <= ZH_QWORDS:
                best = piece
    return best or None


def build(lang: str) -> list[dict]:
    data = json.loads((DATASETS / "xquad-dev" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    cases = []
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(article["paragraphs"]):
            qs = [q["question"].strip() for q in para["qas"]]
            found = None
            for x in range(len(qs)):
                for y in range(len(qs)):
                    if x == y:
                        continue
                    span = span_en(qs[x], qs[y]) if lang == "en" else span_zh(qs[x], qs[y])
                    if span and span in para["context"] and span in qs[y]:
                        found = (qs[x], qs[y], span)
                        break
                if found:
                    break
            if not found:
                continue
            q1, q2, span = found
            pronoun = "it" if lang == "en" else "它"
            rewritten = q2.replace(span, pronoun, 1)
            cases.append({"id": f"{lang}-{a}-{p}", "paragraph_id": f"{a}-{p}", "turn1": q1, "turn2": rewritten,
                          "turn2_original": q2, "span": span})
    return cases


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for lang in ("en", "zh"):
        cases = build(lang)
        with (OUT / f"multiturn_{lang}.jsonl").open("w", encoding="utf-8") as fh:
            for c in cases:
                fh.write(json.dumps(c, ensure_ascii=False) + "\n")
        print(f"{lang}: {len(cases)} cases")


if __name__ == "__main__":
    main()
