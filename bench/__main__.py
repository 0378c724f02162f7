"""Run every benchmark and rewrite bench/RESULTS.md.

    python -m bench                 # all of them (about an hour on 2 cores)
    python -m bench generation speed  # only some
    python -m bench --collect       # only rebuild RESULTS.md from bench/results/

Each benchmark module has ``main(argv) -> str`` that prints its tables and
saves them to ``bench/results/<name>.md``; RESULTS.md is those files, in order.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
import time

from bench.common import RESULTS_DIR, header, machine, save

ORDER = ["answers", "generation", "kernel", "fidelity", "lookup", "speed", "memory", "retrieval", "embedders", "understanding", "routes", "multiturn", "explain", "citations", "finetune", "injection", "screening", "load"]
RESULT_FILES = {"load": "load-tiny"}  # benchmarks that save under another name
# runs that are not part of `python -m bench` (slow, or a variant of one) but whose saved results
# belong in RESULTS.md, after the benchmark they come from
EXTRA_RESULTS = {"injection": ["injection-suite", "injection-fresh", "injection-fresh2", "injection-fresh3",
                                "injection-fresh3-no-tags"], "load": ["load-default"]}


class _Tee(io.StringIO):
    """Keeps what a benchmark prints while still showing it."""

    def __init__(self, out) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text)
        return super().write(text)

    def flush(self) -> None:
        self.out.flush()


def collect() -> str:
    parts = [
        "# Benchmark results\n",
        "Rewritten by `python -m bench` from `bench/results/*.md`; each section names its own date, machine "
        "and command. Figures, not pass/fail.\n",
        f"Last collected on: {machine()}\n",
    ]
    for name in ORDER:
        for stem in [RESULT_FILES.get(name, name), *EXTRA_RESULTS.get(name, [])]:
            path = RESULTS_DIR / f"{stem}.md"
            if path.exists():
                parts.append(path.read_text(encoding="utf-8").rstrip() + "\n")
    text = "\n".join(parts)
    (RESULTS_DIR.parent / "RESULTS.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str]) -> int:
    if "--collect" in argv:
        collect()
        return 0
    names = [a for a in argv if not a.startswith("-")] or ORDER
    failed = []
    for name in names:
        if name not in ORDER:
            print(f"unknown benchmark {name!r}; known: {', '.join(ORDER)}", file=sys.stderr)
            return 2
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"[{name}] not available: {exc}", file=sys.stderr)
            continue
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        result_file = RESULTS_DIR / f"{name}.md"
        before = result_file.stat().st_mtime if result_file.exists() else 0.0
        captured = _Tee(sys.stdout)
        saved_argv = sys.argv
        sys.argv = [f"bench.{name}"]  # each benchmark parses its own (empty) command line
        try:
            with contextlib.redirect_stdout(captured):
                if inspect.signature(module.main).parameters:
                    module.main([])
                else:
                    module.main()
        except SystemExit as exc:  # a benchmark's argparse exit must not stop the others
            if exc.code not in (0, None):
                failed.append(name)
        except Exception as exc:  # report and go on: one broken benchmark must not hide the rest
            print(f"[{name}] failed: {exc!r}", file=sys.stderr)
            failed.append(name)
        finally:
            sys.argv = saved_argv
        # Benchmarks that only print get their output saved as it was printed.
        if name not in failed and (not result_file.exists() or result_file.stat().st_mtime <= before):
            save(name, header(name.capitalize()) + f"\n`python -m bench.{name}`\n\n```\n"
                 + captured.getvalue().strip() + "\n```\n")
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)
    collect()
    print("\nbench/RESULTS.md rewritten" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
