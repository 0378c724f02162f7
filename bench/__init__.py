"""Benchmarks: each module prints Markdown tables and saves them under
``bench/results/``; ``python -m bench`` runs them all and rewrites
``bench/RESULTS.md``.  Figures, never pass/fail."""
