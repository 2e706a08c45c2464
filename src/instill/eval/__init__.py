"""Evaluation: held-out tasks, metrics, instruction constraints, base-vs-tuned reports."""
