"""Training and evaluation data for the shipped adapter, built from XQuAD
(12 languages): a question with its paragraph among distractor paragraphs →
the short answer; the same question with only distractors → an honest
"not in my documents" reply in the question's language.

Prompts are built with the engine's own functions (``prompting._messages``:
the system prompt from ``ChatConfig`` with the language line of
``system_text``, then ``SOURCES_HEADER``, ``source_block`` and
``Question: ...``), so the adapter is trained on exactly what it sees at
inference.  Articles, not questions, are split between training and
evaluation (question ids are parallel across languages, so a question split
would leak translations of evaluation questions into training).

Also here: SQuAD-style exact match / F1 (character-level for Chinese and
Thai, which have no spaces) and ``evaluate_qa``, per language.

    python -m finetune.xquad build --out-train xq-train.jsonl --out-eval xq-eval.jsonl
    python -m finetune.xquad evaluate --base gemma-3-270m --adapter knowledge/adapters/xquad-gemma3

Knows nothing about training or the UI.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import string
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from assistant.errors import DataFormatError
from assistant.prompting import NOT_FOUND

from .data import Dialogue, Message

log = logging.getLogger(__name__)

LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
CHAR_LEVEL = ("zh", "th")


@dataclass(frozen=True)
class QAExample:
    """One grounded question: the sources shown, and the expected answer(s)."""

    id: str
    language: str
    question: str
    sources: tuple[Any, ...]
    """``assistant.types.Source`` values in prompt order."""
    answers: tuple[str, ...]
    """Acceptable short answers; empty when the answer is not among the sources."""
    article: str = ""

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    @property
    def target(self) -> str:
        return self.answers[0] if self.answers else NOT_FOUND[self.language]


@dataclass
class _Paragraph:
    article: int
    title: str
    context: str
    qas: list[dict] = field(default_factory=list)


def load_language(folder: str | Path, language: str) -> list[_Paragraph]:
    path = Path(folder) / f"xquad.{language}.json"
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist; point --xquad at the xquad-dev folder")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [_Paragraph(i, a["title"].replace("_", " "), p["context"], p["qas"])
            for i, a in enumerate(data) for p in a["paragraphs"]]


def split_articles(n_articles: int = 24, eval_articles: int = 6, seed: int = 0) -> tuple[set[int], set[int]]:
    """(train, eval) article indices: a fixed seeded draw, the same for every language."""
    order = list(range(n_articles))
    random.Random(seed).shuffle(order)
    return set(order[eval_articles:]), set(order[:eval_articles])


def _source(p: _Paragraph, language: str, k: int) -> Any:
    from assistant.types import Source

    return Source(chunk_id=f"xquad-{language}-{p.article}-{k}", doc_id=f"xquad-{language}-{p.article}",
                  text=p.context, source=f"{p.title}.txt", title=p.title, language=language)


def build_examples(folder: str | Path, articles: set[int], languages: Sequence[str] = LANGUAGES,
                   distractors: int = 1, absent_fraction: float = 0.2, per_language: int = 0,
                   seed: int = 0) -> list[QAExample]:
    """Grounded QA examples from the given articles.

    Each question gets its paragraph plus ``distractors`` paragraphs from other
    articles of the same set, shuffled; with probability ``absent_fraction``
    its own paragraph is replaced by one more distractor and the target is
    ``NOT_FOUND``.  ``per_language`` > 0 keeps that many questions per language.
    """
    rng = random.Random(seed)
    out: list[QAExample] = []
    for lang in languages:
        paragraphs = [p for p in load_language(folder, lang) if p.article in articles]
        items = [(p, qa) for p in paragraphs for qa in p.qas]
        rng.shuffle(items)
        if per_language:
            items = items[:per_language]
        for p, qa in items:
            others = [o for o in paragraphs if o.article != p.article]
            absent = rng.random() < absent_fraction
            chosen = rng.sample(others, distractors + (1 if absent else 0))
            shown = chosen if absent else chosen + [p]
            rng.shuffle(shown)
            sources = tuple(_source(s, lang, k) for k, s in enumerate(shown))
            answers = () if absent else tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
            out.append(QAExample(f"{qa['id']}-{lang}{'-absent' if absent else ''}", lang, qa["question"],
                                 sources, answers, p.title))
    return out


def prompt_messages(example: QAExample) -> list[dict[str, str]]:
    """The chat messages the engine would build for this question (no history)."""
    from assistant.config import ChatConfig
    from assistant.prompting import PromptParts, _messages, system_text

    chat = ChatConfig()
    system = system_text(chat.system_prompt.format(name=chat.assistant_name), example.language)
    parts = PromptParts(system=system, message=example.question, sources=list(example.sources))
    return _messages(parts, [], list(example.sources))


def to_dialogue(example: QAExample) -> Dialogue:
    msgs = [Message(m["role"], m["content"]) for m in prompt_messages(example)]  # type: ignore[arg-type]
    return Dialogue(tuple(msgs + [Message("assistant", example.target)]), "openai")


# --- SQuAD-style scoring -----------------------------------------------------

_PUNCT = set(string.punctuation) | {"。", "，", "、", "？", "！", "：", "；", "「", "」", "《", "》", "（", "）", "«", "»",
                                    "“", "”", "‘", "’", "¿", "¡", "،", "؟", "।"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str, language: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if (ch in _PUNCT or unicodedata.category(ch).startswith("P")) else ch for ch in text)
    if language == "en":
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str, language: str) -> list[str]:
    norm = normalize_answer(text, language)
    return [c for c in norm if not c.isspace()] if language in CHAR_LEVEL else norm.split()


def exact_match(prediction: str, answers: Sequence[str], language: str) -> float:
    p = normalize_answer(prediction, language)
    return float(any(p == normalize_answer(a, language) for a in answers))


def f1_score(prediction: str, answers: Sequence[str], language: str) -> float:
    best = 0.0
    pred = _tokens(prediction, language)
    for a in answers:
        gold = _tokens(a, language)
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            prec, rec = common / len(pred), common / len(gold)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def says_not_found(prediction: str, language: str) -> bool:
    return f1_score(prediction, [NOT_FOUND[language]], language) >= 0.6


@dataclass
class LanguageScore:
    language: str
    questions: int
    exact_match: float
    f1: float
    absent: int
    absent_refused: float
    """Share of unanswerable questions answered with the not-found reply."""
    false_refusals: float
    """Share of answerable questions wrongly answered with the not-found reply."""


def evaluate_qa(lm: Any, examples: Sequence[QAExample], max_new_tokens: int = 32) -> list[LanguageScore]:
    """Greedy answers with the assistant's other generation defaults (its repetition penalty on the
    answer's own tokens), scored per language (EM / F1 in percent on answerable questions)."""
    from assistant.config import GenerationConfig
    from assistant.generation.local import Generation

    settings = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    by_lang: dict[str, list[tuple[QAExample, str]]] = {}
    for ex in examples:
        text = lm.tokenizer.apply_chat_template(prompt_messages(ex), tokenize=False, add_generation_prompt=True)
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        reply = Generation(lm, ids, settings).run().text.strip()  # all of it: what the user would read
        by_lang.setdefault(ex.language, []).append((ex, reply))
    scores = []
    for lang, pairs in sorted(by_lang.items()):
        ans = [(e, r) for e, r in pairs if e.answerable]
        absent = [(e, r) for e, r in pairs if not e.answerable]
        scores.append(LanguageScore(
            language=lang, questions=len(ans),
            exact_match=100 * sum(exact_match(r, e.answers, lang) for e, r in ans) / max(1, len(ans)),
            f1=100 * sum(f1_score(r, e.answers, lang) for e, r in ans) / max(1, len(ans)),
            absent=len(absent),
            absent_refused=sum(says_not_found(r, lang) for _, r in absent) / max(1, len(absent)),
            false_refusals=sum(says_not_found(r, lang) for _, r in ans) / max(1, len(ans)),
        ))
    return scores


