"""`glimpse chat` as a person uses it: Ctrl-C and Ctrl-D, refusals, the start-up and cost lines."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import pty
import re
import signal
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from adapters.console import HeldLogs, build_message, conversation_key, load_attachments
from adapters.console_files import ConsoleError, byte_limit
from bot.cli import _parser
from bot.config import Settings
from bot.conversations import CUT_OFF_NOTE
from tests.cli_support import ROOT, glimpse_env, run_glimpse
from tests.fakes.openrouter import LLAMA_VISION_MODEL, FakeOpenRouter

STORY = (
    "Once upon a time a small red boat crossed a calm lake at sunset, and every fish in the "
    "water swam along behind it to see where it would go."
)
COST_LINE = re.compile(r"^\(\d[\d,]* \+ \d[\d,]* tokens, \$\d+\.\d+\)$")
WAIT_SECONDS = 30.0  # for anything a healthy run shows within a few seconds
# A story streamed slowly enough (200 chunks, 0.1 s apart) that a starved machine delivering the
# chunks in bursts still cannot finish it before the test's Ctrl-C.
SLOW_STORY = (200, 0.1)
# Make the pty the child's controlling terminal, so ^C typed into it is a real SIGINT.
WITH_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'bot.cli', *sys.argv[1:]])"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter(reply=STORY) as server:
        yield server


def _env(fake: FakeOpenRouter, tmp_path: Path, **extra: str) -> dict[str, str]:
    store_url = f"sqlite:///{tmp_path / 'glimpse.db'}"
    return glimpse_env(fake, store_url=store_url, **{"TERM": "xterm", **extra})


_glimpse = run_glimpse


class Terminal:
    """`glimpse` on a pseudo-terminal: type into it, read its screen, see how it exits."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self._master = master
        self.screen = ""
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    @classmethod
    async def open(cls, *args: str, env: dict[str, str]) -> Terminal:
        master, slave = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WITH_TERMINAL,
            *args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(slave)
        return cls(process, master)

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    async def wait_for(self, text: str, *, after: int = 0) -> int:
        """Wait until `text` is on the screen past `after`; return where it ends."""
        async with asyncio.timeout(WAIT_SECONDS):
            while (at := self.screen.find(text, after)) < 0:
                self._changed.clear()
                await self._changed.wait()
        return at + len(text)

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.process.wait(), WAIT_SECONDS)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        if self.process.returncode is None:
            self.process.kill()

    def _read(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:  # the child closed its side
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
        self.screen += data.decode(errors="replace").replace("\r\n", "\n")
        self._changed.set()


@pytest.fixture
async def terminals() -> AsyncIterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()
        await terminal.process.wait()


async def _chat_on_terminal(terminals: list[Terminal], env: dict[str, str], *args: str) -> Terminal:
    terminal = await Terminal.open("chat", *args, env=env)
    terminals.append(terminal)
    await terminal.wait_for("you> ")
    return terminal


# --- Ctrl-C and Ctrl-D ---


async def test_ctrl_c_at_the_prompt_quits_at_once_with_0(
    fake: FakeOpenRouter, tmp_path: Path, terminals: list[Terminal]
) -> None:
    terminal = await _chat_on_terminal(terminals, _env(fake, tmp_path), "--conversation", "trip")
    terminal.type("half a thought")
    await terminal.wait_for("half a thought")
    terminal.type("\x03")  # without Enter: waiting for a line would time out here
    assert await terminal.exit_code() == 0
    assert "Traceback" not in terminal.screen and fake.chat_requests == []


async def test_ctrl_d_at_the_prompt_quits_with_0(
    fake: FakeOpenRouter, tmp_path: Path, terminals: list[Terminal]
) -> None:
    terminal = await _chat_on_terminal(terminals, _env(fake, tmp_path))
    terminal.type("\x04")
    assert await terminal.exit_code() == 0
    assert "Traceback" not in terminal.screen


async def test_the_start_up_line_names_the_model_the_store_and_the_conversation(
    fake: FakeOpenRouter, tmp_path: Path, terminals: list[Terminal]
) -> None:
    terminal = await _chat_on_terminal(terminals, _env(fake, tmp_path), "--conversation", "trip")
    [line] = [line for line in terminal.screen.splitlines() if LLAMA_VISION_MODEL in line]
    assert line.startswith("glimpse: ") and "'trip'" in line
    assert str(tmp_path / "glimpse.db") in line
    terminal.type("/quit\r")
    assert await terminal.exit_code() == 0


async def test_ctrl_c_mid_answer_keeps_what_arrived_marked_as_cut_off_and_carries_on(
    fake: FakeOpenRouter, tmp_path: Path, terminals: list[Terminal]
) -> None:
    fake.chunks, fake.chunk_delay_seconds = SLOW_STORY
    terminal = await _chat_on_terminal(terminals, _env(fake, tmp_path))
    terminal.type("Tell me a story.\r")
    await terminal.wait_for("thinking…")
    answer_at = await terminal.wait_for("Once upon")
    terminal.type("\x03")
    stopped_at = await terminal.wait_for("glimpse: stopped;", after=answer_at)
    await terminal.wait_for("you> ", after=stopped_at)

    fake.chunk_delay_seconds = 0.0
    terminal.type("Go on.\r")
    end = await terminal.wait_for("go.\n", after=stopped_at)
    await terminal.wait_for("you> ", after=end)
    messages = fake.chat_requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    partial, note = messages[2]["content"].split("\n\n")
    assert note == CUT_OFF_NOTE and STORY.startswith(partial) and partial != STORY
    assert partial in terminal.screen[:stopped_at]
    terminal.type("\x04")
    assert await terminal.exit_code() == 0


async def test_ctrl_c_mid_answer_of_one_message_prints_what_arrived_and_exits_130(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.chunks, fake.chunk_delay_seconds = SLOW_STORY
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bot.cli", "chat", "-m", "Tell me a story."),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(fake, tmp_path),
        cwd=ROOT,
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.read(9), timeout=WAIT_SECONDS)
    process.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(process.communicate(), timeout=WAIT_SECONDS)
    printed = (first + rest).decode().strip()
    assert process.returncode == 130
    assert STORY.startswith(printed) and printed != STORY
    assert err.decode().splitlines() == [
        "glimpse: stopped; the answer so far is remembered, marked as cut off"
    ]


# --- refusals of attached files: one line, exit 1, nothing sent ---


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and stops: enough for Pillow to judge it without decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _jpeg(tmp_path: Path, name: str = "photo.jpg") -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), "orange").save(buffer, "JPEG")
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def _refused_file(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """The `--attach` arguments for one kind of unusable file, and what the line must name."""
    if case == "missing":
        return [str(tmp_path / "nope.png")], "nope.png"
    if case == "directory":
        (tmp_path / "album").mkdir()
        return [str(tmp_path / "album")], "album"
    if case == "png signature only":  # Pillow cannot tell what it is; its first bytes can
        (tmp_path / "stub.dat").write_bytes(_png_header(64, 64)[:20])
        return [str(tmp_path / "stub.dat")], "stub.dat is damaged"
    if case == "broken":
        (tmp_path / "cut.png").write_bytes(_png_header(64, 64)[:40])
        return [str(tmp_path / "cut.png")], "cut.png"
    if case == "oversized":
        (tmp_path / "big.jpg").write_bytes(_jpeg(tmp_path).read_bytes() + b"\0" * 1_100_000)
        return [str(tmp_path / "big.jpg")], "big.jpg is 1.05 MiB; the limit is 1 MiB"
    if case == "too many pixels":  # between Pillow's warning and its error: no warning leaks
        (tmp_path / "bomb.png").write_bytes(_png_header(10_000, 9_500))
        return [str(tmp_path / "bomb.png")], "bomb.png is 10000×9500 pixels"
    if case == "too many other files":
        for i in range(5):
            (tmp_path / f"log{i}.txt").write_text("ok\n")
        paths = [str(tmp_path / f"log{i}.txt") for i in range(5)]
        return paths, "5 files; at most 4 go with one message (files_per_message)"
    paths = [str(_jpeg(tmp_path, f"p{i}.jpg")) for i in range(5)]
    return paths, "5 images; at most 4 go with one message (images_per_message)"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "png signature only",
        "broken",
        "oversized",
        "too many pixels",
        "too many files",
        "too many other files",
    ],
)
async def test_an_unusable_file_is_one_line_exit_1_and_nothing_is_sent(
    fake: FakeOpenRouter, tmp_path: Path, case: str
) -> None:
    paths, named = _refused_file(tmp_path, case)
    attached = [arg for path in paths for arg in ("--attach", path)]
    env = _env(fake, tmp_path, GLIMPSE_IMAGE_MAX_BYTES=str(1024 * 1024))
    run = await _glimpse("chat", *attached, "-m", "What is this?", env=env)
    assert run.code == 1, run.err
    [line] = run.err.splitlines()
    assert line.startswith("glimpse: ") and named in line, line
    assert "Warning" not in run.err and run.out == ""
    assert fake.requests == []  # refused before the model was even looked up


