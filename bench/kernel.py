"""The decode step's 4-bit products: torch's kernel against ``q4kernel`` (int8 dot products), same bytes.

1. Time: the products of one decode step of the 1.5B model (28 layers of q/k/v, o, gate/up and down
   matrices, and the output layer, shapes as ``gguf_lean`` fuses them), on random weights packed as
   ``int4.Weight`` packs them, for 1, 4 and 8 rows (one conversation; four and eight decoding at once,
   or a speculative check).  Enough copies of each matrix to leave the CPU's caches cold, as in a real
   step; best of 3.
2. Precision: the default model teacher-forced over 60 answer tokens after a 200-token XQuAD prompt in
   six languages (the last article of xquad-dev), one decode step at a time, with each kernel: the KL
   divergence from torch's kernel's next-token distribution to the int8 kernel's, and how often both
   rank the same token first; beside it, the same against the prompt path (the same positions in one
   pass, bf16 matrix products), the rounding difference the decoder already lives with.

    python -m bench.kernel [--skip-precision]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.common import DATASETS, header, save, table

STEP = [(2048, 1536, 28), (1536, 1536, 28), (17920, 1536, 28), (1536, 8960, 28), (151936, 1536, 1)]
"""(rows, columns, products a step) of the default model's decode step."""
LANGUAGES = ["en", "zh", "de", "ar", "ru", "hi"]


def step_times(rows_list: tuple[int, ...] = (1, 4, 8)) -> list[list[object]]:
    import torch

    from assistant.generation import q4kernel
    from assistant.generation.int4 import GROUP, Weight

    lib = q4kernel.library()
    total = {(k, m): 0.0 for k in ("torch", "int8") for m in rows_list}
    for n, k, count in STEP:
        copies = max(1, min(count, int(400e6 / (n * k / 2))))  # ~400 MB of weights: past any cache
        gen = torch.Generator().manual_seed(n + k)
        weights = [Weight.from_float(torch.randn(n, k, generator=gen) * 0.02, "int4") for _ in range(copies)]
        for m in rows_list:
            x = torch.randn(m, k, generator=gen)
            xb = x.bfloat16()
            kernels = {"torch": lambda w: torch.ops.aten._weight_int4pack_mm_for_cpu(
                xb, w.packed.reshape(-1, k // 2), GROUP, w.scale_zero)}
            if lib is not None:
                kernels["int8"] = lambda w: q4kernel.mm(x, w.packed, w.scale_zero, n)
            for name, fn in kernels.items():
                for w in weights:
                    fn(w)
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    for w in weights:
                        fn(w)
                    best = min(best, (time.perf_counter() - start) / len(weights))
                total[name, m] += best * count
    out = []
    for m in rows_list:
        t, i = total["torch", m] * 1e3, total["int8", m] * 1e3 if lib is not None else float("nan")
        out.append([m, t, i, t / i])
    return out


def precision() -> list[list[object]]:
    import torch

    from assistant.config import ModelConfig
    from assistant.generation import q4kernel
    from assistant.generation.models import load_model

    if q4kernel.library() is None:
        return []
    lm = load_model(ModelConfig(adapters=()))
    fast, tok = lm.fast, lm.tokenizer
    rows, every = [], {"kl": [], "same": [], "kl_prompt": [], "same_prompt": []}
    for lang in LANGUAGES:
        article = json.loads((DATASETS / "xquad-dev" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"][-1]
        paragraph = article["paragraphs"][1]
        qa = paragraph["qas"][0]
        text = tok.apply_chat_template(
            [{"role": "user", "content": paragraph["context"] + "\n\n" + qa["question"]},
             {"role": "assistant", "content": qa["answers"][0]["text"] + ". " + paragraph["context"][:200]}],
            tokenize=False)
        ids = tok(text)["input_ids"][:260]
        start = 200
        steps = {}
        for on in (False, True):
            q4kernel.ENABLED = on
            cache = fast.new_cache()
            fast.forward_rows(ids[:start], cache, 1)
            steps[on] = torch.stack([fast.forward([t], cache).float() for t in ids[start:]]).log_softmax(-1)
        q4kernel.ENABLED = True
        cache = fast.new_cache()
        fast.forward_rows(ids[:start], cache, 1)
        prompt = fast.forward_rows(ids[start:], cache, len(ids) - start).float().log_softmax(-1)
        ref = steps[False]
        kl = (ref.exp() * (ref - steps[True])).sum(-1)
        kl_prompt = (ref.exp() * (ref - prompt)).sum(-1)
        same = (ref.argmax(-1) == steps[True].argmax(-1)).float()
        same_prompt = (ref.argmax(-1) == prompt.argmax(-1)).float()
        rows.append([lang, len(kl), float(kl.mean()), float(same.mean()), float(kl_prompt.mean()),
                     float(same_prompt.mean())])
        for key, v in (("kl", kl), ("same", same), ("kl_prompt", kl_prompt), ("same_prompt", same_prompt)):
            every[key] += v.tolist()
    rows.append(["all", len(every["kl"]), *(statistics.mean(every[k]) for k in ("kl", "same", "kl_prompt",
                                                                                  "same_prompt"))])
    return rows


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-precision", action="store_true")
    args = ap.parse_args(argv)
    from assistant.generation import q4kernel

    md = header("Decode-step kernel: torch's 4-bit kernel against the int8 dot products (q4kernel)")
    if q4kernel.library() is None:
        md += "\nq4kernel is not available on this machine (see the log): only torch's kernel runs here.\n"
    md += "\n### The 113 products of one decode step of the default model (random weights, cold caches; ms)\n\n"
    md += table(["rows", "torch's kernel", "int8 dot products", "speed-up"], step_times()) + "\n"
    if not args.skip_precision:
        rows = precision()
        if rows:
            md += ("\n### Next-token distributions of the default model, one decode step at a time (torch's kernel "
                   "as the reference)\n\n" + table(
                       ["language", "positions", "KL to int8 dot (nats)", "same first token", "KL to prompt path",
                        "same first token (prompt path)"], rows) + "\n")
    md += "\n`python -m bench.kernel" + (" --skip-precision" if args.skip_precision else "") + "`\n"
    print(md)
    save("kernel", md)
    return md


if __name__ == "__main__":
    main()
