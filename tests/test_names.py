"""Every name the code uses is defined: pyflakes over the packages, the benchmarks, the tests and the app,
for the mistakes no other test reaches (a fallback path that used a helper it never imported raised
NameError only when Explain could not re-render a prompt).  Unused imports and the like are not checked:
many are re-exports."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("assistant", "retrieval", "finetune", "bench", "tests", "app.py")


def test_no_name_is_used_that_is_not_defined():
    api = pytest.importorskip("pyflakes.api", reason="pyflakes is installed with the test tools")
    from pyflakes import messages
    from pyflakes.reporter import Reporter

    found: list[str] = []

    class Collect(Reporter):
        def __init__(self) -> None:
            super().__init__(None, None)

        def flake(self, message) -> None:
            if isinstance(message, (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)):
                found.append(str(message))

        def syntaxError(self, filename, msg, lineno, offset, text) -> None:
            found.append(f"{filename}:{lineno}: {msg}")

        def unexpectedError(self, filename, msg) -> None:
            found.append(f"{filename}: {msg}")

    files = [p for name in CHECKED for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))]
    assert len(files) > 50
    reporter = Collect()
    for path in files:
        api.checkPath(str(path), reporter)
    assert found == []
