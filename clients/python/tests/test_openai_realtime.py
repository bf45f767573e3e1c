"""`OpenAIRealtime` with the real `openai` SDK connection against a local stand-in of the Realtime
websocket (tests/openai_realtime_fake.py, which checks every client event against the SDK's
`RealtimeClientEventParam`) and a real `offstage serve`, jobs started the way OpenAI's own MCP
client starts them from `mcp_tool`'s entry: a job arrives as its item, then `response.create`;
nothing goes while a response is active; `interrupt` cancels only an active response; `silent`
asks for no response; a `response.create` refused in the VAD race is sent once more after that
response ends, also when the adapter never saw it begin; a session the SDK reconnected to gets
the next job; `inline_images` sends the bytes offstage serves; a burst across a restart of
offstage reaches the socket once per job, in event order; and a refused token reaches the app's
event loop."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeServerEvent
from openai.types.realtime.realtime_tools_config_union_param import Mcp

from conftest import Offstage
from helpers import replay
from offstage_client import AuthError, Conversation, Event
from offstage_client.openai_realtime import OpenAIRealtime, mcp_tool
from openai_realtime_fake import FakeRealtime, Json

pytestmark = pytest.mark.anyio

BARRIERS = itertools.count(1)


@dataclass
class Session:
    """One realtime session as the app holds it: the connection, the adapter, and every server
    event the app's own loop received through `offstage.events()`."""

    connection: AsyncRealtimeConnection
    offstage: OpenAIRealtime
    fake: FakeRealtime
    seen: list[RealtimeServerEvent] = field(default_factory=list)

    async def settle(self) -> None:
        """Gives the adapter a moment to act on what it holds (a wrong one would send now),
        then a barrier: the app's own event reaches the fake after all the adapter sent
        before it (both share one websocket), and the app reads every server event up to the
        fake's answer to it, so the adapter has observed them all."""
        await anyio.sleep(0.3)
        barrier = f"barrier_{next(BARRIERS)}"
        await self.connection.input_audio_buffer.clear(event_id=barrier)
        await self.fake.wait_for(lambda got: any(e.get("event_id") == barrier for e in got))
        sent = len(self.fake.sent)
        with anyio.fail_after(10):
            while len(self.seen) < sent:
                await anyio.sleep(0.02)


@asynccontextmanager
async def session(
    fake: FakeRealtime, conversation: Conversation, **options: Any
) -> AsyncIterator[Session]:
    """The app: connects with the SDK, enters the adapter, and reads `offstage.events()`."""
    async with fake.client().realtime.connect(model="gpt-realtime") as connection, \
            adapted(connection, conversation, fake, **options) as held:
        yield held


@asynccontextmanager
async def adapted(
    connection: AsyncRealtimeConnection, conversation: Conversation, fake: FakeRealtime,
    **options: Any,
) -> AsyncIterator[Session]:
    """The app's part once connected: the adapter entered, `offstage.events()` read."""
    async with OpenAIRealtime(connection, conversation, **options) as offstage:
        held = Session(connection, offstage, fake)

        async def read() -> None:
            async for event in offstage.events():
                held.seen.append(event)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            yield held
        finally:
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader


async def call_as_openai(tool: Mcp, prompt: str, name: str = "generate_image") -> str:
    """A tool call made the way OpenAI's MCP client makes it from the `mcp` tool entry: its
    `server_url`, its `headers` and its `authorization` as the bearer token. Returns the job id."""
    headers = dict(tool.get("headers") or {})
    if "authorization" in tool:
        headers["Authorization"] = f"Bearer {tool['authorization']}"
    arguments = {"prompt": prompt} if name == "generate_image" else {"job_id": prompt}
    async with httpx2.AsyncClient(headers=headers, timeout=10) as http, \
            streamable_http_client(tool["server_url"], http_client=http) as (read, write), \
            ClientSession(read, write) as mcp:
        await mcp.initialize()
        result = await mcp.call_tool(name, arguments)
    assert not result.is_error, result
    return str(result.structured_content["job_id"])


def sent_for(fake: FakeRealtime, job: str) -> list[str]:
    """The types of the client events carrying `job`'s event ids, in the order received."""
    prefix = f"offstage_{job}_"
    return [e["type"] for e in fake.received if e.get("event_id", "").startswith(prefix)]


def ending_payload(ending: Event) -> list[Json]:
    realtime = ending.body.get("realtime")
    assert realtime is not None, ending.body
    return list(realtime["openai"])


