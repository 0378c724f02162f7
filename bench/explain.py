"""Benchmark of Explain on XQuAD (dev half): does each attribution method
point at the paragraph that actually holds the answer, and what does an
explanation cost next to generating an answer?

For each sampled question: a prompt with the question, its own paragraph and
3 other paragraphs of the same language in random order (rendered with
``build_prompt`` like the engine does); the gold answer is forced as the
model's answer (teacher forcing, no generation); we count how often each
method ranks the question's own paragraph first.  Then the time of
``explain`` for a ~700-token prompt with 4 sources, relative to generating a
40-token answer for the same prompt.

Prints figures, not pass/fail:  .venv/bin/python -m bench.explain --n 60
(on a busy machine, one process per language: ``--langs zh --reps 0 --json zh.json``
then ``--merge en.json zh.json``)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import statistics
import sys
import threading
import time

from bench.common import DATASETS, header, save, table

log = logging.getLogger("bench.explain")


def load_xquad(lang: str) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Paragraphs and (question, gold answer, paragraph index) of one language."""
    data = json.loads((DATASETS / "xquad-dev" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    paragraphs, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            paragraphs.append(para["context"])
            for qa in para["qas"]:
                questions.append((qa["question"], qa["answers"][0]["text"], len(paragraphs) - 1))
    return paragraphs, questions


def make_turn(lm, system: str, question: str, answer: str, texts: list[str], lang: str):
    from assistant.prompting import PromptParts, build_prompt
    from assistant.types import Source, Turn

    sources = [Source(chunk_id=str(i), doc_id=str(i), text=t, source=f"xquad-{lang}", title=f"Paragraph {i + 1}",
                      language=lang) for i, t in enumerate(texts)]
    prompt = build_prompt(lm.tokenizer, PromptParts(system=system, message=question, sources=sources), budget=8000)
    assert sum(s.kind == "source" for s in prompt.segments) == len(texts)
    ids = lm.tokenizer(answer, add_special_tokens=False)["input_ids"]
    return Turn(user=question, answer=answer, sources=sources, prompt_ids=prompt.input_ids,
                segments=prompt.segments, answer_ids=ids, language=lang)


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def attribution(lm, system: str, lang: str, n: int, seed: int, minutes: float = 0.0) -> dict[str, float]:
    """Top-1 rates over up to ``n`` questions (fewer when ``minutes`` runs out; ``done`` says how many)."""
    from assistant.explain.explainer import explain
    from assistant.explain.types import ExplainConfig

    paragraphs, questions = load_xquad(lang)
    rng = random.Random(seed)
    picked = rng.sample(questions, n)
    hits = {"attention share": 0, "attention per token": 0, "ablation": 0, "citation": 0, "retrieval order": 0}
    lengths, seconds = [], []
    started = time.perf_counter()
    done = 0
    for k, (question, answer, own) in enumerate(picked):
        if minutes and time.perf_counter() - started > minutes * 60:
            log.info("%s: time budget of %.0f min spent after %d questions", lang, minutes, done)
            break
        others = rng.sample([i for i in range(len(paragraphs)) if i != own], 3)
        order = [own] + others
        rng.shuffle(order)
        turn = make_turn(lm, system, question, answer, [paragraphs[i] for i in order], lang)
        gold = order.index(own)
        expl = explain(lm, turn, ExplainConfig(ablation="leave_one_out"))
        s = expl.source_scores
        hits["attention share"] += argmax([x.attention_share for x in s]) == gold
        per_token = {seg.label: seg.attention_per_token for seg in expl.segments}
        hits["attention per token"] += argmax([per_token[f"source:{x.index}"] for x in s]) == gold
        hits["ablation"] += argmax([x.ablation_importance for x in s]) == gold
        hits["citation"] += any(c.source == gold + 1 for c in expl.sentences)
        hits["retrieval order"] += gold == 0  # chance baseline: the paragraph listed first
        lengths.append(len(turn.prompt_ids))
        seconds.append(expl.timings["total"])
        done += 1
        log.info("%s %d/%d gold=%d ablation=%s %.1fs", lang, k + 1, n, gold + 1,
                 [round(x.ablation_importance, 2) for x in s], expl.timings["total"])
    out = {m: h / max(done, 1) for m, h in hits.items()}
    out["done"] = done
    out["prompt tokens (median)"] = statistics.median(lengths)
    out["explain s (median)"] = statistics.median(seconds)
    return out


def timing(lm, system: str, reps: int) -> dict[str, float]:
    """explain() on a ~700-token, 4-source prompt vs generating a 40-token answer for it; and the time to
    the first token of another conversation whose prompt arrives while an explanation runs, against the
    same prompt alone."""
    from assistant.config import GenerationConfig
    from assistant.explain.explainer import explain
    from assistant.generation.local import Generation

    paragraphs, questions = load_xquad("en")
    rng = random.Random(1)
    free = dataclasses.replace(lm, stop_token_ids=())  # exactly 40 tokens, no early stop
    cold = dataclasses.replace(free, prefixes=None)  # first tokens from a cold prompt: no shared beginning taken
    gen_s, exp_s, sizes, alone, during = [], [], [], [], []
    for _ in range(reps):
        question, _answer, own = rng.choice(questions)
        texts = [paragraphs[own]]
        while len(texts) < 4:
            texts.append(paragraphs[rng.randrange(len(paragraphs))])
        # trim the paragraphs evenly to land near 700 prompt tokens
        turn = make_turn(lm, system, question, "x", texts, "en")
        while len(turn.prompt_ids) > 720:
            texts = [t[: int(len(t) * 0.95)] for t in texts]
            turn = make_turn(lm, system, question, "x", texts, "en")
        result = Generation(free, turn.prompt_ids, GenerationConfig(max_new_tokens=40, temperature=0.0)).run()
        turn.answer_ids, turn.answer_logprobs, turn.answer = result.token_ids, result.logprobs, result.text
        expl = explain(lm, turn)
        gen_s.append(result.total_time)
        exp_s.append(expl.timings["total"])
        sizes.append(len(turn.prompt_ids))
        # another conversation's prompt arriving 1 s into an Explain: how long until its first token
        explaining = threading.Thread(target=explain, args=(lm, turn))
        explaining.start()
        time.sleep(1.0)
        first = GenerationConfig(max_new_tokens=1, temperature=0.0)
        during.append(Generation(cold, turn.prompt_ids, first).run().time_to_first_token)
        explaining.join()
        alone.append(Generation(cold, turn.prompt_ids, first).run().time_to_first_token)
    g, e = statistics.median(gen_s), statistics.median(exp_s)
    return {"prompt tokens": statistics.median(sizes), "answer tokens": 40, "generate s": g, "explain s": e,
            "ratio": e / g, "first token alone s": statistics.median(alone),
            "first token during explain s": statistics.median(during)}


def report(figures: dict) -> str:
    rows = [[lang, int(r["done"]), r["ablation"], r["attention share"], r["attention per token"], r["citation"],
             r["retrieval order"], int(r["prompt tokens (median)"]), r["explain s (median)"]]
            for lang, r in figures.get("attribution", {}).items()]
    md = [header("Explain: attribution on XQuAD and cost"),
          f"Model {figures.get('model', '?')}. Each question: its own paragraph + 3 random paragraphs of the same "
          "language, shuffled; the gold answer forced as the answer. Top-1 = the method ranks the question's own "
          "paragraph first (chance 0.25). citation = some answer sentence cites it. Questions sampled with seed "
          f"{figures.get('seed', 0)}; fewer than asked where the time budget ran out.",
          "",
          table(["lang", "questions", "ablation top-1", "attention share top-1", "attention/token top-1",
                 "citation", "own paragraph listed first", "prompt tokens", "explain s"], rows)]
    speed = figures.get("timing")
    if speed:
        md += ["",
               "Time of explain (attention pass + 4 leave-one-out passes, prefix KV cache reused) vs generating a "
               f"40-token answer for the same prompt, median of {speed['reps']}:",
               "",
               table(["prompt tokens", "answer tokens", "generate s", "explain s", "explain / generate"],
                     [[int(speed["prompt tokens"]), 40, speed["generate s"], speed["explain s"], speed["ratio"]]])]
        if "first token during explain s" in speed:
            md += ["",
                   "Time to the first token of another conversation (the same prompt) whose prompt arrives 1 s into "
                   "an explanation, against that prompt alone, median of the same runs:",
                   "",
                   table(["first token alone s", "first token during an Explain s"],
                         [[speed["first token alone s"], speed["first token during explain s"]]])]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="questions per language (at most)")
    parser.add_argument("--minutes", type=float, default=0.0, help="time budget per language (0: none)")
    parser.add_argument("--langs", nargs="*", default=["en", "zh"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the timing run (0: skip it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--merge", nargs="+", help="only merge figure files written with --json, print and save")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    if args.merge:
        figures: dict = {"attribution": {}}
        for path in args.merge:
            part = json.loads(open(path, encoding="utf-8").read())
            figures["attribution"].update(part.pop("attribution", {}))
            figures.update({k: v for k, v in part.items() if v})
        text = report(figures)
        print(text)
        save("explain", text)
        return

    from assistant.config import ChatConfig, ModelConfig
    from assistant.generation.models import load_model
    from assistant.prompting import system_text

    lm = load_model(ModelConfig(threads=args.threads))
    chat = ChatConfig()
    base = chat.system_prompt.replace("{name}", chat.assistant_name)
    figures = {"model": f"{lm.name} ({lm.quantization}, {lm.device}, {args.threads} threads)", "seed": args.seed,
               "attribution": {}}
    if args.reps:
        figures["timing"] = dict(timing(lm, system_text(base, "en"), args.reps), reps=args.reps)
    for lang in args.langs:
        figures["attribution"][lang] = attribution(lm, system_text(base, lang), lang, args.n, args.seed, args.minutes)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(figures, fh)
    text = report(figures)
    print(text)
    save("explain", text)


if __name__ == "__main__":
    main()
