"""Data stages: read rows -> `Conversation` -> tokens + labels -> packed rows."""
