"""PDF text (issue 17, item 8): a 100-page text PDF through PDFium on one core; target <= 300 ms.

`python benchmarks/pdf_text.py [--runs N]` pins itself to one core and prints, for the same PDF:
all 100 pages extracted in this process (`extract_pdf_text`, PDFium through pypdfium2); the first
`pdf_max_pages` (50, what Glimpse reads by default); the whole path Glimpse takes
(`PdfExtractor.read`: pickled to a warm worker process, extracted, sent back); and, where pypdf is
installed (a dev dependency), pypdf's plain `extract_text` of all 100 pages, what Glimpse used
before, timed in turns with PDFium. Wall and CPU medians; the CPU time is the figure that holds on
a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.images import pin_to_one_core  # noqa: E402
from bot.attachments.pdf import PdfExtractor, extract_pdf_text  # noqa: E402
from bot.config import Settings  # noqa: E402
from tests.pdf_corpus import numbered_pages_pdf  # noqa: E402

PAGES = 100
LINES_PER_PAGE = 40  # ~3,900 characters a page: a dense report page
TARGET_MS = 300.0


def _timed(works: list[Callable[[], object]], runs: int) -> list[tuple[float, float]]:
    """Median wall and CPU milliseconds of `runs` calls of each work, taking turns, after a warm-up."""
    for work in works:
        work()
    walls: list[list[float]] = [[] for _ in works]
    cpus: list[list[float]] = [[] for _ in works]
    for _ in range(runs):
        for index, work in enumerate(works):
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            cpus[index].append((time.process_time() - cpu) * 1000)
            walls[index].append((time.perf_counter() - wall) * 1000)
    return [
        (statistics.median(wall), statistics.median(cpu))
        for wall, cpu in zip(walls, cpus, strict=True)
    ]


def _pypdf_text(data: bytes) -> str:
    """What Glimpse did before PDFium: pypdf's plain extraction of every page."""
    import pypdf

    return "\n\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


async def _through_the_worker(data: bytes, max_pages: int, runs: int) -> float:
    """Median wall milliseconds of PdfExtractor.read (a warm worker; IPC included)."""
    extractor = PdfExtractor(max_pages=max_pages, timeout_seconds=60)
    try:
        await extractor.read(data, "report.pdf")
        walls = []
        for _ in range(runs):
            started = time.perf_counter()
            await extractor.read(data, "report.pdf")
            walls.append((time.perf_counter() - started) * 1000)
        return statistics.median(walls)
    finally:
        await extractor.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    core = pin_to_one_core()
    data = numbered_pages_pdf(PAGES, LINES_PER_PAGE)
    cap = Settings().pdf_max_pages
    chars = len(extract_pdf_text(data, PAGES).text)
    print(f"{PAGES}-page PDF, {len(data):,} bytes, {chars:,} characters of text; core {core}")
    names = [f"all {PAGES} pages", f"first {cap} (pdf_max_pages)"]
    works: list[Callable[[], object]] = [
        lambda: extract_pdf_text(data, PAGES),
        lambda: extract_pdf_text(data, cap),
    ]
    if importlib.util.find_spec("pypdf") is not None:
        names.append(f"all {PAGES}, pypdf (before)")
        works.append(lambda: _pypdf_text(data))
    rows = [(name, *timed) for name, timed in zip(names, _timed(works, args.runs), strict=True)]
    worker = asyncio.run(_through_the_worker(data, cap, args.runs))
    print(f"{'':28} {'wall ms':>8} {'CPU ms':>8}")
    for name, wall, cpu in rows:
        print(f"{name:28} {wall:8.0f} {cpu:8.0f}")
    print(f"{f'first {cap}, through the worker':28} {worker:8.0f} {'':>8}")
    print(f"target: <= {TARGET_MS:.0f} ms for {PAGES} pages on one core")
    print(f"load average (1 / 5 / 15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
