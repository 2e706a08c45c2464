"""Evaluation: held-out tasks, metrics, instruction constraints, base-vs-tuned reports."""

# The built-in plug-ins: registering the built-in suite's tasks here (not in tasks.py, which
# builtin_tasks imports) keeps the import graph free of cycles.
from instill.eval import builtin_tasks  # noqa: F401  (registers the builtin-* tasks)
