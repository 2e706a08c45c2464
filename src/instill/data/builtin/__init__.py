"""The built-in instruction suite: seeded task families with checkers, and their splits.

The family modules are listed here, explicitly: importing the package registers every built-in
family (`core.register_family`) and the `builtin:` data source (`source.py`). `core.py` never
imports the families back. The suite makes rows and checkers only; its evaluation tasks are
registered by `instill.eval.builtin_tasks`.
"""

from instill.data.builtin import families_a, families_b, families_c, source

FAMILY_MODULES = (families_a, families_b, families_c)

__all__ = ["FAMILY_MODULES", "source"]
