"""Allow and block lists, and the per-user rate limit."""

from __future__ import annotations

from bot.access import AccessPolicy
from bot.config import Settings
from bot.messages import ConversationKey, IncomingMessage
from bot.ratelimit import SlidingWindowLimiter


def _message(
    user: str = "U1",
    channel: str = "C1",
    *,
    parent: str | None = None,
    roles: tuple[str, ...] = (),
    workspace: str = "T1",
    direct: bool = False,
) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("slack", workspace, channel, "1"),
        message_id="m",
        author_id=user,
        text="hi",
        author_roles=roles,
        parent_channel=parent,
        is_direct=direct,
    )


def test_everyone_is_allowed_by_default() -> None:
    assert AccessPolicy(Settings()).refusal(_message()) is None


def test_block_lists_win_over_allow_lists() -> None:
    policy = AccessPolicy(Settings(allow_users=["U1"], block_users=["U1"]))
    assert policy.refusal(_message("U1")) is not None


def test_allow_lists_admit_only_their_members() -> None:
    policy = AccessPolicy(Settings(allow_users=["U1"], allow_roles=["R9"]))
    assert policy.refusal(_message("U1")) is None
    assert policy.refusal(_message("U2", roles=("R9",))) is None
    assert policy.refusal(_message("U2")) is not None


def test_a_thread_is_checked_against_its_parent_channel() -> None:
    policy = AccessPolicy(Settings(allow_channels=["C1"], block_channels=["C2"]))
    assert policy.refusal(_message(channel="THREAD", parent="C1")) is None
    assert policy.refusal(_message(channel="THREAD", parent="C2")) is not None
    assert policy.refusal(_message(channel="C3")) is not None


def test_workspaces_and_blocked_roles() -> None:
    policy = AccessPolicy(Settings(block_workspaces=["T2"], block_roles=["R1"]))
    assert policy.refusal(_message(workspace="T2")) is not None
    assert policy.refusal(_message(roles=("R1", "R2"))) is not None
    assert policy.refusal(_message(roles=("R2",))) is None


async def test_rate_limit_slides_and_is_per_user() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(2, clock=lambda: now[0])
    assert await limiter.hit("a") is None
    assert await limiter.hit("a") is None
    wait = await limiter.hit("a")
    assert wait is not None and 59 < wait <= 60
    assert await limiter.hit("b") is None
    now[0] += 60
    assert await limiter.hit("a") is None


async def test_zero_disables_the_rate_limit() -> None:
    limiter = SlidingWindowLimiter(0)
    assert all([await limiter.hit("a") is None for _ in range(100)])
