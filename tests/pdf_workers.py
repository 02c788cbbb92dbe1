"""Extract functions for PdfExtractor's tests, in a module light enough to import in a worker."""

from __future__ import annotations

import time

from bot.attachments.pdf import PdfText, extract_pdf_text

__all__ = ["SLOW_PDF", "slow_on_slow_pdf"]

SLOW_PDF = b"%PDF-1.7 slow"


def slow_on_slow_pdf(data: bytes, max_pages: int) -> PdfText:
    """A parser stuck on one file (a worker that would never return on its own); others as usual."""
    if data == SLOW_PDF:
        time.sleep(60)
    return extract_pdf_text(data, max_pages)
