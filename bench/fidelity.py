"""How far the lean decoder's model is from the GGUF file's own.

The reference is the file de-quantised to float32, every tensor as the file
stores it (Qwen2.5's Q4_K_M: its Q6_K output matrix as the output layer), run
through transformers.  The lean model (``gguf_lean.load_lean``, as the app
loads it), in each ``--fast-decode`` setting asked for (``int4``, the default:
everything in 4-bit groups; ``mixed``: the file's finer matrices kept finer),
reads the same prompts: XQuAD paragraphs with a question and the gold
answer as the assistant's turn, in six languages (the last article of
xquad-dev, held out from the answer benchmark's training data either way),
teacher-forced.  Per position: the KL divergence from the reference's
next-token distribution to the lean model's, and whether both rank the same
token first.  Every position is scored with the lean decoder's prompt path
except the output layer, which is applied one position at a time, as a decode
step applies it (``int4.RefinedHead``).

    python -m bench.fidelity [--model qwen2.5-coder-1.5b-instruct] [--tokens 400] [--settings int4,mixed]

About 7 GB of memory for the float32 reference of the 1.5B model; 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import DATASETS, header, save, table

LANGUAGES = ["en", "zh", "de", "ar", "ru", "hi"]
DATA = DATASETS / "xquad-dev"


def prompts(tokenizer, tokens: int) -> list[tuple[str, list[int]]]:
    out = []
    for lang in LANGUAGES:
        article = json.loads((DATA / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"][-1]
        paragraph = article["paragraphs"][1]
        qa = paragraph["qas"][0]
        messages = [{"role": "system", "content": "Answer from the documents."},
                    {"role": "user", "content": "Documents:\n" + paragraph["context"] + "\n\nQuestion: " + qa["question"]},
                    {"role": "assistant", "content": qa["answers"][0]["text"]}]
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        out.append((lang, list(ids)[:tokens]))
    return out


def reference_model(path: Path):
    """The file de-quantised to float32 as a transformers model, its output matrix untied where stored."""
    import numpy as np
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import AutoConfig, AutoModelForCausalLM

    from assistant.generation.gguf_lean import _hf_name

    reader = GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()
    if arch != "qwen2":
        raise SystemExit(f"the reference is written for qwen2 files; {path.name} is {arch}")
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    config.tie_word_embeddings = not any(t.name == "output.weight" for t in reader.tensors)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.to_empty(device="cpu")
    state = {}
    for t in reader.tensors:
        if t.name == "output.weight":
            name = "lm_head.weight"
        elif t.name.endswith(".bias"):
            name = _hf_name(t.name[: -len(".bias")] + ".weight")[: -len(".weight")] + ".bias"
        else:
            name = _hf_name(t.name)
        values = np.asarray(dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32)
        shape = [int(n) for n in reversed(t.shape[:2])] if len(t.shape) > 1 and t.shape[1] > 1 else [-1]
        state[name] = torch.from_numpy(np.ascontiguousarray(values.reshape(shape)))
    missing = [k for k in model.load_state_dict(state, strict=False).missing_keys if "rotary" not in k]
    if missing:
        raise SystemExit(f"reference lacks {missing[:3]}")
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    return model.eval()


def main(argv: list[str] | None = None) -> str:
    import tempfile

    import torch

    from assistant.generation.gguf_lean import load_lean
    from assistant.generation.models import DEFAULT_MODEL, MODELS, _file_fingerprint, gguf_path_for
    from assistant.config import assistant_home

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a registry model stored as a qwen2 GGUF file")
    ap.add_argument("--tokens", type=int, default=400, help="tokens of each prompt scored")
    ap.add_argument("--settings", default="int4,mixed", help="--fast-decode settings to compare")
    args = ap.parse_args(argv)
    home = assistant_home()
    path = gguf_path_for(MODELS[args.model], home)
    started = time.time()
    scores, texts, folders = {}, None, {}
    with torch.inference_mode():
        for setting in args.settings.split(","):
            with tempfile.TemporaryDirectory() as scratch:  # the app's own cache stays as it is
                root = home / "models" if setting == "int4" else Path(scratch)
                lean = load_lean(path, root, _file_fingerprint(path), mixed=setting == "mixed")
                folders[setting] = lean.folder.name
                texts = texts or prompts(lean.tokenizer, args.tokens)
                scores[setting] = []
                for _, ids in texts:
                    hidden = lean.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
                    scores[setting].append(torch.cat([lean.fast.head(hidden[i:i + 1]) for i in range(len(ids))]).float())
                del lean
        reference = reference_model(path)
        refs = [torch.log_softmax(reference(torch.tensor([ids])).logits[0].float(), -1) for _, ids in texts]
    rows = []
    for setting, got in scores.items():
        kls, agree, total = [], 0, 0
        for (lang, ids), ref, mine in zip(texts, refs, got):
            mine = torch.log_softmax(mine, -1)
            kl = (ref.exp() * (ref - mine)).sum(-1)
            same = int((ref.argmax(-1) == mine.argmax(-1)).sum())
            kls.append(kl)
            agree, total = agree + same, total + len(ids)
            rows.append([setting, lang, len(ids), float(kl.mean()), float(kl.quantile(0.95)), same / len(ids)])
        every = torch.cat(kls)
        rows.append([setting, "all", total, float(every.mean()), float(every.quantile(0.95)), agree / total])
    md = header("Fidelity of the lean decoder to the GGUF file") + "\n" + table(
        ["--fast-decode", "language", "positions", "KL mean (nats)", "KL p95", "same first token"], rows) + (
        f"\n\n`python -m bench.fidelity --model {args.model} --tokens {args.tokens} --settings {args.settings}`: "
        f"{path.name} as the app loads it ({', '.join(f'`{f}`' for f in folders.values())}) against the file "
        f"de-quantised to float32; {time.time() - started:.0f} s.\n")
    print(md)
    save("fidelity", md)
    return md


if __name__ == "__main__":
    main()
