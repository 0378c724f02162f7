"""Generation speed of the registry models on this machine.

The shipped default (nf4 base, answers from the lean int4 decoder of
``assistant.generation.fastdecode``), the lean decoder's other weight formats, and
transformers' own forward in nf4, int8, bf16 and fp32: decode tokens/s, time
to first token for a ~700-token prompt, and peak resident memory; the median
of 3 runs, each configuration in its own process (so peak memory is its own).
Where llama-cpp-python is installed (``pip install -e .[llamacpp]``), the same
prompt through llama.cpp on the same GGUF file, side by side, and the ratios.

    python -m bench.generation [--runs 3] [--new-tokens 64] [--models gemma-3-270m,smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.common import header, median, save, table

CONFIGS = {
    "default: lean int4 decoder": dict(quantization="nf4", compute_dtype="bfloat16", fast_decode="int4"),
    "lean int4 decoder on torch's 4-bit kernel": dict(quantization="nf4", compute_dtype="bfloat16", fast_decode="int4"),
    "lean bf16 decoder": dict(quantization="none", compute_dtype="float32", fast_decode="bfloat16"),
    "lean fp32 decoder": dict(quantization="none", compute_dtype="float32", fast_decode="float32"),
    "transformers nf4": dict(quantization="nf4", compute_dtype="bfloat16", fast_decode="off"),
    "transformers nf4-fp32-compute": dict(quantization="nf4", compute_dtype="float32", fast_decode="off"),
    "transformers int8": dict(quantization="int8", compute_dtype="float32", fast_decode="off"),
    "transformers bf16": dict(quantization="none", compute_dtype="bfloat16", fast_decode="off"),
    "transformers fp32": dict(quantization="none", compute_dtype="float32", fast_decode="off"),
}

CHILD_ENV = {"lean int4 decoder on torch's 4-bit kernel": {"ASSISTANT_INT8_DOT": "off"}}
"""Environment a configuration's process runs with: the same decoder without ``q4kernel`` (its int8 dot
products), to compare the two kernels on the same weights."""

FILLER = (
    "Our support team answers questions about orders, refunds, deliveries and accounts. "
    "Refunds are paid back to the original payment method within five working days. "
)


def build_prompt_ids(tokenizer, target: int = 700) -> list[int]:
    text = FILLER
    while True:
        ids = tokenizer.apply_chat_template(
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": text + "\nSummarise the policy above in one sentence."}],
            add_generation_prompt=True, tokenize=True)["input_ids"]
        if len(ids) >= target:
            return list(ids)
        text += FILLER


def child(model: str, name: str, runs: int, new_tokens: int) -> dict:
    import resource

    from assistant.config import GenerationConfig, ModelConfig
    from assistant.generation.local import Generation
    from assistant.generation.models import load_model

    lm = load_model(ModelConfig(name=model, adapters=(), **CONFIGS[name]))
    lm.stop_token_ids = ()  # decode exactly `new_tokens` tokens
    lm.prefixes = None  # every run prefills the whole prompt (cold), as the first conversation does
    ids = build_prompt_ids(lm.tokenizer)
    settings = GenerationConfig(max_new_tokens=new_tokens, repetition_penalty=1.0)
    Generation(lm, ids[:64], GenerationConfig(max_new_tokens=4)).run()  # warm-up
    ttft, decode = [], []
    for _ in range(runs):
        r = Generation(lm, ids, settings).run()
        ttft.append(r.time_to_first_token)
        decode.append(r.decode_tokens_per_second)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    actual = lm.quantization + (f" + lean {lm.fast.fmt}" if lm.fast is not None else "")
    if lm.fast is not None and lm.fast.fmt == "int4":
        from assistant.generation import q4kernel

        actual += " (int8 dot kernel)" if q4kernel.library() is not None else " (torch's 4-bit kernel)"
    return {"config": name, "actual": actual, "prompt_tokens": len(ids), "ttft": median(ttft),
            "prefill_tps": len(ids) / median(ttft), "decode_tps": median(decode), "peak_mb": peak_mb}


def concurrent(model: str, sizes: list[int], new_tokens: int) -> list[list[object]]:
    """Aggregate decode tokens/s with N conversations generating at once (the default configuration, its
    ``DecodeBatcher``): each conversation prefills its own prompt first (one after another), then all
    decode ``new_tokens`` tokens together; tokens/s over that decode phase."""
    import threading
    import time

    from assistant.config import GenerationConfig, ModelConfig
    from assistant.generation.local import Generation
    from assistant.generation.models import load_model

    lm = load_model(ModelConfig(name=model, adapters=(), **CONFIGS["default: lean int4 decoder"]))
    lm.stop_token_ids = ()
    settings = GenerationConfig(max_new_tokens=new_tokens, repetition_penalty=1.0, stop_on_repeat=0)
    rows = []
    for n in sizes:
        prompts = [build_prompt_ids(lm.tokenizer, 120 + 16 * i) for i in range(n)]
        gens = [iter(Generation(lm, p, settings)) for p in prompts]
        for g in gens:
            next(g)  # prefill + the first token, one conversation after another
        steps0 = (lm.batcher.steps, lm.batcher.rows) if lm.batcher else (0, 0)
        go = threading.Barrier(n + 1)
        done = [0] * n

        def run(i: int) -> None:
            go.wait()
            for _ in gens[i]:
                done[i] += 1

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        go.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        batch = ((lm.batcher.rows - steps0[1]) / max(1, lm.batcher.steps - steps0[0])) if lm.batcher else 1.0
        rows.append([n, sum(done), wall, sum(done) / wall, batch])
    base = rows[0][3]
    return [r + [r[3] / base] for r in rows]


def llama_cpp(model: str, runs: int, new_tokens: int) -> dict | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    import resource
    import time

    from assistant.generation.models import MODELS, gguf_path_for
    from assistant.config import assistant_home
    from transformers import AutoTokenizer

    path = gguf_path_for(MODELS[model], assistant_home())
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ids = build_prompt_ids(tok)
    threads = os.cpu_count() or 1  # llama-cpp-python defaults to half the cores; torch uses all of them
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    ttft, decode = [], []
    for _ in range(runs):
        llm.reset()
        t0 = time.perf_counter()
        first = None
        n = 0
        for _tok in llm.generate(ids, temp=0.0):
            n += 1
            if first is None:
                first = time.perf_counter() - t0
            if n >= new_tokens:
                break
        total = time.perf_counter() - t0
        ttft.append(first)
        decode.append((n - 1) / (total - first))
    return {"config": "llama.cpp (same GGUF)", "actual": "GGUF as shipped", "prompt_tokens": len(ids), "ttft": median(ttft),
            "prefill_tps": len(ids) / median(ttft), "decode_tps": median(decode),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> str:
    from assistant.generation.models import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--models", default=DEFAULT_MODEL, help="comma-separated registry names (default: the default)")
    ap.add_argument("--only", help="comma-separated configurations (default: all, then llama.cpp)")
    ap.add_argument("--concurrent", default="1,4,8",
                    help="conversation counts for the aggregate decode table (empty: skip it)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child and args.child.endswith("::concurrent"):
        sizes = [int(n) for n in args.concurrent.split(",")]
        print("RESULT " + json.dumps(concurrent(args.child.split("::")[0], sizes, args.new_tokens)))
        return ""
    if args.child:
        model, name = args.child.split("::", 1)
        result = llama_cpp(model, args.runs, args.new_tokens) if name == "llama.cpp" else \
            child(model, name, args.runs, args.new_tokens)
        print("RESULT " + json.dumps(result))
        return ""
    md = header("Generation")
    for model in args.models.split(","):
        rows = []
        for name in (args.only.split(",") if args.only else [*CONFIGS, "llama.cpp"]):
            proc = subprocess.run([sys.executable, "-m", "bench.generation", "--child", f"{model}::{name}",
                                   "--runs", str(args.runs), "--new-tokens", str(args.new_tokens)],
                                  capture_output=True, text=True, env={**os.environ, **CHILD_ENV.get(name, {})})
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(f"{model} {name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(line[7:])
            if r is None:
                continue  # llama-cpp-python not installed
            rows.append([r["config"], r["actual"], r["prompt_tokens"], r["ttft"], r["prefill_tps"], r["decode_tps"],
                         r["peak_mb"]])
        md += f"\n### {model}{' (default)' if model == DEFAULT_MODEL else ''}\n\n" + table(
            ["config", "in effect", "prompt tokens", "time to first token (s)", "prefill tok/s", "decode tok/s",
             "peak RSS (MB)"], rows) + "\n"
        if args.concurrent:
            proc = subprocess.run([sys.executable, "-m", "bench.generation", "--child", f"{model}::concurrent",
                                   "--concurrent", args.concurrent, "--new-tokens", str(args.new_tokens)],
                                  capture_output=True, text=True)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(f"{model} concurrent: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            else:
                off = os.environ.get("ASSISTANT_INT8_DOT", "").lower() in ("off", "0", "false", "no")
                md += ("\nConversations decoding at once (default configuration, batched decode steps"
                       + (", ASSISTANT_INT8_DOT=off: torch's 4-bit kernel" if off else "") + "):\n\n") + table(
                    ["conversations", "tokens", "decode wall (s)", "aggregate decode tok/s", "mean batch",
                     "vs one conversation"], json.loads(line[7:])) + "\n"
        default = next((r for r in rows if r[0].startswith("default")), None)
        llama = next((r for r in rows if r[0].startswith("llama.cpp")), None)
        if default and llama:
            md += (f"\nDefault vs llama.cpp, same run: decode {default[5] / llama[5]:.2f}x, "
                   f"prefill {default[4] / llama[4]:.2f}x.\n")
    md += (f"\nMedian of {args.runs} runs of {args.new_tokens} new tokens, base weights without adapter; each "
           f"configuration in its own process. `python -m bench.generation --models {args.models}"
           + (f" --only '{args.only}'" if args.only else "") + "`\n")
    print(md)
    save("generation", md)
    return md


if __name__ == "__main__":
    main()
