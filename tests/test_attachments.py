"""Attachments read by their bytes: sniffing, text files, PDFs in a worker, and fitting text to the budget.

The pure steps are tested on their own; the whole path runs through Conversations with the real
openai SDK against the fake OpenRouter, like tests/test_memory.py.
"""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import build_conversations
from bot.attachments import AttachmentPipeline, FileFitter, FileText, Kind, sniff
from bot.attachments.errors import AttachmentRefused
from bot.attachments.fit import is_log
from bot.attachments.pdf import PdfExtractor, PdfText
from bot.attachments.text import decode_text, fenced
from bot.config import Secrets, Settings
from bot.conversations import Conversations, Status
from bot.images import ImagePipeline
from bot.messages import ConversationKey, FileRef, ImageRef, IncomingMessage, QuotedMessage
from bot.tokens import TokenCounter
from tests import images_corpus as ic
from tests import pdf_corpus as pc
from tests.core_support import counted_tokens, message_texts
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.sink import RecordingSink
from tests.pdf_workers import SLOW_PDF, slow_on_slow_pdf

KEY = ConversationKey("test", "w1", "c1", "t1")
CONTEXT = 4096
MAX_OUTPUT = 512
MARGIN = 32
BUDGET = CONTEXT - MAX_OUTPUT - MARGIN
JUNK = bytes(range(256)) * 8
_ids = iter(range(10**9))


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


# --- sniffing: the bytes decide, never the name ---


@pytest.mark.parametrize(
    "data, kind",
    [
        (ic.png_bytes((8, 8)), Kind.IMAGE),
        (ic.jpeg_bytes((8, 8)), Kind.IMAGE),
        (ic.encode(ic.solid((8, 8)), "GIF"), Kind.IMAGE),
        (ic.webp_bytes((8, 8)), Kind.IMAGE),
        (ic.encode(ic.solid((8, 8)), "BMP"), Kind.IMAGE),
        (ic.encode(ic.solid((8, 8)), "TIFF"), Kind.IMAGE),
        (ic.HEIC_BYTES, Kind.IMAGE),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 32, Kind.IMAGE),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 32, Kind.OTHER),
        (pc.text_pdf([["hello"]]), Kind.PDF),
        (b"junk before the header\r\n" * 20 + b"%PDF-1.4\n...", Kind.PDF),
        (b"BMW service notes: oil changed, tyres rotated.\n", Kind.TEXT),
        ("naïve café ✓\n".encode(), Kind.TEXT),
        (b"\x1b[31mERROR\x1b[0m disk full\n", Kind.TEXT),
        (JUNK, Kind.OTHER),
        (ic.zip_bytes(), Kind.OTHER),
        (b"text then\x00a NUL", Kind.OTHER),
    ],
    ids=lambda value: value.name if isinstance(value, Kind) else None,
)
def test_the_bytes_say_what_a_file_is(data: bytes, kind: Kind) -> None:
    assert sniff(data).kind is kind


@pytest.mark.parametrize(
    "encoded, encoding",
    [
        (codecs.BOM_UTF16_LE + "grüße\n".encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF16_BE + "grüße\n".encode("utf-16-be"), "utf-16"),
        ("grüße, no BOM\n".encode("utf-16-le"), "utf-16-le"),
        ("grüße, no BOM\n".encode("utf-16-be"), "utf-16-be"),
        ("grüße\n".encode("utf-32"), "utf-32"),
        (codecs.BOM_UTF8 + "grüße\n".encode(), "utf-8-sig"),
    ],
)
def test_utf16_and_utf32_are_text_with_or_without_a_bom(encoded: bytes, encoding: str) -> None:
    sniffed = sniff(encoded)
    assert (sniffed.kind, sniffed.encoding) == (Kind.TEXT, encoding)
    assert decode_text(encoded, sniffed.encoding, "x.txt").startswith("grüße")


def test_a_file_text_at_the_start_and_binary_after_is_refused_when_read() -> None:
    half = b"2026-12-03 22:10:04 INFO starting\n" * 2000 + JUNK * 40
    sniffed = sniff(half)
    assert sniffed.kind is Kind.TEXT  # the first 64 KiB are text…
    with pytest.raises(AttachmentRefused) as refused:
        decode_text(half, sniffed.encoding, "half.log")  # …but not the whole file
    assert refused.value.user_message == "half.log is not text (binary data), so I skipped it."


