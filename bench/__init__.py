"""Benchmarks: each module prints Markdown tables and saves them on top of its file under
``bench/results/``, earlier runs kept below (``common.save``); ``python -m bench`` runs them all
and rewrites ``bench/RESULTS.md``.  Figures, never pass/fail."""
