"""`Conversation` against a real `offstage serve`: the headers it hands the MCP client file the
jobs under the conversation it follows, each job's ending is handed out once (to its waiter
and to every reader), also across a restart of offstage, and a refused token reaches the
waiters instead of leaving them waiting."""

from __future__ import annotations

import anyio
import pytest

from conftest import Offstage
from helpers import start_job
from offstage_client import AuthError, Conversation, Event

pytestmark = pytest.mark.anyio


async def call(offstage: Offstage, conversation: Conversation, prompt: str) -> str:
    """A tool call as the app's MCP client makes it, with the conversation's own headers."""
    headers = conversation.headers
    assert headers["Offstage-Conversation"] == conversation.id
    return await start_job(offstage.base, prompt, conversation.id, token=conversation.token)


async def test_the_headers_name_the_conversation_it_follows(offstage: Offstage) -> None:
    conversation = Conversation(offstage.base, delivery="silent")
    assert conversation.id.startswith("call-") and len(conversation.id) > 10
    assert conversation.headers == {
        "Offstage-Conversation": conversation.id, "Offstage-Delivery": "silent",
        "Offstage-Piggyback": "off",
    }
    kept = Conversation(offstage.base, token="t", piggyback=True).headers
    assert kept == {"Offstage-Conversation": kept["Offstage-Conversation"],
                    "Authorization": "Bearer t"}
    assert conversation.mcp_url == f"{offstage.base}/mcp"
    assert Conversation(offstage.base, profile="voice").mcp_url == f"{offstage.base}/mcp/voice"
    assert Conversation(offstage.base).id != conversation.id, "a fresh id each time"

    async with conversation:
        job = await call(offstage, conversation, "a red fox")
        with anyio.fail_after(15):
            ending = await conversation.wait(job)
    assert ending.ended and ending.job["job_id"] == job
    assert ending.body["conversation"] == conversation.id
    assert ending.body["delivery"] == "when_idle", "the start_job helper sends no delivery header"


async def test_each_ending_is_handed_out_once_to_waiters_and_readers(offstage: Offstage) -> None:
    async with Conversation(offstage.base) as conversation:
        first = await call(offstage, conversation, "a heron")
        with anyio.fail_after(15):
            early = await conversation.wait(first)
        # Asked again after it ended: the same ending, at once.
        assert await conversation.wait(first) is early

        readers: list[list[Event]] = [[], []]
        jobs = [first] + [await call(offstage, conversation, f"a crane {n}") for n in range(3)]

        async def read(into: list[Event]) -> None:
            async for ending in conversation.endings():
                into.append(ending)
                if len(into) == len(jobs):
                    return

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for into in readers:
                    group.start_soon(read, into)
                waited = [await conversation.wait(job) for job in jobs]

    # Both readers get every ending once, in the same (event) order, and it is the ending the
    # waiters got; the one that ended before the readers started is not left out (after=0).
    first_reader, second_reader = ([event.id for event in into] for into in readers)
    assert first_reader == second_reader == sorted(first_reader)
    assert sorted(first_reader) == sorted(event.id for event in waited)
    assert {event.job["job_id"] for event in readers[0]} == set(jobs)


async def test_a_restart_of_offstage_loses_no_ending(offstage: Offstage) -> None:
    async with Conversation(offstage.base, backoff_initial=0.2) as conversation:
        jobs = [await call(offstage, conversation, f"burst {n}") for n in range(3)]
        offstage.restart()
        jobs += [await call(offstage, conversation, f"burst {n}") for n in range(3, 6)]
        seen: list[str] = []
        with anyio.fail_after(30):
            async for ending in conversation.endings():
                seen.append(ending.job["job_id"])
                if set(seen) >= set(jobs):
                    break
        assert conversation.stream.reconnects >= 1
    assert sorted(seen) == sorted(jobs), "each job's ending once"


async def test_a_refused_token_reaches_the_waiter(offstage_servers) -> None:  # type: ignore[no-untyped-def]
    server = offstage_servers(env={"OFFSTAGE_TOKENS": "right-token"})
    async with Conversation(server.base, token="wrong-token") as conversation:
        with anyio.fail_after(10), pytest.raises(AuthError):
            await conversation.wait("no-such-job")
        with pytest.raises(AuthError):
            await conversation.wait("again")


async def test_a_reader_without_replay_starts_with_the_next_ending(offstage: Offstage) -> None:
    async with Conversation(offstage.base) as conversation:
        old = await call(offstage, conversation, "an old owl")
        with anyio.fail_after(15):
            await conversation.wait(old)
            new = await call(offstage, conversation, "a new owl")
            async for ending in conversation.endings(replay=False):
                assert ending.job["job_id"] == new, "the ending heard before is not replayed"
                break
