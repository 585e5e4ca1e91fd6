"""Running a bench module the way its README says, from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_bench(module: str, *options: str, timeout: float) -> str:
    """``python -m bench.<module> options``; its stdout, once it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
