"""Provider answers kept under tests/fixtures/catalog/ for the parser tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "catalog"


def load(path: str) -> Any:
    """The JSON of ``tests/fixtures/catalog/<path>``."""
    return json.loads((FIXTURES / path).read_text(encoding="utf-8"))