def test_a_code_file_is_fenced_under_its_name_with_a_fence_longer_than_any_inside() -> None:
    code = 'def f():\n    """Example:\n\n    ```py\n    f()\n    ```\n    """\n'
    block = fenced("tool.py", code)
    assert block.splitlines()[0] == "````python tool.py"
    assert block.splitlines()[-1] == "````" and code in block
    assert fenced("notes", "plain").splitlines()[0] == "```text notes"


# --- fitting text to the room ---


def _log(lines: int) -> str:
    return "\n".join(
        f"2026-12-03 22:{i // 60 % 60:02d}:{i % 60:02d} INFO worker {i % 7} handled request {i}"
        for i in range(lines)
    )


def test_logs_are_told_by_their_name_or_their_timestamps() -> None:
    assert is_log("anything.LOG", ["no timestamp"])
    assert is_log("output.txt", _log(50).splitlines())
    assert not is_log("notes.txt", ["first", "second", "22:10:04 only one", "fourth"])


def test_a_long_log_keeps_its_head_and_tail_within_its_share(counter: TokenCounter) -> None:
    text = _log(40_000) + "\n2026-12-03 23:59:59 ERROR disk quota exceeded"
    fitted = FileFitter(counter).fit([[FileText("error.log", text)]], 2000)
    [block] = fitted.blocks
    assert FileFitter(counter).cost(block) <= 2000
    lines = block.splitlines()
    assert lines[1] == text.splitlines()[0]  # how the run started
    assert lines[-2].endswith("ERROR disk quota exceeded")  # and how it failed
    [mark] = [line for line in lines if line.startswith("[…")]
    [notice] = fitted.notices
    head, tail = lines.index(mark) - 1, len(lines) - lines.index(mark) - 2
    assert notice == (
        f"error.log was too long for the model, so I read its first {head} and last {tail} lines."
    )
    assert mark == f"[… {40_001 - head - tail} lines not shown …]"
    assert tail > 3 * head  # the end holds the error: most of the room goes there


def test_a_long_file_keeps_its_head_and_marks_the_cut(counter: TokenCounter) -> None:
    text = "\n".join(f"row {i}: some value, another value, a third" for i in range(5000))
    fitted = FileFitter(counter).fit([[FileText("data.csv", text)]], 500)
    [block] = fitted.blocks
    assert FileFitter(counter).cost(block) <= 500
    lines = block.splitlines()
    assert lines[0] == "```csv data.csv" and lines[1] == "row 0: some value, another value, a third"
    shown = len(lines) - 3
    assert lines[-2] == f"[… {5000 - shown} more lines not shown …]"
    assert fitted.notices == (
        f"data.csv was too long for the model, so I read its first {shown} lines.",
    )


def test_small_files_are_whole_and_big_ones_share_what_is_left(counter: TokenCounter) -> None:
    small = FileText("a.txt", "short note")
    big = [FileText(f"{n}.txt", "\n".join(f"{n} line {i}" for i in range(3000))) for n in "bc"]
    fitted = FileFitter(counter).fit([[small], big], 1200)
    assert fitted.blocks[0] == fenced("a.txt", "short note")
    costs = [FileFitter(counter).cost(block) for block in fitted.blocks[1].split("\n\n")]
    assert sum(costs) + FileFitter(counter).cost(fitted.blocks[0]) <= 1200
    assert abs(costs[0] - costs[1]) < 40  # the two big files get even shares
    assert len(fitted.notices) == 2


def test_one_enormous_line_is_cut_inside_the_line(counter: TokenCounter) -> None:
    text = '{"items": [' + ", ".join(f'"{i}"' for i in range(200_000)) + "]}"
    fitted = FileFitter(counter).fit([[FileText("dump.json", text)]], 300)
    [block] = fitted.blocks
    assert FileFitter(counter).cost(block) <= 300
    assert block.splitlines()[1].startswith('{"items": ["0", "1"')
    assert "[… the rest of this line and 0 more lines not shown …]" in block
    assert fitted.notices == (
        "dump.json was too long for the model, so I read only the start of it.",
    )


# --- PDFs in a worker ---


async def _read_pdf(data: bytes, **options: Any) -> PdfText:
    extractor = PdfExtractor(
        max_pages=options.pop("max_pages", 50), timeout_seconds=options.pop("timeout", 10)
    )
    try:
        return await extractor.read(data, options.pop("name", "doc.pdf"))
    finally:
        await extractor.close()


async def test_a_pdf_s_text_is_extracted_page_by_page() -> None:
    found = await _read_pdf(pc.text_pdf([["Invoice 2026-113", "Total: 420 EUR"], ["Thank you"]]))
    assert found.text == "Invoice 2026-113\nTotal: 420 EUR\n\nThank you"
    assert (found.pages_read, found.pages_total) == (2, 2)


