"""Shared fixtures: tiny tokenizers built in-process and small data-file writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instill.models.tiny import build_tiny_tokenizer


@pytest.fixture
def tiny_tokenizer():
    """Factory: a fresh tiny tokenizer of a flavour (fresh, because templates add tokens)."""
    return build_tiny_tokenizer


@pytest.fixture
def write_jsonl(tmp_path: Path):
    def write(name: str, rows: list, raw_lines: list[str] | None = None) -> Path:
        path = tmp_path / name
        lines = [json.dumps(r) for r in rows] + list(raw_lines or [])
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


def base_config(sources: list[dict], tmp_path: Path, **data) -> dict:
    """A minimal valid config dict for the tiny Gemma tokenizer."""
    return {
        "model": {"path": "tiny-random-gemma"},
        "data": {"sources": sources, **data},
        "output_dir": str(tmp_path / "out"),
    }
