"""`EventStream` against real `offstage serve` processes: a job's events in order for its
conversation, nothing lost or repeated across a restart, a switch of instance, a silent stream
or a cancelled wait, closing from another task, and refusals raised at once."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from conftest import Offstage
from helpers import assert_increasing, ended_jobs, read_until, replay, start_job, summary
from offstage_client import AuthError, Event, EventBody, EventStream, JobView, NotFoundError

pytestmark = pytest.mark.anyio


async def test_a_jobs_events_arrive_in_order_for_its_conversation(offstage: Offstage) -> None:
    await start_job(offstage.base, "a heron", "call-elsewhere")
    async with EventStream(offstage.base, conversation="call-order") as stream:
        job = await start_job(offstage.base, "a red fox", "call-order")
        events = await read_until(stream, [], lambda seen: job in ended_jobs(seen), 15)

    assert {event.job["job_id"] for event in events} == {job}, "only this conversation's job"
    kinds = [event.type for event in events]
    assert kinds[0] == "job.created" and kinds[-1] == "job.completed", kinds
    assert set(kinds[1:-1]) <= {"job.progress"}, kinds
    assert_increasing(events)
    for event in events:
        assert event.body["conversation"] == "call-order"
        # The generated types describe what the server sends: every required key, nothing else.
        assert EventBody.__required_keys__ <= set(event.body) <= set(EventBody.__annotations__)
        assert JobView.__required_keys__ <= set(event.job) <= set(JobView.__annotations__)
    done = events[-1]
    assert done.ended and done.job["status"] == "completed"
    assert done.body["say"] and done.body["realtime"], done.body


async def test_a_restart_in_the_middle_of_a_burst_loses_and_repeats_nothing(
    offstage: Offstage,
) -> None:
    conversation = "call-burst"
    # The first reconnect comes 1-2 s after the drop. By then the restarted server has
    # committed events of the jobs started after it came back, which only a resume by id
    # delivers: a stream that came back live would miss them.
    stream = EventStream(offstage.base, conversation=conversation, backoff_initial=2.0)
    async with stream:
        jobs = [await start_job(offstage.base, f"burst {n}", conversation) for n in range(4)]
        seen = await read_until(stream, [], lambda events: len(events) >= 4, 10)
        assert not ended_jobs(seen) >= set(jobs), "the restart should come mid-burst"
        offstage.restart()
        jobs += [await start_job(offstage.base, f"burst {n}", conversation) for n in range(4, 8)]
        await read_until(stream, seen, lambda events: ended_jobs(events) >= set(jobs), 30)
        assert stream.reconnects >= 1, "the restart ended the stream"

    assert_increasing(seen)
    assert summary(seen) == summary(await replay(offstage.base, conversation, seen[-1].id))
    assert stream.last_id == seen[-1].id


async def test_a_switch_of_instance_mid_stream_loses_and_repeats_nothing(
    offstage_servers: Callable[..., Offstage], postgres_database: str, tmp_path: Path
) -> None:
    # One database and one image store: either instance serves any job.
    env = {"OFFSTAGE_JOBS__LEASE": "1s", "OFFSTAGE_IMAGES__STORE": f"file://{tmp_path}"}
    args = ["--database-url", postgres_database]
    a, b = offstage_servers(env, args), offstage_servers(env, args)
    conversation = "call-instances"
    async with EventStream([a.base, b.base], conversation=conversation) as stream:
        jobs = [
            await start_job(server.base, f"instance {n}", conversation)
            for n, server in enumerate([a, b, a, b, a, b])
        ]
        seen = await read_until(stream, [], lambda events: len(events) >= 6, 10)
        assert stream.base_url == a.base
        a.stop(signal.SIGKILL)
        jobs += [await start_job(b.base, f"instance {n}", conversation) for n in range(6, 9)]
        # A's unfinished jobs end on B once A's lease (1 s) has run out.
        await read_until(stream, seen, lambda events: ended_jobs(events) >= set(jobs), 30)
        assert stream.base_url == b.base and stream.reconnects >= 1

    assert_increasing(seen)
    assert summary(seen) == summary(await replay(b.base, conversation, seen[-1].id))


async def test_keep_alives_hold_a_quiet_stream_and_silence_reconnects_it(
    offstage_servers: Callable[..., Offstage], caplog: pytest.LogCaptureFixture
) -> None:
    server = offstage_servers({"OFFSTAGE_PUSH__KEEP_ALIVE": "1s"})
    conversation = "call-quiet"
    seen: list[Event] = []

    async def until(done: Callable[[], bool]) -> None:
        with anyio.fail_after(15):
            while not done():
                await anyio.sleep(0.05)

    stream = EventStream(server.base, conversation=conversation, silence_timeout=2.5,
                         backoff_initial=0.2, backoff_max=1.0)
    async with stream, anyio.create_task_group() as tasks:

        async def follow() -> None:
            async for event in stream:
                seen.append(event)

        tasks.start_soon(follow)
        first = await start_job(server.base, "a quiet pond", conversation)
        await until(lambda: first in ended_jobs(seen))
        # Longer than the silence timeout without an event, but a comment every second.
        await anyio.sleep(4)
        assert stream.reconnects == 0, "keep-alive comments keep a quiet stream open"
        # A frozen server keeps the connection open and sends nothing: a dead stream.
        server.pause()
        await anyio.sleep(4)
        server.resume()
        second = await start_job(server.base, "a loud waterfall", conversation)
        await until(lambda: second in ended_jobs(seen))
        assert stream.reconnects >= 1
        tasks.cancel_scope.cancel()

    assert any("nothing arrived for 2.5 s" in record.getMessage() for record in caplog.records)
    assert_increasing(seen)
    assert summary(seen) == summary(await replay(server.base, conversation, seen[-1].id))


async def test_a_cancelled_wait_for_the_next_event_loses_nothing(offstage: Offstage) -> None:
    async with EventStream(offstage.base, conversation="call-waits") as stream:
        with anyio.move_on_after(0.5):
            await stream.__anext__()
            pytest.fail("no event yet")
        job = await start_job(offstage.base, "a patient owl", "call-waits")
        events = await read_until(stream, [], lambda seen: job in ended_jobs(seen), 15)
    assert events[0].type == "job.created" and events[-1].type == "job.completed"
    assert_increasing(events)


async def test_closing_from_another_task_ends_the_iteration_there(offstage: Offstage) -> None:
    stream = EventStream(offstage.base, conversation="call-hang-up")
    ended = anyio.Event()

    async def follow() -> None:
        async for _ in stream:
            pass
        ended.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(follow)
        await anyio.sleep(0.5)
        await stream.close()
        with anyio.fail_after(2):
            await ended.wait()


@pytest.fixture
def secured(offstage_servers: Callable[..., Offstage]) -> Offstage:
    return offstage_servers({"OFFSTAGE_TOKENS": "secret-token"})


@pytest.mark.parametrize("token", ["wrong-token", None])
async def test_a_refused_token_raises_auth_error_at_once(secured: Offstage, token: str | None):
    # A retry would wait at least 2.5 s (half of backoff_initial): the limit allows none.
    with anyio.fail_after(2), pytest.raises(AuthError) as refused:
        async with EventStream(secured.base, token=token, backoff_initial=5.0) as stream:
            await stream.__anext__()
    assert refused.value.status == 401 and refused.value.code == "unauthorized"


async def test_the_right_token_follows_its_own_jobs(secured: Offstage) -> None:
    token = "secret-token"
    async with EventStream(secured.base, token=token, conversation="call-auth") as stream:
        job = await start_job(secured.base, "a locked door", "call-auth", token=token)
        events = await read_until(stream, [], lambda seen: job in ended_jobs(seen), 15)
    assert events[-1].type == "job.completed"


async def test_an_address_without_offstage_raises_not_found_at_once(offstage: Offstage) -> None:
    with anyio.fail_after(2), pytest.raises(NotFoundError) as refused:
        async with EventStream(f"{offstage.base}/elsewhere", backoff_initial=5.0) as stream:
            await stream.__anext__()
    assert refused.value.status == 404
