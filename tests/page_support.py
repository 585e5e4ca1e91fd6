"""Warning pages wired to a real Recorder, for the page tests."""

from __future__ import annotations

from deterrence.metrics import Recorder
from deterrence.pages import WarningPages
from deterrence.settings import Settings


def make_pages(settings: Settings) -> tuple[WarningPages, Recorder]:
    pages = WarningPages(settings)
    recorder = Recorder(
        settings,
        lists=(),
        variants=pages.variants,
        locales=pages.locales,
        services=pages.service_ids,
    )
    pages.recorder = recorder
    return pages, recorder