async def test_an_unusable_file_in_the_interactive_chat_is_refused_at_once_and_the_chat_goes_on(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    (tmp_path / "cut.png").write_bytes(_png_header(64, 64)[:40])
    photo = _jpeg(tmp_path)
    script = (
        f"/attach {tmp_path / 'cut.png'}\n/attach {tmp_path / 'nope.txt'}\n/attach\n"
        f"/image {photo}\nWhat is it?\n/quit\n"
    )
    run = await _glimpse("chat", env=_env(fake, tmp_path), stdin=script)
    assert run.code == 0, run.err
    said = [line for line in run.err.splitlines() if line.startswith("glimpse: ")][1:]
    assert said[:4] == [
        "glimpse: cut.png is damaged or incomplete and could not be read.",
        f"glimpse: cannot read {tmp_path / 'nope.txt'}: no such file",
        "glimpse: /attach needs the path of a file",
        "glimpse: photo.jpg will go with your next message",
    ]
    [request] = fake.chat_requests
    parts = request.body["messages"][-1]["content"]
    assert [part["type"] for part in parts] == ["image_url", "text"]


# --- files the core judges: handed over, not refused by the terminal ---

MIB = 1024 * 1024
NOTES = "deploy failed: disk quota exceeded on build-7\n"


def _files(tmp_path: Path) -> dict[str, Path]:
    """A text file, a text file named like a photo, an unknown binary and a real photo."""
    files = {
        "notes.txt": tmp_path / "notes.txt",
        "notes.jpg": tmp_path / "notes.jpg",
        "blob.bin": tmp_path / "blob.bin",
    }
    files["notes.txt"].write_text(NOTES * 3)
    files["notes.jpg"].write_text("not an image\n" * 20)
    files["blob.bin"].write_bytes(bytes(range(256)) * 8)
    files["photo.jpg"] = _jpeg(tmp_path)
    return files


def test_images_by_their_bytes_go_as_images_and_every_other_file_as_a_file(
    tmp_path: Path,
) -> None:
    files = _files(tmp_path)
    attachments = load_attachments([str(path) for path in files.values()], Settings())
    message = build_message(conversation_key("default"), "summarise", attachments)
    assert [ref.filename for ref in message.images] == ["photo.jpg"]
    assert [ref.filename for ref in message.files] == ["notes.txt", "notes.jpg", "blob.bin"]
    for ref in message.files:
        assert ref.data == files[ref.filename].read_bytes() and ref.size == len(ref.data)
    assert message.text == "summarise" and message.key.platform == "terminal"


def test_a_file_over_its_byte_limit_is_refused_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(image_max_bytes=2 * MIB, file_max_bytes=MIB)
    (tmp_path / "build.log").write_text("x" * (MIB + MIB // 2))
    with pytest.raises(ConsoleError) as refused:
        load_attachments([str(tmp_path / "build.log")], settings)
    assert str(refused.value) == "build.log is 1.5 MiB; the limit is 1 MiB (file_max_bytes)"
    assert byte_limit(settings, image=True) == (2 * MIB, "image_max_bytes")


def test_attach_and_image_are_one_option() -> None:
    args = _parser().parse_args(["chat", "--image", "a.png", "--attach", "b.log", "-m", "hi"])
    assert args.attach == ["a.png", "b.log"]


async def test_an_attached_text_file_is_sent_with_the_question_not_refused(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    run = await _glimpse(
        "chat", "--attach", str(files["notes.txt"]), "-m", "summarise", env=_env(fake, tmp_path)
    )
    assert (run.code, run.out) == (0, STORY + "\n"), run.err
    assert len(fake.chat_requests) == 1


async def test_an_attached_text_file_reaches_the_model_in_the_question(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    run = await _glimpse(
        "chat", "--attach", str(files["notes.txt"]), "-m", "summarise", env=_env(fake, tmp_path)
    )
    assert run.code == 0, run.err
    [request] = fake.chat_requests
    assert NOTES.strip() in str(request.body["messages"][-1]["content"])


async def test_attach_in_the_interactive_chat_sends_the_file_with_the_next_message(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    script = f"/attach {files['notes.txt']}\nsummarise\nand now?\n/quit\n"
    run = await _glimpse("chat", env=_env(fake, tmp_path), stdin=script)
    assert run.code == 0, run.err
    assert "glimpse: notes.txt will go with your next message" in run.err.splitlines()
    assert len(fake.chat_requests) == 2


# --- what follows an answer, and what does not ---


async def test_the_cost_follows_an_answer_on_stderr_and_no_cost_turns_it_off(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = _env(fake, tmp_path)
    run = await _glimpse("chat", "-m", "Hello?", env=env)
    assert (run.code, run.out) == (0, STORY + "\n")
    [line] = run.err.splitlines()  # no start-up line or indicator when stderr is not a terminal
    assert COST_LINE.match(line), line

    quiet = await _glimpse("chat", "--no-cost", "-m", "Hello again?", env=env)
    assert (quiet.code, quiet.out, quiet.err) == (0, STORY + "\n", "")


async def test_a_model_error_is_one_line_without_the_log_line_about_it(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = _env(fake, tmp_path, OPENROUTER_API_KEY="sk-or-v1-wrongwrongwrong")
    run = await _glimpse("chat", "-m", "Hello?", env=env)
    assert run.code == 1
    [line] = run.err.splitlines()
    assert "key is invalid" in line

    verbose = await _glimpse("chat", "--log-level", "WARNING", "-m", "Hello?", env=env)
    assert "OpenRouter call failed" in verbose.err  # asked for: the log line is there too


def test_log_lines_held_during_an_answer_show_after_it_less_what_the_user_was_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("glimpse.test")
    with caplog.at_level(logging.WARNING), HeldLogs().installed() as held:
        held.hold()
        log.warning("the ledger is down")
        assert caplog.messages == []  # nothing in the middle of the streamed answer
        held.release(told=False)
        assert caplog.messages == ["the ledger is down"]

        held.hold()
        logging.getLogger("glimpse.openrouter").warning("OpenRouter call failed: kind=auth")
        log.info("image refused: file='x.png'")
        log.error("something broke")  # errors are never held
        held.release(told=True)  # the sentence said it: the model's failure and the refusal go
        assert caplog.messages == ["the ledger is down", "something broke"]

        held.hold()
        log.warning("could not store turns: database or disk is full")
        held.release(told=True)  # the sentence ("couldn't save") does not say why: the cause stays
    assert caplog.messages[-1] == "could not store turns: database or disk is full"