async def test_a_job_reaches_the_socket_as_its_item_then_response_create(
    offstage_servers: Callable[..., Offstage],
) -> None:
    secured = offstage_servers({"OFFSTAGE_TOKENS": "secret-token"})
    conversation = Conversation(secured.base, token="secret-token")
    tool = mcp_tool(conversation)
    assert tool == {
        "type": "mcp", "server_label": "offstage", "server_url": f"{secured.base}/mcp",
        "authorization": "secret-token", "require_approval": "never",
        "headers": {"Offstage-Conversation": conversation.id, "Offstage-Piggyback": "off"},
    }
    async with conversation, FakeRealtime() as fake, session(fake, conversation) as app:
        await app.connection.session.update(session={"type": "realtime", "tools": [tool]})
        job = await call_as_openai(tool, "a red fox")
        with anyio.fail_after(15):
            ending = await conversation.wait(job)
        await fake.wait_for(lambda got: len(sent_for(fake, job)) == 2)
        await app.settle()

    barriers = fake.of_type("input_audio_buffer.clear")
    assert [e["type"] for e in fake.received if e not in barriers] == [
        "session.update", "conversation.item.create", "response.create",
    ]
    assert fake.received[0]["session"]["tools"] == [tool], "the tool entry as sent"
    # offstage's own messages, as they are: the SDK's send changed nothing on the way.
    assert fake.received[1:3] == ending_payload(ending)
    item = fake.received[1]["item"]
    assert item["content"][1] == {"type": "input_image", "image_url": ending.job["image_url"]}
    assert f"[offstage job {job} completed]" in item["content"][0]["text"]
    # The app saw every server event the fake sent, each once, in order.
    assert [event.event_id for event in app.seen] == [event["event_id"] for event in fake.sent]
    assert {"session.created", "response.created", "response.done"} <= {e.type for e in app.seen}


async def test_nothing_is_sent_while_a_response_is_active(offstage: Offstage) -> None:
    async with Conversation(offstage.base) as conversation, FakeRealtime() as fake, \
            session(fake, conversation) as app:
        await fake.start_response()  # the model is speaking (server VAD started it)
        await app.settle()  # the adapter has seen response.created
        job = await call_as_openai(mcp_tool(conversation), "a heron")
        with anyio.fail_after(15):
            while job not in app.offstage.pending:
                await anyio.sleep(0.02)
        await app.settle()
        assert sent_for(fake, job) == [], "sent during an active response"

        await fake.finish_response()
        await fake.wait_for(lambda got: len(sent_for(fake, job)) == 2)

    assert sent_for(fake, job) == ["conversation.item.create", "response.create"]
    kinds = [event["type"] for side, event in fake.log]
    assert kinds.index("response.done") < kinds.index("conversation.item.create")
    assert not [e for side, e in fake.log if e["type"] == "error"]


async def test_interrupt_cancels_first_only_when_a_response_is_active(offstage: Offstage) -> None:
    async with Conversation(offstage.base, delivery="interrupt") as conversation, \
            FakeRealtime() as fake, session(fake, conversation) as app:
        tool = mcp_tool(conversation)
        assert tool["headers"] == {"Offstage-Conversation": conversation.id, "Offstage-Piggyback": "off",
                                   "Offstage-Delivery": "interrupt"}
        idle_job = await call_as_openai(tool, "an idle owl")
        await fake.wait_for(lambda got: len(sent_for(fake, idle_job)) == 2)

        await fake.start_response()
        await app.settle()
        busy_job = await call_as_openai(tool, "a busy owl")
        await fake.wait_for(lambda got: len(sent_for(fake, busy_job)) == 3)
        await app.settle()

    assert sent_for(fake, idle_job) == ["conversation.item.create", "response.create"]
    assert sent_for(fake, busy_job) == [
        "response.cancel", "conversation.item.create", "response.create",
    ]
    # The item went only once the cancelled response had ended, and nothing was refused.
    kinds = [(side, e["type"], e.get("response", {}).get("status")) for side, e in fake.log]
    cancel = kinds.index(("client", "response.cancel", None))
    assert kinds[cancel + 1] == ("server", "response.done", "cancelled")
    assert kinds[cancel + 2] == ("client", "conversation.item.create", None)
    assert not [e for side, e in fake.log if e["type"] == "error"]