async def test_a_pdf_over_the_page_cap_is_read_up_to_the_cap() -> None:
    found = await _read_pdf(pc.numbered_pages_pdf(12, 3), max_pages=5)
    assert (found.pages_read, found.pages_total) == (5, 12)
    assert "page 5, line 3" in found.text and "page 6" not in found.text


@pytest.mark.parametrize(
    "data, sentence",
    [
        (pc.encrypted_pdf(), "doc.pdf is protected by a password, so I couldn't read it."),
        (pc.image_only_pdf(), "doc.pdf looks scanned; I can't read scanned pages yet."),
        (pc.make_pdf([b""]), "doc.pdf has no text I can read."),
        (pc.broken_pdf(), "doc.pdf is a damaged PDF and could not be read."),
        (pc.text_pdf([["x"]])[:300], "doc.pdf is a damaged PDF and could not be read."),
    ],
    ids=["encrypted", "scanned", "blank", "broken", "truncated"],
)
async def test_a_pdf_that_cannot_be_read_gets_a_clear_sentence(data: bytes, sentence: str) -> None:
    with pytest.raises(AttachmentRefused) as refused:
        await _read_pdf(data)
    assert refused.value.user_message == sentence


async def test_a_pdf_encrypted_with_an_empty_password_is_read() -> None:
    found = await _read_pdf(pc.encrypted_pdf(user_password=""))
    assert found.text == "confidential figures"


async def test_a_pdf_bomb_is_refused_fast_and_the_bot_s_memory_stays_put() -> None:
    bomb = pc.bomb_pdf()  # ~0.5 MB that inflates to 512 MB
    before = _rss_bytes()
    started = time.perf_counter()
    with pytest.raises(AttachmentRefused) as refused:
        await _read_pdf(bomb, timeout=10)
    assert refused.value.user_message == "doc.pdf is too large or complex to read, so I skipped it."
    assert time.perf_counter() - started < 10
    assert (
        _rss_bytes() - before < 64 * 1024 * 1024
    )  # the inflating happened (and stopped) elsewhere


async def test_a_pdf_still_being_read_at_the_time_limit_is_given_up_and_its_worker_killed() -> None:
    extractor = PdfExtractor(max_pages=50, timeout_seconds=0.5, extract=slow_on_slow_pdf)
    try:
        started = time.perf_counter()
        with pytest.raises(AttachmentRefused) as refused:
            await extractor.read(SLOW_PDF, "slow.pdf")
        assert time.perf_counter() - started < 5
        assert (
            refused.value.user_message
            == "slow.pdf took longer than 0.5 s to read, so I skipped it."
        )
        # The next PDF gets a fresh worker and is read as usual.
        assert (await extractor.read(pc.text_pdf([["after"]]), "next.pdf")).text == "after"
    finally:
        await extractor.close()


async def test_a_page_of_400_000_text_operators_is_refused_and_the_next_pdf_read() -> None:
    """PDFium builds an object per operator: the worker's memory limit (or the time limit) ends it."""
    extractor = PdfExtractor(max_pages=50, timeout_seconds=10)
    try:
        with pytest.raises(AttachmentRefused) as refused:
            await extractor.read(pc.text_bomb_pdf(), "slow.pdf")
        assert refused.value.user_message in (
            "slow.pdf is too large or complex to read, so I skipped it.",
            "slow.pdf took longer than 10 s to read, so I skipped it.",
        )
        assert (await extractor.read(pc.text_pdf([["after"]]), "next.pdf")).text == "after"
    finally:
        await extractor.close()


def _die(data: bytes, max_pages: int) -> PdfText:
    """A worker that dies mid-PDF, as one killed for its memory would."""
    os._exit(9)


async def test_a_pdf_whose_worker_dies_gets_a_sentence() -> None:
    dying = PdfExtractor(max_pages=50, timeout_seconds=10, extract=_die)
    try:
        with pytest.raises(AttachmentRefused) as refused:
            await dying.read(pc.text_pdf([["x"]]), "crash.pdf")
    finally:
        await dying.close()
    assert (
        refused.value.user_message == "crash.pdf is too large or complex to read, so I skipped it."
    )


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the pipeline: fetched once, routed by the bytes ---


@pytest.fixture
async def pipeline() -> AsyncIterator[AttachmentPipeline]:
    settings = Settings(pdf_max_pages=3)
    images = ImagePipeline(settings)
    attachments = AttachmentPipeline(settings, images)
    yield attachments
    await attachments.close()
    await images.close()


