"""Readers of a case-study run's JSON report, shared by the case-study tests."""

from __future__ import annotations

import json
from pathlib import Path


def report_json(summary: dict) -> dict:
    """The machine-readable report written by a run (``summary["paths"]["json"]``)."""
    return json.loads(Path(summary["paths"]["json"]).read_text())


def report_table(doc: dict, caption_start: str) -> list[dict]:
    """Records of the report table whose caption starts with ``caption_start``."""
    for sec in doc["sections"]:
        for it in sec["items"]:
            if it["kind"] == "table" and it["caption"].startswith(caption_start):
                return it["records"]
    raise AssertionError(f"no table starting {caption_start!r} in the report")
