"""The `glimpse` command: chat in the terminal, check the setup, run the bot."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, NoReturn

import bot
from bot.config import (
    ConfigError,
    Secrets,
    Settings,
    StartupError,
    load_secrets,
    load_settings,
)
from bot.context import ContextError
from bot.heap import settle_heap
from bot.logs import redact, setup_logging
from bot.shutdown import serve_until_signalled
from bot.store import StoreError

if TYPE_CHECKING:
    from bot.conversations import Conversations
    from bot.health import HealthServer

__all__ = ["main"]

log = logging.getLogger("glimpse.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `glimpse` command; a failure is one line on stderr: exit 2 for configuration, 1 otherwise."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    setup_logging(
        args.log_level or ("INFO" if args.command == "run" else "WARNING"), args.log_format
    )
    try:
        settings = load_settings(args.config)
        secrets = load_secrets()
        return int(asyncio.run(args.handler(args, settings, secrets)) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every failure becomes one line and an exit code
        return _fail(exc)


def _fail(exc: Exception) -> int:
    """Print the one line for a failure and return its exit code."""
    if isinstance(exc, (ConfigError, ContextError)):
        print(f"glimpse: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, StoreError):
        print(
            f"glimpse: cannot open the memory store: {exc} "
            "(check GLIMPSE_STORE_URL; `glimpse doctor` checks it)",
            file=sys.stderr,
        )
        return 2
    if isinstance(exc, StartupError):
        print(f"glimpse: {exc}", file=sys.stderr)
        return 1
    log.debug("unexpected failure", exc_info=exc)
    detail = redact(str(exc))
    print(
        f"glimpse: unexpected error: {type(exc).__name__}{': ' + detail if detail else ''} "
        "(--log-level DEBUG shows where)",
        file=sys.stderr,
    )
    return 1


def _version() -> str:
    """The installed distribution's version, else `bot.__version__`, else 'unknown'."""
    try:
        return metadata.version("glimpse")
    except metadata.PackageNotFoundError:
        return str(getattr(bot, "__version__", "unknown"))


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--config, --log-level, --log-format: before the command (defaults) or after it (suppressed)."""
    unset = argparse.SUPPRESS

    parser.add_argument(
        "--config",
        metavar="PATH",
        default=unset if suppress else None,
        help="TOML config file (default: $GLIMPSE_CONFIG)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=unset if suppress else None,
        help="log verbosity (default: INFO for run, WARNING otherwise)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=unset if suppress else "text",
        help="log line format (default: text)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where the usage is (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    # Global options go before or after the command; after it they only override what is given.
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)

    parser = _Parser(prog="glimpse", description="A vision chat-bot for Discord and Slack.")
    parser.add_argument("--version", action="version", version=f"glimpse {_version()}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = commands.add_parser("chat", parents=[common], help="talk to the bot in the terminal")
    chat.add_argument(
        "-m", "--message", metavar="TEXT", help="send one message, print the answer and exit"
    )
    chat.add_argument(
        "--attach",
        "--image",
        dest="attach",
        metavar="PATH",
        action="append",
        default=[],
        help="attach a file: a photo, a screenshot, a log, a PDF… (repeatable; --image is the same)",
    )
    chat.add_argument(
        "--conversation", metavar="NAME", default="default", help="which memory to use"
    )
    chat.add_argument("--new", action="store_true", help="forget the conversation first")
    chat.add_argument(
        "--no-cost", action="store_true", help="do not print tokens and cost after each answer"
    )
    chat.set_defaults(handler=_chat)

    run = commands.add_parser("run", parents=[common], help="run the bot on Discord and/or Slack")
    run.add_argument(
        "--platform",
        choices=["discord", "slack"],
        help="run one platform (default: all configured)",
    )
    run.add_argument(
        "--http",
        action="store_true",
        help="Slack: receive the Events API over HTTP, not Socket Mode",
    )
    run.add_argument("--port", type=int, default=3000, help="Slack HTTP port (default 3000)")
    run.add_argument(
        "--health-port",
        type=_port,
        metavar="PORT",
        help="serve /healthz, /readyz and /metrics here (default: health_port, 8080; 0: off)",
    )
    run.set_defaults(handler=_run)

    usage = commands.add_parser(
        "usage", parents=[common], help="print spend and tokens of recent days as a table"
    )
    usage.add_argument(
        "--days", type=_positive, default=30, help="how many UTC days, today included (default 30)"
    )
    usage.add_argument(
        "--by",
        choices=["day", "channel", "user", "model", "workspace", "kind"],
        default="day",
        help="one line per day (default), channel, user, model, workspace "
        "or kind (answer, summary)",
    )
    usage.set_defaults(handler=_usage)

    forget = commands.add_parser(
        "forget", parents=[common], help="delete what is stored for a user or a conversation"
    )
    target = forget.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", metavar="ID", help="a user id (Slack U…, Discord snowflake)")
    target.add_argument(
        "--conversation", metavar="KEY", help="platform:workspace:channel:thread (as logged)"
    )
    forget.set_defaults(handler=_forget)

    doctor = commands.add_parser(
        "doctor", parents=[common], help="check config, key, model and store"
    )
    doctor.set_defaults(handler=_doctor)
    return parser


async def _chat(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from adapters.console import ConsoleError, Terminal, conversation_key, load_attachments
    from bot.app import build_conversations

    if args.message is None and args.attach:
        print(
            "glimpse: --attach goes with -m; in the interactive chat use /attach PATH",
            file=sys.stderr,
        )
        return 2
    try:  # every file is read and checked before anything is sent
        attachments = load_attachments(args.attach, settings)
    except ConsoleError as exc:
        print(f"glimpse: {exc}", file=sys.stderr)
        return 1
    _warn_relative_store(settings)
    conversations = build_conversations(settings, secrets)
    key = conversation_key(args.conversation)
    terminal = Terminal(
        conversations,
        key,
        settings,
        show_cost=not args.no_cost,
        quiet_logs=args.log_level is None,  # with --log-level, every log line shows at once
    )
    try:
        return await terminal.run(args.message, attachments, forget=args.new)
    finally:
        await conversations.close()


async def _run(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from bot.app import build_conversations

    _store_for_run(settings)
    platforms = (
        [args.platform]
        if args.platform
        else [
            name
            for name, token in (
                ("discord", secrets.discord_token),
                ("slack", secrets.slack_bot_token),
            )
            if token
        ]
    )
    if not platforms:
        print(
            "glimpse: no platform configured: set DISCORD_TOKEN and/or SLACK_BOT_TOKEN "
            "(see the README's 'Run on Discord' and 'Run on Slack')",
            file=sys.stderr,
        )
        return 2
    conversations = build_conversations(settings, secrets)
    await conversations.start()
    health = None
    try:
        health = await _serve_health(conversations, settings, args.health_port)
        conversations.readiness.expect(platforms)
        runners = []
        if "discord" in platforms:
            from adapters.discord import run_discord

            runners.append(run_discord(conversations, settings, secrets))
        if "slack" in platforms:
            from adapters.slack import run_slack

            runners.append(
                run_slack(conversations, settings, secrets, http=args.http, port=args.port)
            )
        settle_heap()  # start-up is done: everything imported and loaded stays
        await serve_until_signalled(
            runners, drain=lambda: conversations.drain(settings.shutdown_timeout_seconds)
        )
    finally:
        if health is not None:
            await health.close()
        await conversations.close()
    return 0


def _store_for_run(settings: Settings) -> None:
    """Log where the memory store is; refuse a SQLite path relative to where Glimpse was started."""
    from bot.doctor import relative_store_problem
    from bot.store import store_location

    problem = relative_store_problem(settings)
    if problem is not None:
        detail, fix = problem
        raise ConfigError(f"{detail}; `glimpse run` needs an absolute path: {fix}")
    log.info("memory store: %s", store_location(settings.resolved_store_url()))


def _warn_relative_store(settings: Settings) -> None:
    """`glimpse chat` keeps a relative SQLite path, and says on stderr where that puts the file."""
    from bot.doctor import relative_store_problem

    problem = relative_store_problem(settings)
    if problem is not None:
        detail, fix = problem
        print(f"glimpse: memory store: {detail} ({fix})", file=sys.stderr)


async def _serve_health(
    conversations: Conversations, settings: Settings, port: int | None
) -> HealthServer | None:
    from bot.health import HealthServer

    port = settings.health_port if port is None else port
    if not port:
        return None
    server = HealthServer(conversations, host=settings.health_host, port=port)
    try:
        await server.start()
    except OSError as exc:
        await server.close()
        raise ConfigError(
            f"cannot serve health checks on {settings.health_host}:{port} ({exc.strerror or exc}); "
            "set health_port (GLIMPSE_HEALTH_PORT) or --health-port, 0 turns it off"
        ) from None
    return server


async def _usage(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from bot.admin import show_usage

    return await show_usage(settings.resolved_store_url(), days=args.days, by=args.by)


async def _forget(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from bot.admin import forget_conversation, forget_user

    if args.user is not None:
        return await forget_user(settings.resolved_store_url(), args.user)
    return await forget_conversation(settings.resolved_store_url(), args.conversation)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 0 to 65535")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


async def _doctor(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from bot.doctor import run_checks

    return await run_checks(settings, secrets, config_path=args.config)


if __name__ == "__main__":  # pragma: no cover
    logging.captureWarnings(True)
    raise SystemExit(main())
