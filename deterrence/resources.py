"""Where the shipped keyword lists and page assets live.

In a source checkout they are the top-level ``keyword_lists/`` and ``pages/``
folders; in an installed wheel they are copied to ``deterrence/_data/`` (see the
hatch ``force-include`` in ``pyproject.toml``), so ``pip install`` users get them too.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource(name: str) -> Path:
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name


KEYWORD_LISTS_DIR = _resource("keyword_lists")
PAGES_DIR = _resource("pages")
