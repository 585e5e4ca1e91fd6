"""A pip-install user gets the lists and pages too: build the wheel, install it
into a clean virtual environment, and run the CLI from outside the source tree."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_installs_and_runs_from_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, cwd=REPO)
    (wheel,) = dist.glob("deterrence-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "deterrence/_data/keyword_lists/demo.toml" in names
    assert "deterrence/_data/pages/help_services.toml" in names
    arabic = "deterrence/_data/pages/locale/ar/"
    assert any(n.startswith(arabic) and n.endswith(".mo") for n in names)
    assert not any(n.startswith("tests/") for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    match = run(env_dir / "bin" / "deterrence", "match", "--json", "z0rbl4x", cwd=outside)
    assert '"matched": true' in match.stdout
    shipped = str(_shipped(python, outside))
    run(env_dir / "bin" / "deterrence", "lists", "test", shipped, cwd=outside)
    pages = run(env_dir / "bin" / "deterrence", "pages", "check", cwd=outside)
    assert "GB" in pages.stdout
    page = run(
        python,
        "-c",
        "from deterrence.pages import WarningPages; from deterrence import Settings;"
        "print(WarningPages(Settings(data_dir='d')).render_page('ar', 'harm'))",
        cwd=outside,
    )
    assert 'dir="rtl"' in page.stdout


def _shipped(python: Path, cwd: Path) -> Path:
    result = run(
        python, "-c", "from deterrence.resources import KEYWORD_LISTS_DIR as d; print(d)", cwd=cwd
    )
    path = Path(result.stdout.strip())
    assert "_data" in path.parts, f"lists resolved to the source tree: {path}"
    return path
