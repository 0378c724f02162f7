"""bench/citations.py's scoring: which sentences each method marks, agreement, and whether a cited
source holds the key fact its sentence states."""

from bench.citations import score


def test_citations_are_scored_per_sentence_against_the_facts_they_state():
    answer = "Set `ASSISTANT_ADMIN_KEY`. Then open /admin. I hope this helps."
    sources = ["The admin key is read from ASSISTANT_ADMIN_KEY.", "Open /admin in the browser."]
    facts = [("ASSISTANT_ADMIN_KEY",)]
    overlap = [(0, 26, 1), (27, 43, 2)]  # the fact's sentence cites source 1, which holds it
    explained = [(0, 26, 2)]  # Explain cites source 2 for it, which does not
    counts = score(answer, sources, facts, overlap, explained)
    assert counts["sentences"] == 3 and counts["overlap"] == 2 and counts["explain"] == 1
    assert counts["both"] == 1 and counts["same"] == 0
    assert (counts["fact_overlap"], counts["fact_overlap_ok"]) == (1, 1)
    assert (counts["fact_explain"], counts["fact_explain_ok"]) == (1, 0)