def scores_table(named: dict[str, list[LanguageScore]]) -> str:
    """Markdown: one row per language, EM / F1 / refusals of each model side by side."""
    names = list(named)
    cols = ["language", "answerable", "absent"]
    for n in names:
        cols += [f"{n} EM", f"{n} F1", f"{n} refuses absent", f"{n} false refusals"]
    by = {n: {s.language: s for s in named[n]} for n in names}
    first = named[names[0]]
    rows = []
    for s in first:
        row = [s.language, str(s.questions), str(s.absent)]
        for n in names:
            t = by[n][s.language]
            row += [f"{t.exact_match:.1f}", f"{t.f1:.1f}", f"{t.absent_refused:.0%}", f"{t.false_refusals:.0%}"]
        rows.append(row)
    mean = ["mean", str(sum(s.questions for s in first)), str(sum(s.absent for s in first))]
    for n in names:
        ls = named[n]
        mean += [f"{sum(s.exact_match for s in ls) / len(ls):.1f}", f"{sum(s.f1 for s in ls) / len(ls):.1f}",
                 f"{sum(s.absent_refused for s in ls) / len(ls):.0%}",
                 f"{sum(s.false_refusals for s in ls) / len(ls):.0%}"]
    rows.append(mean)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


# --- command line ------------------------------------------------------------

def _default_xquad() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xquad-dev"