async def test_a_png_named_txt_is_an_image_and_text_named_png_is_text(
    pipeline: AttachmentPipeline,
) -> None:
    prepared = await pipeline.prepare(
        [ImageRef("photo.png", data=b"these are notes, not a photo\n")],
        [FileRef("notes.txt", data=ic.png_bytes((40, 30)))],
    )
    assert [image.label for image in prepared.images] == ["notes.txt"]
    assert prepared.texts == (FileText("photo.png", "these are notes, not a photo"),)
    assert prepared.refusals == ()


async def test_binary_named_txt_and_files_glimpse_cannot_read_get_sentences(
    pipeline: AttachmentPipeline,
) -> None:
    prepared = await pipeline.prepare(
        [ImageRef("noise.png", data=JUNK)],
        [
            FileRef("notes.txt", data=JUNK),
            FileRef("data.bin", data=JUNK),
            FileRef("backup.zip", data=ic.zip_bytes()),
        ],
    )
    assert prepared.texts == () and prepared.images == ()
    assert prepared.refusals == (
        "notes.txt is not text (binary data), so I skipped it.",
        "noise.png is not an image Glimpse can read; send a PNG, JPEG, WEBP or GIF.",
        "I can only read images, text files and PDFs, so I skipped data.bin, backup.zip.",
    )


async def test_a_pdf_over_the_page_cap_tells_the_user(pipeline: AttachmentPipeline) -> None:
    prepared = await pipeline.prepare([], [FileRef("report.pdf", data=pc.numbered_pages_pdf(8, 2))])
    [text] = prepared.texts
    assert "page 3, line 2" in text.text and "page 4" not in text.text
    assert prepared.refusals == ("report.pdf has 8 pages; I read the first 3.",)


async def test_more_files_than_the_cap_are_skipped_with_a_note(
    pipeline: AttachmentPipeline,
) -> None:
    files = [FileRef(f"f{i}.txt", data=f"file {i}".encode()) for i in range(6)]
    prepared = await pipeline.prepare([], files)
    assert [text.name for text in prepared.texts] == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]
    assert prepared.refusals == ("Only the first 4 files are read; skipped f4.txt, f5.txt.",)


# --- end to end through Conversations ---


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


