"""First-launch master key: generated once, written to ``.env`` with mode 0600.

Seed 000 did this at import time; here it happens only when ``dispatch serve``
starts without any key configured, never as a side effect of importing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dispatch.security.api_keys import generate_key

_MASTER_LINE = re.compile(r"^\s*MASTER_KEY\s*=\s*(.*)$")


def ensure_master_key(env_file: Path) -> str | None:
    """Write a new MASTER_KEY into ``env_file`` unless it already has a non-empty one.

    Returns the new key (to be shown once), or None when one already existed.
    The file is created or rewritten with mode 0600 either way.
    """
    lines: list[str] = []
    if env_file.exists():
        lines = env_file.read_text(encoding="utf-8").splitlines()
        for line in lines:
            match = _MASTER_LINE.match(line)
            if match and match.group(1).strip().strip("'\""):
                _restrict(env_file)
                return None
    key = generate_key()
    lines = [line for line in lines if not _MASTER_LINE.match(line)]
    lines.append(f"MASTER_KEY={key}")
    _write_private(env_file, "\n".join(lines) + "\n")
    return key


def _restrict(path: Path) -> None:
    os.chmod(path, 0o600)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