async def test_silent_sends_the_item_only_even_during_a_response(offstage: Offstage) -> None:
    async with Conversation(offstage.base, delivery="silent") as conversation, \
            FakeRealtime() as fake, session(fake, conversation) as app:
        await fake.start_response()
        await app.settle()
        job = await call_as_openai(mcp_tool(conversation), "a quiet moth")
        await fake.wait_for(lambda got: len(sent_for(fake, job)) == 1)
        assert fake.active is not None, "the item went while the response was active"
        await app.settle()
        await fake.finish_response()
        await app.settle()

    assert sent_for(fake, job) == ["conversation.item.create"]
    assert not fake.of_type("response.create")


async def test_a_create_refused_in_the_vad_race_is_sent_again_once_after_that_response(
    offstage: Offstage,
) -> None:
    async with Conversation(offstage.base) as conversation, FakeRealtime() as fake, \
            session(fake, conversation) as app:
        # The server starts a response on its own just as the adapter's response.create
        # arrives, and refuses the request, naming its event_id.
        fake.race_next_create = True
        job = await call_as_openai(mcp_tool(conversation), "a racing hare")
        create = f"offstage_{job}_response"
        await fake.wait_for(lambda got: len(sent_for(fake, job)) == 2)
        await app.settle()
        refusals = [e for side, e in fake.log if e["type"] == "error"]
        assert [(e["error"]["code"], e["error"]["event_id"]) for e in refusals] == [
            ("conversation_already_has_active_response", create),
        ]
        assert sent_for(fake, job) == ["conversation.item.create", "response.create"]

        await fake.finish_response()  # the server's own response ends
        await fake.wait_for(lambda got: len(sent_for(fake, job)) == 3)
        await app.settle()

    assert sent_for(fake, job) == ["conversation.item.create", "response.create", "response.create"]
    first_done = next(i for i, (side, e) in enumerate(fake.log) if e["type"] == "response.done")
    creates = [i for i, (side, e) in enumerate(fake.log) if e.get("event_id") == create]
    assert creates[0] < first_done < creates[1], "sent again only after that response.done"
    assert len([e for side, e in fake.log if e["type"] == "error"]) == 1, "taken the second time"
    assert len(fake.of_type("response.create")) == 2


async def test_a_response_begun_before_the_adapter_is_waited_for_after_the_refusal(
    offstage: Offstage,
) -> None:
    async with Conversation(offstage.base) as conversation, FakeRealtime() as fake, \
            fake.client().realtime.connect(model="gpt-realtime") as connection:
        # The app read the first events itself, before it entered the adapter: the adapter
        # never saw this response begin.
        first = [await connection.recv()]
        await fake.start_response()
        first.append(await connection.recv())
        assert [event.type for event in first] == ["session.created", "response.created"]
        async with adapted(connection, conversation, fake) as app:
            app.seen.extend(first)
            job = await call_as_openai(mcp_tool(conversation), "a late swift")
            await fake.wait_for(lambda got: len(sent_for(fake, job)) == 2)
            await app.settle()
            # Refused, and not asked again until a response has ended.
            assert sent_for(fake, job) == ["conversation.item.create", "response.create"]

            await fake.finish_response()
            await fake.wait_for(lambda got: len(sent_for(fake, job)) == 3)
            await app.settle()

    assert sent_for(fake, job) == ["conversation.item.create", "response.create", "response.create"]
    assert len([e for side, e in fake.log if e["type"] == "error"]) == 1


async def test_after_the_sdk_reconnects_the_new_session_gets_the_next_job(
    offstage: Offstage,
) -> None:
    async with Conversation(offstage.base) as conversation, FakeRealtime() as fake:
        connect = fake.client().realtime.connect(
            model="gpt-realtime", on_reconnecting=lambda attempt: None, initial_delay=0.1
        )
        async with connect as connection, adapted(connection, conversation, fake) as app:
            tool = mcp_tool(conversation)
            fake.hold = True
            first = await call_as_openai(tool, "a dropped kite")
            await fake.wait_for(lambda got: len(sent_for(fake, first)) == 2)
            fake.hold = False
            # The socket goes while that response runs; its response.done never comes.
            await fake.drop()
            second = await call_as_openai(tool, "a second kite")
            await fake.wait_for(lambda got: len(sent_for(fake, second)) == 2)
            await app.settle()

    assert fake.connections == 2
    assert [event.type for event in app.seen].count("session.created") == 2
    assert sent_for(fake, second) == ["conversation.item.create", "response.create"]


