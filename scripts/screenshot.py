"""Retake the README's screenshot (docs/screenshot.png) with the real default model.

Starts ``assistant serve`` on a free port (the default model, the shipped guide),
asks one question in Debian's chromium through Playwright, opens the answer's
sources (its ``[n]`` markers point into them), with ``--explain`` also runs
Explain on it and waits for the chart, and saves the page.  Prints the answer so
that whoever retakes it can check it is right before committing the picture.

    ASSISTANT_HOME=/tmp/home .venv/bin/python scripts/screenshot.py ["question"] [--explain] [--out docs/screenshot.png]

The page shows a Chinese example prompt: without a CJK font on the machine chromium draws it as boxes
(``apt-get install fonts-wqy-zenhei`` gives it one).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"assistant serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"assistant serve did not answer /health within {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("question", nargs="?", default="Which file formats can I upload?")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--explain", action="store_true", help="also explain the answer (minutes on a CPU)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "assistant"), "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        wait_healthy(url, proc, 600)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.goto(url + "/")
            page.wait_for_selector("#message textarea", timeout=120_000)
            page.fill("#message textarea", args.question)
            page.click("#send")
            page.wait_for_selector("#chat >> text=/Sources \\(\\d+\\)/", timeout=300_000)
            answer = page.locator("#chat .answer").last.inner_text()
            page.locator("#chat >> text=/Sources \\(\\d+\\)/").last.click()
            if args.explain:
                page.locator("#chat button.explain-turn").last.click()
                page.wait_for_selector("#explain-chart canvas, #explain-chart svg", timeout=900_000)
            time.sleep(1.0)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"question: {args.question}\nanswer: {answer}\nsaved {args.out}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
