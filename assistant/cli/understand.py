"""``assistant understand`` and ``assistant intents``: wiring only.

The work is done by ``assistant.understanding.pipeline`` and ``assistant.understanding.intents``;
heavy libraries (the embedding model) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("understand", help="language, intents and entities of a message",
                              description="Print the language, top intents with scores and entities of a message.")
    p.add_argument("message", nargs="?", help="the message (omit with --jsonl)")
    p.add_argument("--jsonl", action="store_true",
                   help="read one message per line on stdin, write one JSON object per line")
    p.add_argument("--prior", default="", help="languages of earlier turns, oldest first, comma-separated (e.g. de,de)")
    p.add_argument("--conversation", action="store_true",
                   help="with --jsonl: treat the lines as one conversation (earlier lines are the language prior)")
    p.add_argument("-k", type=int, default=3, help="how many intents to show (default 3)")
    p.add_argument("--intents-file", default=None, help="intents YAML (default knowledge/intents.yaml)")
    p.set_defaults(handler=understand_command)

    q = subparsers.add_parser("intents", help="train or list the intent classifier",
                              description="Train the intent classifier from an intents file, or list its intents.")
    sub = q.add_subparsers(dest="intents_command", metavar="ACTION")
    t = sub.add_parser("train", help="train and save the classifier (seconds)")
    t.add_argument("file", nargs="?", default=None, help="intents YAML (default knowledge/intents.yaml)")
    t.add_argument("--out", default=None, help="folder to save to (default $ASSISTANT_HOME/intents)")
    t.add_argument("--encoder-epochs", type=int, default=0, metavar="N",
                   help="also fine-tune a copy of the embedder for N epochs on the examples (minutes; for many "
                        "intents with many examples each; default 0: seconds)")
    t.add_argument("--min-oos-recall", type=float, default=None, metavar="R",
                   help="the threshold is the one with the best held-out in-scope accuracy among those that catch "
                        "this share of the held-out out-of-scope examples (default 0.90); 0: maximise (in-scope "
                        "accuracy + out-of-scope recall) / 2 instead")
    t.set_defaults(handler=train_command)
    ls = sub.add_parser("list", help="list the intents of a file")
    ls.add_argument("file", nargs="?", default=None)
    ls.set_defaults(handler=list_command)
    q.set_defaults(handler=lambda args: (q.print_help(), 1)[1])


def _load(args):
    from assistant.understanding.intents import default_model, load_spec

    spec = load_spec(args.intents_file)
    return spec, default_model(spec_path=args.intents_file)


def understand_command(args: argparse.Namespace) -> int:
    from assistant.errors import InputError
    from assistant.understanding import understand

    if args.k < 1:
        raise InputError(f"-k must be >= 1; got {args.k}")
    prior = [p.strip() for p in args.prior.split(",") if p.strip()]
    if args.jsonl:
        if args.message:
            raise InputError("give either a message or --jsonl (messages on stdin), not both")
        spec, model = _load(args)
        for line in sys.stdin:
            text = line.rstrip("\n")
            result = understand(text, model, spec, prior, k=args.k)
            if args.conversation and result.language.language != "unknown":
                prior.append(result.language.language)
            sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        return 0
    if args.message is None:
        raise InputError('give a message (assistant understand "hello") or --jsonl to read stdin')
    spec, model = _load(args)
    r = understand(args.message, model, spec, prior, k=args.k)
    print(f"language:  {r.language.language} ({r.language.confidence:.2f}, {r.language.source})")
    print(f"intent:    {r.intent.intent} ({r.intent.confidence:.2f})" + ("  [out of scope]" if r.intent.out_of_scope else ""))
    print("intents:   " + ", ".join(f"{name} {score:.2f}" for name, score in r.intent.top))
    print("entities:  " + (", ".join(f"{e.kind}={e.value!r}" for e in r.entities) or "-"))
    print(f"action:    {r.route.action}" + (f" -> {r.route.reply}" if r.route.reply else ""))
    return 0


def train_command(args: argparse.Namespace) -> int:
    from assistant.config import assistant_home
    from assistant.errors import InputError
    from assistant.understanding.intents import IntentModel, TrainConfig, load_spec
    from retrieval.embedding import load_embedder

    spec = load_spec(args.file)
    start = time.perf_counter()
    if args.min_oos_recall is not None and not 0.0 <= args.min_oos_recall <= 1.0:
        raise InputError(f"--min-oos-recall must be between 0 and 1 (0: balance accuracy and recall); got {args.min_oos_recall}")
    recall = TrainConfig.min_oos_recall if args.min_oos_recall is None else (args.min_oos_recall or None)
    model = IntentModel.train(spec, load_embedder(), TrainConfig(encoder_epochs=args.encoder_epochs,
                                                                 min_oos_recall=recall))
    folder = model.save(Path(args.out) if args.out else assistant_home() / "intents")
    c = model.calibration
    n = sum(len(v) for i in spec.intents for v in i.examples.values())
    print(f"trained {len(spec.intents)} intents on {n} examples in {time.perf_counter() - start:.1f}s -> {folder}")
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    held = (f"{c.n_heldout} validation messages of {spec.validation_source}" if spec.validation
            else f"{c.n_heldout} cross-validated examples")
    print(f"held-out ({held}): in-scope accuracy {fmt(c.in_scope_accuracy)}, out-of-scope recall {fmt(c.oos_recall)}")
    print("scores: the linear model's" + (f" + {model.nearest_share:g} x each intent's nearest example (cosine), both "
                                           "standardised; the share chosen on the same held-out data"
                                           if model.nearest_share else " alone (the nearest examples did not help on "
                                           "the held-out data)"))
    if c.knn_weight:
        score = (f"{1 - c.knn_weight:g} x standardised log best in-scope probability + {c.knn_weight:g} x "
                 "standardised cosine to the nearest in-scope example")
    else:
        score = "best in-scope probability"
    rule = (f"the best in-scope accuracy with out-of-scope recall >= {model.config.min_oos_recall:g}"
            if model.config.min_oos_recall else "maximises (in-scope accuracy + out-of-scope recall) / 2")
    print(f"out-of-scope threshold {c.threshold:.3f} on the {score} (below it -> {spec.out_of_scope}); "
          f"chosen on held-out data: {rule}; temperature {c.temperature:.3f}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    from assistant.understanding.intents import load_spec

    spec = load_spec(args.file)
    for intent in spec.intents:
        langs = ",".join(f"{k}:{len(v)}" for k, v in intent.examples.items())
        print(f"{intent.name:<15} {intent.action:<9} examples {langs:<30} {intent.description}")
    return 0
