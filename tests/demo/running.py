"""``dispatch demo`` started as a user starts it, for the tests that follow its guide."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dispatch.demo.run import MARKER
from dispatch.demo.serving import free_port

STARTUP_SECONDS = 90


class RunningDemo:
    """The demo's process, its directory, and what it printed and wrote once ready."""

    def __init__(self, process: subprocess.Popen[str], directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.info: dict[str, Any] = {}
        self.output = ""

    def wait_ready(self) -> dict[str, Any]:
        """Read the guide from stdout until its last line, then demo.json."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the demo exited: {''.join(lines)}")
            lines.append(line)
            if "/ui/fleet" in line:
                break
        else:
            raise AssertionError(f"no guide within {STARTUP_SECONDS} s: {''.join(lines)}")
        self.output = "".join(lines)
        self.info = json.loads((self.directory / MARKER).read_text())
        return self.info


@contextlib.contextmanager
def running_demo(tmp_path: Path) -> Iterator[RunningDemo]:
    """``python -m dispatch demo`` on free ports, killed afterwards if it is still running."""
    directory = tmp_path / "demo"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatch", "demo", "--dir", str(directory), "--port", str(port)],
        cwd=tmp_path,
        # Only PATH: the demo needs nothing from the machine, and must not read DATABASE_URL.
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": "postgresql://nobody@192.0.2.1/none",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningDemo(process, directory)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
