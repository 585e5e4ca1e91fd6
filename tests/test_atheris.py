"""The atheris fuzz target (fuzz/fuzz_request.py) runs for a bounded time and finds
nothing: request decoding and matching never raise on what the fuzzer makes up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_request.py"


@pytest.mark.slow
def test_fuzzing_request_decoding_finds_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            "-max_total_time=20",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = int(result.stderr.rsplit("Done ", 1)[1].split(" runs", 1)[0])
    assert runs > 1000  # it really ran
    assert not list(tmp_path.glob("crash-*"))
