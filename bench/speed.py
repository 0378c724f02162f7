"""Speed of a chat turn with the default model on this machine.

1. Time to first token of the 11th turn of a conversation, cold (whole prompt
   prefilled) versus warm (the conversation's KV cache from the previous turn
   reused, only the new tokens prefilled).  Median of 5.
2. A full turn — language + intent + entities + retrieval + first token — with
   the default knowledge base (p50 / p95 over 20 questions), through the engine.

    python -m bench.speed
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import header, median, percentile, save, table

QUESTIONS = [
    "How do I upload my own documents?", "What does the Explain button show?", "How can I embed the chat on my site?",
    "Can I finetune the model on my dialogues?", "Where are conversations stored?", "How do I rate an answer?",
    "What languages do you speak?", "How do I rebuild the index?", "What is the API endpoint?",
    "How do I start a new conversation?",
]


def followup_ttft(lm, runs: int = 5) -> list[list[object]]:
    from assistant.config import GenerationConfig
    from assistant.generation.local import Generation, PrefixCache
    from assistant.prompting import PromptParts, build_prompt
    from assistant.types import Turn

    settings = GenerationConfig(max_new_tokens=24, repetition_penalty=1.0)
    history: list[Turn] = []
    cache = PrefixCache()
    for i in range(10):  # build a real 10-turn conversation with the model's own answers
        parts = PromptParts(system="You are a helpful support assistant.", message=QUESTIONS[i], history=history)
        prompt = build_prompt(lm.tokenizer, parts, budget=1800)
        r = Generation(lm, prompt.input_ids, settings, prefix_cache=cache).run()
        history.append(Turn(user=QUESTIONS[i], answer=r.text))
    parts = PromptParts(system="You are a helpful support assistant.", message="Thanks! And how do I reset it?",
                        history=history)
    final = build_prompt(lm.tokenizer, parts, budget=1800)
    cold, warm, reused = [], [], []
    snapshot_ids, snapshot_cache = cache.token_ids, cache.cache
    import dataclasses

    alone = dataclasses.replace(lm, prefixes=None)  # cold: not even the system prompt other conversations share
    for _ in range(runs):
        cold.append(Generation(alone, final.input_ids, GenerationConfig(max_new_tokens=1)).run().time_to_first_token)
        import copy

        c = PrefixCache()
        c.store(list(snapshot_ids), copy.deepcopy(snapshot_cache))
        r = Generation(lm, final.input_ids, GenerationConfig(max_new_tokens=1), prefix_cache=c).run()
        warm.append(r.time_to_first_token)
        reused.append(r.cached_tokens)
    return [[len(final.input_ids), int(median(reused)), median(cold), median(warm), median(warm) / median(cold)]]


def full_turn(n: int = 20) -> list[list[object]] | None:
    from assistant.config import AppConfig
    from assistant.runtime import build_runtime

    rt = build_runtime(AppConfig.load(), store_path=":memory:")
    rt.engine.generation.max_new_tokens = 1
    stages: dict[str, list[float]] = {"understand": [], "retrieve": [], "first_token": [], "turn to first token": []}
    for i in range(n):
        conv = rt.store.create("bench")
        t0 = time.perf_counter()
        first = None
        from assistant.engine import TokenEvent, TurnFinished

        for event in rt.engine.respond(conv, QUESTIONS[i % len(QUESTIONS)]):
            if isinstance(event, TokenEvent) and first is None:
                first = time.perf_counter() - t0
            if isinstance(event, TurnFinished):
                t = event.turn.timings
                stages["understand"].append(t.get("understand", 0.0))
                stages["retrieve"].append(t.get("retrieve", 0.0))
                stages["first_token"].append(t.get("first_token", 0.0))
                stages["turn to first token"].append(first if first is not None else time.perf_counter() - t0)
    return [[k, median(v) * 1000, percentile(v, 95) * 1000] for k, v in stages.items()]


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    from assistant.generation.models import load_model

    lm = load_model()
    adapters = f" + adapter {', '.join(Path(a).name for a in lm.adapters)}" if lm.adapters else ""
    decoder = ", lean decoder" if lm.fast is not None else ""
    md = header(f"Chat-turn speed ({lm.name}{adapters}, {lm.quantization}{decoder})")
    md += "\n### Follow-up turn: KV cache reuse\n\n" + table(
        ["prompt tokens (turn 11)", "tokens reused", "cold TTFT (s)", "warm TTFT (s)", "warm / cold"],
        followup_ttft(lm, args.runs))
    rows = full_turn()
    md += "\n\n### Full turn with the default knowledge base (20 questions)\n\n" + table(
        ["stage", "p50 (ms)", "p95 (ms)"], rows)
    md += "\n\n`python -m bench.speed`\n"
    print(md)
    save("speed", md)
    return md


if __name__ == "__main__":
    main()