def build_files(xquad: Path, out_train: Path, out_eval: Path, per_language: int, eval_per_language: int,
                sgd: Path | None, sgd_dialogues: int, seed: int, absent_fraction: float = 0.2,
                split_seed: int = 0) -> tuple[int, int]:
    """Write the training JSONL (XQuAD train articles + SGD dialogues, shuffled) and
    the evaluation JSONL (XQuAD held-out articles, with ids for ``evaluate_qa``).
    ``split_seed`` picks the held-out articles (keep it fixed across runs that are
    compared); ``seed`` picks questions, distractors and SGD dialogues."""
    from .data import write_jsonl

    train_articles, eval_articles = split_articles(seed=split_seed)
    train = [to_dialogue(e) for e in build_examples(xquad, train_articles, per_language=per_language, seed=seed,
                                                    absent_fraction=absent_fraction)]
    if sgd is not None and sgd_dialogues:
        from .sgd import dialogue_from_sgd, default_system_prompt, read_sgd, sgd_files

        items = read_sgd(sgd_files(sgd))
        random.Random(seed).shuffle(items)
        system = default_system_prompt()
        train += [dialogue_from_sgd(it, system) for it in items[:sgd_dialogues]]
    random.Random(seed + 1).shuffle(train)
    n = write_jsonl(train, out_train)
    evals = build_examples(xquad, eval_articles, per_language=eval_per_language, seed=seed + 7)
    out_eval.parent.mkdir(parents=True, exist_ok=True)
    with out_eval.open("w", encoding="utf-8") as fh:
        for e in evals:
            fh.write(json.dumps({"id": e.id, "language": e.language, "answers": list(e.answers),
                                 "messages": to_dialogue(e).as_dicts()}, ensure_ascii=False) + "\n")
    return n, len(evals)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m finetune.xquad", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write training + evaluation JSONL")
    b.add_argument("--xquad", type=Path, default=_default_xquad())
    b.add_argument("--sgd", type=Path, default=_default_xquad().parent / "sgd-dialogues")
    b.add_argument("--sgd-dialogues", type=int, default=40)
    b.add_argument("--per-language", type=int, default=30, help="training questions per language")
    b.add_argument("--eval-per-language", type=int, default=12)
    b.add_argument("--seed", type=int, default=0, help="picks questions, distractors and SGD dialogues")
    b.add_argument("--split-seed", type=int, default=0, help="picks the held-out articles")
    b.add_argument("--absent-fraction", type=float, default=0.2,
                   help="share of questions shown without their paragraph (target: the not-found reply)")
    b.add_argument("--out-train", type=Path, required=True)
    b.add_argument("--out-eval", type=Path, required=True)
    e = sub.add_parser("evaluate", help="EM / F1 per language, base vs adapter")
    e.add_argument("--xquad", type=Path, default=_default_xquad())
    e.add_argument("--base", default="gemma-3-270m")
    e.add_argument("--adapter", action="append", default=[],
                   help="adapter folder, or NAME=FOLDER; repeat to compare several side by side")
    e.add_argument("--per-language", type=int, default=12)
    e.add_argument("--languages", default=",".join(LANGUAGES))
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--split-seed", type=int, default=0, help="picks the held-out articles (as in build)")
    e.add_argument("--max-new-tokens", type=int, default=24)
    e.add_argument("--fast-decode", default="int4", choices=["int4", "bfloat16", "float32", "off"],
                   help="generate with the lean decoder in these weights (int4: what the assistant ships), "
                        "or off: transformers' own fp32 forward")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "build":
        n, m = build_files(args.xquad, args.out_train, args.out_eval, args.per_language, args.eval_per_language,
                           args.sgd if args.sgd_dialogues else None, args.sgd_dialogues, args.seed,
                           args.absent_fraction, args.split_seed)
        print(f"{n} training dialogues → {args.out_train}; {m} held-out questions → {args.out_eval}")
        return 0
    from assistant.config import ModelConfig
    from assistant.generation.models import load_model

    from .evaluate import with_adapter

    _, eval_articles = split_articles(seed=args.split_seed)
    examples = build_examples(args.xquad, eval_articles, languages=args.languages.split(","),
                              per_language=args.per_language, seed=args.seed + 7)
    # full-precision base weights; answers from the lean decoder (as the assistant generates) or transformers
    def fresh() -> Any:
        return load_model(ModelConfig(name=args.base, quantization="none", device="cpu",
                                      fast_decode=args.fast_decode, adapters=()))

    named = {"base": evaluate_qa(fresh(), examples, args.max_new_tokens)}
    for i, spec in enumerate(args.adapter):
        name, _, path = spec.rpartition("=")
        name = name or ("adapter" if len(args.adapter) == 1 else f"adapter{i + 1}")
        named[name] = evaluate_qa(with_adapter(fresh(), path), examples, args.max_new_tokens)
    print(f"{args.base} (answers: {'transformers fp32' if args.fast_decode == 'off' else 'lean ' + args.fast_decode}"
          f" decoder): {len(examples)} held-out questions ({args.per_language} per language, "
          f"{len(eval_articles)} held-out articles)\n")
    print(scores_table(named))
    return 0


if __name__ == "__main__":
    sys.exit(main())
