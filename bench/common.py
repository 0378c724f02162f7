"""Helpers shared by the benchmarks: machine description, tables, result files."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
from pathlib import Path
from typing import Sequence

RESULTS_DIR = Path(__file__).parent / "results"
DATASETS = Path(os.environ.get("ASSISTANT_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def machine() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_v = torch.__version__
    except ImportError:
        gpu, torch_v = "no GPU", "n/a"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {gpu}, Python {platform.python_version()}, torch {torch_v}"


def header(title: str) -> str:
    return f"## {title}\n\n{_dt.date.today().isoformat()} · {machine()}\n"


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def save(name: str, markdown: str, folder: Path | None = None) -> Path:
    """Put a run's tables on top of ``bench/results/<name>.md`` (``folder``: another one), under the file's
    "# " title where it has one, and keep the earlier runs below: each section names its own date,
    machine and command, and the notes written beside earlier runs are not lost to a new one."""
    folder = folder or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    new = markdown.strip() + "\n"
    old = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    title = ""
    if old.startswith("# "):
        title, _, old = old.partition("\n")
        title, old = title + "\n\n", old.strip()
    path.write_text(title + new + ("\n" + old + "\n" if old else ""), encoding="utf-8")
    return path


def drop_data_tags() -> None:
    """An ablation for measuring spotlighting: from now on, in this process, the sources reach the model under
    ``prompting.SOURCES_HEADER`` without the random ``<docs-…>`` tags around them (``prompting._user_content``
    wrapped; the source blocks' spans and the question's start moved with the text)."""
    from assistant import prompting

    tagged = prompting._user_content
    if getattr(tagged, "untagged", False):
        return

    def untagged(message: str, sources: Sequence[object], marker: str = "",
                 remind: str = "") -> tuple[str, list[tuple[int, int]], int]:
        content, spans, question_at = tagged(message, sources, marker, remind)
        found = prompting.MARKER.search(content)
        if not found:  # no sources: nothing was tagged
            return content, spans, question_at
        opening, closing = found.group(0) + "\n", f"</docs-{found.group(1)}>\n"
        at, shut = content.index(opening), content.rindex(closing)
        cut = len(opening)
        content = content[:at] + content[at + cut:shut] + content[shut + len(closing):]
        return content, [(a - cut, b - cut) for a, b in spans], question_at - cut - len(closing)

    untagged.untagged = True  # type: ignore[attr-defined]
    prompting._user_content = untagged
