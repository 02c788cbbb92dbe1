"""A PDF's text, extracted in a worker process under a time limit, a memory limit and a page cap.

PDFium (Chrome's PDF engine, through pypdfium2's wheels: BSD-3-Clause/Apache-2.0, built for
Linux x86_64 and aarch64, no other dependency) rather than pypdf or pdfminer.six: its text
extraction runs in C++, 100 dense pages in ~140 ms of CPU where pure-Python pypdf needs ~320-400
ms (`benchmarks/pdf_text.py`; pdfminer's layout analysis is slower still), and it is fuzzed
continuously as part of Chrome. It tells a password (FPDF_ERR_PASSWORD) from an unsupported
security handler and from a damaged file when it opens a document, and it opens files encrypted
with the empty password as any reader does. What it lacks is pypdf's cap on what a compressed
stream may inflate to: a decompression bomb grows until the worker's address-space limit below
makes the allocation fail and PDFium aborts the worker, which costs only that PDF's answer (the
same "too large or complex" sentence) and a new worker for the next PDF.

A hostile PDF can still make any parser slow or hungry, so extraction runs in a small process
pool, never in the event loop or a thread: each job has `pdf_timeout_seconds`, after which the
pool's workers are killed (the pool is made again on the next PDF), and each worker has an
address-space limit (RLIMIT_AS), so the worst a file can do is lose its own answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from bot.attachments.errors import AttachmentRefused
from bot.attachments.text import tidy

__all__ = ["PdfExtractor", "PdfText", "extract_pdf_text"]

log = logging.getLogger("glimpse.attachments")

PDF_WORKERS = 2
WORKER_MEMORY_BYTES = 768 * 1024 * 1024  # address space of a worker (imports take ~100 MB of it)
MAX_TEXT_CHARS = 2_000_000  # far more than any prompt holds; the rest of the pages are not read
PAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class PdfText:
    """What the worker found: the text of the pages read, or a problem ("password", "broken", …)."""

    text: str = ""
    pages_read: int = 0
    pages_total: int = 0
    problem: str = ""
    has_images: bool = False


def extract_pdf_text(data: bytes, max_pages: int) -> PdfText:
    """The text of the first `max_pages` pages (runs in the worker; never raises for a bad file)."""
    import pypdfium2  # in the worker only: the bot's own process never parses a PDF

    try:
        document = pypdfium2.PdfDocument(data)  # tries the empty password, as readers do
    except pypdfium2.PdfiumError as error:
        return PdfText(problem=_LOAD_PROBLEMS.get(error.err_code, "broken"))
    except MemoryError:
        return PdfText(problem="too_complex")
    except Exception:
        return PdfText(problem="broken")
    try:
        return _pages_text(document, max_pages)
    finally:
        document.close()


def _pages_text(document: Any, max_pages: int) -> PdfText:
    total = len(document)
    texts: list[str] = []
    chars = read = failed = 0
    too_complex = has_images = False
    for index in range(min(total, max_pages)):
        try:
            page = document[index]  # PDFium parses the page's content here
            try:
                text = tidy(_page_text(page))
                has_images = has_images or (not text and _has_images(page))
            finally:
                page.close()
        except MemoryError:
            too_complex, failed = True, failed + 1
            continue
        except Exception:
            failed += 1
            continue
        read += 1
        if text:
            texts.append(text)
            chars += len(text)
        if chars > MAX_TEXT_CHARS:
            break
    if not texts and failed:
        return PdfText(pages_total=total, problem="too_complex" if too_complex else "broken")
    text = PAGE_SEPARATOR.join(texts)[:MAX_TEXT_CHARS]
    return PdfText(text, read, total, has_images=has_images)


def _page_text(page: Any) -> str:
    text_page = page.get_textpage()
    try:
        # All of Unicode, unlike get_text_range (UCS-2); text outside the page box, which no reader
        # shows, is left out.
        return str(text_page.get_text_bounded())
    finally:
        text_page.close()


def _has_images(page: Any) -> bool:
    """Whether the page draws an image (a scan), at most inside one form: no image is decoded."""
    import pypdfium2.raw as pdfium_c

    images = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2)
    return next(iter(images), None) is not None


def _limit_worker() -> None:
    """Runs once in each worker: an address-space cap, and no warnings on stderr."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = (
        WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(hard, WORKER_MEMORY_BYTES)
    )
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    warnings.simplefilter("ignore")


