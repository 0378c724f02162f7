"""Saving a benchmark's tables (``bench.common.save``): a new run goes on top, earlier runs and the notes
written beside them stay."""

from bench.common import save


def test_a_new_run_goes_on_top_and_earlier_runs_stay_under_the_title(tmp_path):
    first = save("speed", "## Speed, 2026-12-01\n\n| a |\n|---|\n| 1 |\n", tmp_path)
    assert first.read_text(encoding="utf-8") == "## Speed, 2026-12-01\n\n| a |\n|---|\n| 1 |\n"
    first.write_text("# Speed results\n\nA note on the first run.\n\n" + first.read_text(encoding="utf-8"),
                     encoding="utf-8")
    save("speed", "## Speed, 2026-12-07\n\n| a |\n|---|\n| 2 |", tmp_path)
    text = (tmp_path / "speed.md").read_text(encoding="utf-8")
    assert text.startswith("# Speed results\n\n## Speed, 2026-12-07\n")
    assert text.index("| 2 |") < text.index("A note on the first run.") < text.index("| 1 |")
    assert text.endswith("| 1 |\n") and text.count("# Speed results") == 1