def _settings(fake: FakeOpenRouter, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "store_url": f"sqlite:///{tmp_path / 'g.db'}",
        "max_retries": 0,
        "request_timeout_seconds": 5,
        "user_messages_per_minute": 0,
        "context_length": CONTEXT,
        "max_output_tokens": MAX_OUTPUT,
        "safety_margin_tokens": MARGIN,
        "summaries": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def service(fake: FakeOpenRouter, tmp_path: Path) -> AsyncIterator[Conversations]:
    conversations = build_conversations(
        _settings(fake, tmp_path), Secrets(openrouter_api_key=FAKE_API_KEY)
    )
    await conversations.start()
    yield conversations
    await conversations.close()


def _message(text: str, **extra: Any) -> IncomingMessage:
    return IncomingMessage(key=KEY, message_id=f"m{next(_ids)}", author_id="u1", text=text, **extra)


async def test_a_2_mb_log_reaches_the_model_head_and_tail_within_the_budget(
    service: Conversations, fake: FakeOpenRouter, counter: TokenCounter
) -> None:
    await service.handle(_message("what happened before this?"), RecordingSink())  # some history
    log = _log(38_000) + "\n2026-12-03 23:59:59 ERROR worker 3: disk quota exceeded on /var/lib"
    assert len(log) > 2 * 1024 * 1024
    sink = RecordingSink()
    question = "why does the worker stop?"
    outcome = await service.handle(
        _message(question, files=(FileRef("error.log", data=log.encode()),)), sink
    )
    assert outcome.status is Status.ANSWERED
    body = fake.chat_requests[-1].body
    assert counted_tokens(body, counter) == outcome.request.prompt_tokens <= BUDGET  # type: ignore[union-attr]
    turn = message_texts(body)[-1]
    assert turn.startswith(question + "\n\n```log error.log\n2026-12-03 22:00:00 INFO worker 0")
    assert turn.endswith("ERROR worker 3: disk quota exceeded on /var/lib\n```")
    assert "what happened before this?" in message_texts(body)  # a little history still fits
    [notice] = sink.notices
    assert notice.startswith("error.log was too long for the model, so I read its first ")
    assert not outcome.request.user_text_shortened  # type: ignore[union-attr]


async def test_a_utf16_file_and_a_code_file_reach_the_model_fenced_under_their_names(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    notes = "Einkaufsliste: Äpfel, Birnen\n".encode("utf-16")
    code = b"def main():\n    return 42\n"
    await service.handle(
        _message(
            "summarise", files=(FileRef("liste.txt", data=notes), FileRef("main.py", data=code))
        ),
        RecordingSink(),
    )
    turn = message_texts(fake.chat_requests[-1].body)[-1]
    assert turn == (
        "summarise\n\n```text liste.txt\nEinkaufsliste: Äpfel, Birnen\n```"
        "\n\n```python main.py\ndef main():\n    return 42\n```"
    )


async def test_a_file_without_a_question_gets_the_default_one(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    await service.handle(_message("", files=(FileRef("a.md", data=b"# Title\n"),)), RecordingSink())
    assert message_texts(fake.chat_requests[-1].body)[-1].startswith(
        "What can you tell me about this file?\n\n```markdown a.md\n# Title\n```"
    )


async def test_a_pdf_made_here_reaches_the_model_as_its_text(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    pdf = pc.text_pdf([["Invoice 2026-113", "Total due: 420 EUR"]])
    sink = RecordingSink()
    await service.handle(_message("how much?", files=(FileRef("invoice.pdf", data=pdf),)), sink)
    assert message_texts(fake.chat_requests[-1].body)[-1] == (
        "how much?\n\n```text invoice.pdf\nInvoice 2026-113\nTotal due: 420 EUR\n```"
    )
    assert sink.notices == []


async def test_half_text_half_binary_is_refused_and_the_question_still_answered(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    half = b"2026-12-03 22:10:04 INFO starting\n" * 2000 + JUNK * 40
    sink = RecordingSink()
    outcome = await service.handle(
        _message("what is this?", files=(FileRef("dump.log", data=half),)), sink
    )
    assert sink.notices == ["dump.log is not text (binary data), so I skipped it."]
    assert outcome.status is Status.ANSWERED
    assert message_texts(fake.chat_requests[-1].body)[-1] == "what is this?"


async def test_only_unreadable_files_and_no_question_is_answered_with_the_sentences(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    sink = RecordingSink()
    outcome = await service.handle(
        _message("", files=(FileRef("scan.pdf", data=pc.image_only_pdf()),)), sink
    )
    assert outcome.status is Status.REJECTED and fake.chat_requests == []
    assert sink.notices == ["scan.pdf looks scanned; I can't read scanned pages yet."]


async def test_a_text_file_in_a_reply_quote_reaches_the_quote_s_turn(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    quote = QuotedMessage(
        kind="reply",
        text="the deploy failed again",
        author_id="u2",
        author_name="bob",
        message_id="q1",
        files=(FileRef("deploy.log", data=b"step 3: permission denied\n"),),
    )
    await service.handle(_message("what went wrong?", quoted=(quote,)), RecordingSink())
    *_, quoted, own = message_texts(fake.chat_requests[-1].body)
    assert quoted.endswith(
        "the deploy failed again\n\n```log deploy.log\nstep 3: permission denied\n```"
    )
    assert own == "what went wrong?"


async def test_a_forwarded_file_joins_the_message_s_own_turn(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    forward = QuotedMessage(
        kind="forward", text="see attached", files=(FileRef("todo.txt", data=b"ship it\n"),)
    )
    await service.handle(_message("thoughts?", quoted=(forward,)), RecordingSink())
    assert message_texts(fake.chat_requests[-1].body)[-1] == (
        "thoughts?\n\n[forwarded message]\nsee attached\n\n```text todo.txt\nship it\n```"
    )


async def test_a_file_on_a_host_that_is_not_allowed_is_refused_like_an_image(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="secret internal notes")

    app = web.Application()
    app.router.add_get("/notes.txt", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        sink = RecordingSink()
        url = str(server.make_url("/notes.txt"))
        await service.handle(_message("read this", files=(FileRef("notes.txt", url=url),)), sink)
    finally:
        await server.close()
    assert hits == []
    assert sink.notices == ["notes.txt is on 127.0.0.1, which is not an allowed image host."]
    assert "secret" not in str(fake.chat_requests[-1].body)


async def test_a_file_over_the_byte_cap_is_refused_before_it_is_read(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    service = build_conversations(
        _settings(fake, tmp_path, file_max_bytes=4096), Secrets(openrouter_api_key=FAKE_API_KEY)
    )
    await service.start()
    try:
        sink = RecordingSink()
        big = FileRef("big.txt", data=b"x" * 10_000)
        await service.handle(_message("read this", files=(big,)), sink)
    finally:
        await service.close()
    assert sink.notices == ["big.txt is 9.8 KB; the limit is 4 KB."]
