"""Data stages: read rows -> `Conversation` -> tokens + labels -> packed rows.

Importing the package loads the source registry (`sources.py`) and the built-in plug-ins
(`builtin/`: the suite's task families and its `builtin:` source), which register themselves
with it; `sources.py` never imports a plug-in back.
"""

from instill.data import builtin, sources  # noqa: F401  (the built-in plug-ins register)