def _context() -> multiprocessing.context.BaseContext:
    """A fork server: workers start from a clean process (no threads of the bot's), quickly."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "pypdfium2"])  # workers start with PDFium loaded
    return context


class PdfExtractor:
    """Reads PDFs in a lazily created process pool; kills its workers when one overruns its time."""

    def __init__(
        self,
        *,
        max_pages: int,
        timeout_seconds: float,
        workers: int = PDF_WORKERS,
        extract: Callable[[bytes, int], PdfText] = extract_pdf_text,
    ) -> None:
        self._max_pages = max_pages
        self._timeout = timeout_seconds
        self._workers = workers
        self._extract = extract  # a module-level function: it is pickled to the worker
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        # Pools this extractor killed: their other jobs broke through no fault of theirs, and are retried.
        self._killed: weakref.WeakSet[concurrent.futures.ProcessPoolExecutor] = weakref.WeakSet()
        self._slots = asyncio.Semaphore(workers)  # the clock runs only while a worker is on the job

    async def read(self, data: bytes, name: str) -> PdfText:
        """The PDF's text (pages up to the cap); AttachmentRefused with a sentence for anything else."""
        async with self._slots:
            try:
                found = await self._run(data, name)
            except BrokenProcessPool:  # another PDF's timeout killed the pool: once more, anew
                found = await self._run(data, name)
        return self._checked(found, name)

    async def close(self) -> None:
        """Stop the workers (they hold no state worth waiting for)."""
        if self._pool is not None:
            self._kill(self._pool)

    async def _run(self, data: bytes, name: str) -> PdfText:
        pool = self._pool or self._new_pool()
        # Submitting may start the fork server or a worker: not on the event loop's thread.
        try:
            job = await asyncio.to_thread(pool.submit, self._extract, data, self._max_pages)
        except RuntimeError:  # shut down between the two lines above by another PDF's timeout
            raise BrokenProcessPool("killed") from None
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.wrap_future(job)
        except TimeoutError:
            log.warning("PDF %r took over %g s; its worker was killed", name, self._timeout)
            self._kill(pool)
            raise AttachmentRefused(
                f"{name} took longer than {self._timeout:g} s to read, so I skipped it.",
                reason="pdf_timeout",
            ) from None
        except asyncio.CancelledError:
            self._kill(pool)  # nobody waits for this PDF any more: it must not keep a worker busy
            raise
        except BrokenProcessPool:
            if pool in self._killed:
                raise
            log.warning("PDF %r crashed its worker (out of memory?)", name)
            self._kill(pool)
            raise AttachmentRefused(
                f"{name} is too large or complex to read, so I skipped it.", reason="pdf_crash"
            ) from None

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self._workers, mp_context=_context(), initializer=_limit_worker
        )
        return self._pool

    def _kill(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """SIGKILL the pool's workers: a parser stuck in a loop never returns to hear anything else."""
        self._killed.add(pool)
        if self._pool is pool:
            self._pool = None
        # Python 3.14 has pool.kill_workers(); before it the processes are only reachable here.
        processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def _checked(self, found: PdfText, name: str) -> PdfText:
        if found.problem:
            raise AttachmentRefused(
                _PROBLEMS[found.problem].format(name=name), reason=found.problem
            )
        if not found.text:
            if found.has_images:
                raise AttachmentRefused(
                    f"{name} looks scanned; I can't read scanned pages yet.", reason="pdf_scanned"
                )
            raise AttachmentRefused(f"{name} has no text I can read.", reason="pdf_no_text")
        return found


# PDFium's FPDF_ERR_* codes when a document does not open; anything else is "broken".
_LOAD_PROBLEMS = {4: "password", 5: "encryption"}

_PROBLEMS = {
    "password": "{name} is protected by a password, so I couldn't read it.",
    "encryption": "{name} is encrypted in a way I can't open, so I couldn't read it.",
    "broken": "{name} is a damaged PDF and could not be read.",
    "too_complex": "{name} is too large or complex to read, so I skipped it.",
}
