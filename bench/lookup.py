"""Prompt-lookup decoding (``assistant.generation.lookup``) on the default model: decode tokens/s with and without it.

Grounded answers: questions of ``bench/data/guide_questions.jsonl`` (answerable, dev split first), each
with the user-guide passages the app's index retrieves for it, in the engine's own prompt; free chat: the
same model with no sources.  Greedy, as the app answers; each prompt decoded with ``lookup_tokens`` 0 and
the configured draft length, and the answers compared token for token.  Figures: decode tokens/s (answer
tokens after the first, over the time after the first), mean tokens accepted per checking pass, and time to
the first token (the prompt; lookup does not change it).

    python -m bench.lookup [--questions 8] [--lookup-tokens 8] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.answer_scoring import load_questions  # noqa: E402
from bench.common import header, median, save, table  # noqa: E402

FREE_CHAT = ["Write a short poem about the sea.", "Give me three tips for a job interview.",
             "Explain what a CPU cache is.", "Wie plane ich eine Geburtstagsfeier?",
             "Quels sont les bienfaits du thé vert ?", "如何学习一门新语言？",
             "Describe a good morning routine.", "What makes a good password?"]


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.lookup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=8, help="grounded questions (and as many free-chat ones)")
    ap.add_argument("--lookup-tokens", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args(argv)

    import dataclasses

    from assistant.config import AppConfig
    from assistant.types import Turn
    from assistant.generation.local import Generation
    from assistant.runtime import build_runtime
    from bench.answers import GUIDE_QUESTIONS

    rt = build_runtime(AppConfig.load(), store_path=":memory:")
    # Both runs of a prompt prefill it whole: taking the system prompt from another conversation's prefill
    # (generation.prefixes) rounds differently in bf16, and the answers could then differ for that reason.
    rt.lm.prefixes = None
    questions = sorted((q for q in load_questions(GUIDE_QUESTIONS) if q.answerable), key=lambda q: q.split != "dev")
    base = dataclasses.replace(rt.engine.generation, max_new_tokens=args.max_new_tokens)
    rows, same, total = [], 0, 0
    for kind, texts, index in (("grounded (guide, retrieved sources)", [q.question for q in questions[:args.questions]],
                                rt.engine.index),
                               ("free chat (no sources)", FREE_CHAT[:args.questions], None)):
        rt.engine.index = index
        stats: dict[int, list] = {0: [], args.lookup_tokens: []}
        for text in texts:
            conv = rt.store.create("bench")
            u = rt.engine.understand(text, conv)
            turn = Turn(user=text, language=u.language)
            if index is not None:
                turn.sources = rt.engine._retrieve(conv, text, u.language)[1]
            prompt = rt.engine.build_prompt(conv, text, turn)
            results = {k: Generation(rt.lm, prompt.input_ids, dataclasses.replace(base, lookup_tokens=k)).run()
                       for k in stats}
            total += 1
            same += results[0].token_ids == results[args.lookup_tokens].token_ids
            for k, r in results.items():
                stats[k].append(r)
        for k, results in stats.items():
            tokens = sum(len(r.token_ids) - 1 for r in results)
            decode = sum(r.total_time - r.time_to_first_token for r in results)
            rows.append([kind, "on" if k else "off", len(results), tokens, round(tokens / decode, 2) if decode else 0,
                         round(sum(r.accepted_draft_tokens for r in results) / max(1, sum(r.forward_passes - 1
                                                                                         for r in results)), 2) if k else "",
                         round(median([r.time_to_first_token for r in results]), 2)])
    by = {(r[0], r[1]): r[4] for r in rows}
    ratios = [[kind, round(by[(kind, "on")] / by[(kind, "off")], 2) if by[(kind, "off")] else ""]
              for kind in dict.fromkeys(r[0] for r in rows)]
    md = header("Prompt-lookup decoding, default model") + (
        f"`python -m bench.lookup --questions {args.questions} --lookup-tokens {args.lookup_tokens} "
        f"--max-new-tokens {args.max_new_tokens}`, greedy, model {rt.lm.name} ({rt.lm.dtype} activations).\n\n"
        + table(["prompts", "lookup", "answers", "answer tokens", "decode tok/s", "accepted draft tokens per decode pass",
                 "first token p50 s"], rows)
        + "\n\n" + table(["prompts", "decode speed-up (on / off)"], ratios)
        + f"\n\nIdentical answers with and without lookup: {same} of {total}.\n")
    print(md)
    save("lookup", md)
    return md


if __name__ == "__main__":
    main()