async def test_inline_images_sends_the_png_offstage_serves_as_a_data_uri(
    offstage_servers: Callable[..., Offstage],
) -> None:
    # Slow enough that a job is still working when it is cancelled.
    slow = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "20s"})
    fast = offstage_servers()
    for server, done in [(fast, "completed"), (slow, "cancelled")]:
        async with Conversation(server.base) as conversation, FakeRealtime() as fake, \
                session(fake, conversation, inline_images=True) as app:
            tool = mcp_tool(conversation)
            job = await call_as_openai(tool, f"a {done} lighthouse")
            if done == "cancelled":
                await call_as_openai(tool, job, name="cancel_job")
            with anyio.fail_after(15):
                ending = await conversation.wait(job)
            await fake.wait_for(lambda got: len(sent_for(fake, job)) == 2)
            await app.settle()
        assert ending.job["status"] == done
        item = fake.of_type("conversation.item.create")[0]["item"]
        expected = ending_payload(ending)[0]["item"]
        assert item["content"][0] == expected["content"][0], "the text goes as it is"
        if done == "cancelled":
            assert item == expected, "a cancelled job has no image part to inline"
            continue
        async with httpx2.AsyncClient() as http:
            served = await http.get(f"{server.base}/v1/jobs/{job}/image")
        assert served.headers["content-type"] == "image/png"
        image = item["content"][1]
        prefix = "data:image/png;base64,"
        assert image["type"] == "input_image" and image["image_url"].startswith(prefix)
        assert base64.b64decode(image["image_url"][len(prefix):]) == served.content
        assert served.content.startswith(b"\x89PNG"), "the final image, not a placeholder"


async def test_a_burst_across_a_restart_reaches_the_socket_once_each_in_event_order(
    offstage: Offstage,
) -> None:
    async with Conversation(offstage.base, backoff_initial=0.2) as conversation, \
            FakeRealtime() as fake, session(fake, conversation) as app:
        tool = mcp_tool(conversation)
        jobs = [await call_as_openai(tool, f"burst {n}") for n in range(3)]
        # Deliveries on both sides of the restart: one before, the last three after.
        await fake.wait_for(lambda got: len(fake.of_type("response.create")) >= 1)
        offstage.restart()
        jobs += [await call_as_openai(tool, f"burst {n}") for n in range(3, 6)]
        await fake.wait_for(lambda got: len(fake.of_type("response.create")) >= len(jobs), 40)
        await app.settle()
        assert conversation.stream.reconnects >= 1, "the restart ended the stream"

    assert conversation.last_id is not None
    followed = await replay(offstage.base, conversation.id, conversation.last_id)
    by_event = [event.job["job_id"] for event in followed if event.ended]
    assert sorted(by_event) == sorted(jobs), "each job ended once"
    delivered = [e["event_id"].removeprefix("offstage_").removesuffix("_item")
                 for e in fake.of_type("conversation.item.create")]
    assert delivered == by_event, "each job's item once, in event order"
    assert [e["event_id"] for e in fake.of_type("response.create")] == [
        f"offstage_{job}_response" for job in by_event
    ]
    # One response at a time: each request came after the previous response ended.
    assert not [e for side, e in fake.log if e["type"] == "error"]


async def test_a_refused_token_reaches_the_app_through_its_event_loop(
    offstage_servers: Callable[..., Offstage],
) -> None:
    secured = offstage_servers({"OFFSTAGE_TOKENS": "secret-token"})
    async with Conversation(secured.base, token="wrong-token") as conversation, \
            FakeRealtime() as fake, \
            fake.client().realtime.connect(model="gpt-realtime") as connection, \
            OpenAIRealtime(connection, conversation) as offstage:
        with anyio.fail_after(10), pytest.raises(AuthError):
            async for _ in offstage.events():
                # Each event the app reads brings one more (the fake answers the clear).
                await anyio.sleep(0.05)
                await connection.input_audio_buffer.clear()


def test_mcp_tool_refuses_a_server_url_that_is_not_http() -> None:
    conversation = Conversation("http://127.0.0.1:8787", delivery="silent")
    with pytest.raises(ValueError, match="https://offstage.example.com/mcp"):
        mcp_tool(conversation, server_url="offstage.example.com/mcp")
    tool = mcp_tool(conversation, server_url="https://offstage.example.com/mcp")
    assert tool["server_url"] == "https://offstage.example.com/mcp"
    assert "authorization" not in tool, "no token, no authorization"
    assert tool["headers"] == {"Offstage-Conversation": conversation.id, "Offstage-Piggyback": "off",
                               "Offstage-Delivery": "silent"}
