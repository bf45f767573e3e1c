"""`offstage_client.gemini_live` with a real `offstage serve`, a real MCP client session and
google-genai's own Live client, connected to a local stand-in for Gemini's websocket
(gemini_live_fake.py) that validates every message against google.genai.types: a job call
answered at once and closed by its final response, scheduled by the delivery hint; a repeated
call closed at once; several calls in one message; a cancelled or blocking call's ending as
client content; when-idle content waiting for the model's turn; endings held across GoAway and
resumption; a burst across a restart of offstage; each ending once."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from google.genai import types
from google.genai.live import AsyncSession
from mcp import ClientSession

from conftest import ROOT, Offstage, binary
from gemini_live_fake import FakeLive, fake_live
from offstage_client import Conversation, Delivery
from offstage_client.gemini_live import GeminiLive, mcp_session

pytestmark = pytest.mark.anyio

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
# Jobs this slow end well after the test's next step (a cancellation, a GoAway).
SLOW = {"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "1500ms"}


@pytest.fixture(scope="module")
def exported() -> types.LiveConnectConfig:
    """The setup's tools as `offstage tools export --format gemini-live` prints them: job tools
    NON_BLOCKING, inline tools BLOCKING."""
    out = subprocess.run([binary(), "tools", "export", "--format", "gemini-live"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return types.LiveConnectConfig(response_modalities=["AUDIO"], tools=json.loads(out))


@pytest.fixture
def slow_offstage(offstage_servers: Callable[..., Offstage]) -> Offstage:
    return offstage_servers(SLOW)


@asynccontextmanager
async def app(
    base: str, delivery: Delivery | None = None
) -> AsyncIterator[tuple[Conversation, GeminiLive, ClientSession]]:
    """What the app holds besides the Live session: the conversation, the adapter, and the MCP
    client session it calls offstage with."""
    conversation = Conversation(base, delivery=delivery)
    async with conversation, GeminiLive(conversation) as live, mcp_session(conversation) as mcp:
        yield conversation, live, mcp


async def converse(live: GeminiLive, session: AsyncSession, mcp: ClientSession) -> None:
    """The app's receive loop (`receive()` ends after each model turn), until a GoAway."""
    while True:
        async for message in session.receive():
            live.observe(message)
            if message.tool_call:
                await live.answer(message.tool_call, mcp)
            if live.going_away:
                return


@asynccontextmanager
async def connected(
    fake: FakeLive, live: GeminiLive, mcp: ClientSession, config: Any
) -> AsyncIterator[AsyncSession]:
    """One Live connection made the way the app makes each one, with its receive loop."""
    live_config = live.connect_config(config)
    async with fake.client().aio.live.connect(model=MODEL, config=live_config) as session:
        live.attach(session)
        loop = asyncio.create_task(converse(live, session, mcp))
        try:
            yield session
        finally:
            if loop.done():
                loop.result()  # a failure in the app's loop fails the test
            loop.cancel()
            with suppress(asyncio.CancelledError):
                await loop


async def eventually(done: Callable[[], bool], within: float = 20.0) -> None:
    async def wait() -> None:
        while not done():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), within)


def job_of(response: types.FunctionResponse) -> str:
    """The job id an immediate answer carries: the placeholder line ends with `job <id>.`."""
    assert response.response is not None
    found = re.search(r"\bjob (\w+)\.?$", response.response["output"])
    assert found, response.response
    return found.group(1)


def text_of(content: types.LiveClientContent) -> str:
    [turn] = content.turns or []
    return "".join(part.text or "" for part in turn.parts or [])


def draw(call_id: str, prompt: str) -> tuple[str, str, dict[str, Any]]:
    return call_id, "generate_image", {"prompt": prompt}


@pytest.mark.parametrize(
    ("delivery", "scheduling"),
    [("interrupt", "INTERRUPT"), ("when_idle", "WHEN_IDLE"), ("silent", "SILENT")],
)
async def test_a_job_call_is_answered_at_once_and_closed_by_its_final_response(
    offstage: Offstage, exported: types.LiveConnectConfig, delivery: Delivery, scheduling: str
) -> None:
    async with fake_live() as fake, app(offstage.base, delivery) as (conversation, live, mcp):
        async with connected(fake, live, mcp, exported):
            await fake.tool_call(draw("call-1", "a red fox"))
            await fake.until(lambda: len(fake.tool_responses()) == 2)
            ending = await conversation.wait(job_of(fake.tool_responses()[0]))

    answer, final = fake.tool_responses()
    assert (answer.id, answer.name, answer.will_continue) == ("call-1", "generate_image", True)
    assert answer.response and "Making the image now" in answer.response["output"]
    assert (final.id, final.name, final.will_continue) == ("call-1", "generate_image", False)
    assert final.scheduling == scheduling
    assert final.response and final.response["output"]["job_id"] == ending.job["job_id"]
    assert final.response["output"]["status"] == "completed"
    # The call id reached offstage with the call, so its payload answers that very call.
    gemini = ending.body["realtime"]["gemini"]
    assert gemini["tool_response"]["toolResponse"]["functionResponses"][0]["id"] == "call-1"
    assert fake.client_contents() == [], "a closed call's result, never also a user turn"
    assert fake.errors == []


async def test_a_repeated_call_is_closed_at_once_and_the_first_gets_the_result(
    slow_offstage: Offstage, exported: types.LiveConnectConfig
) -> None:
    async with fake_live() as fake, app(slow_offstage.base) as (conversation, live, mcp):
        async with connected(fake, live, mcp, exported):
            await fake.tool_call(draw("call-1", "a red fox"))
            await fake.until(lambda: len(fake.tool_responses()) == 1)
            # Realtime models repeat calls; offstage answers with the job under way.
            await fake.tool_call(draw("call-2", "A red  fox"))
            await fake.until(lambda: len(fake.tool_responses()) == 3)
            await asyncio.sleep(0.3)  # time enough to send a second final

    first, repeated, final = fake.tool_responses()
    assert first.will_continue is True
    assert (repeated.id, repeated.will_continue) == ("call-2", None)
    assert repeated.response and "already being made" in repeated.response["output"]
    assert job_of(repeated) == job_of(first)
    assert (final.id, final.will_continue) == ("call-1", False)
    assert fake.client_contents() == []
    assert fake.errors == []


async def test_several_calls_in_one_message_are_answered_together_and_each_closed_once(
    offstage_servers: Callable[..., Offstage], exported: types.LiveConnectConfig
) -> None:
    # Jobs that end at once, so endings arrive while the other calls are still being answered.
    instant = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "0ms"})
    calls = [f"call-{n}" for n in range(4)]
    async with fake_live() as fake, app(instant.base) as (conversation, live, mcp):
        async with connected(fake, live, mcp, exported):
            await fake.tool_call(*(draw(call, f"instant {n}") for n, call in enumerate(calls)))
            await fake.until(lambda: len(fake.tool_responses()) == 8)
            await asyncio.sleep(0.3)  # time enough to send one twice

    answers, finals = fake.tool_responses()[:4], fake.tool_responses()[4:]
    assert [(r.id, r.will_continue) for r in answers] == [(c, True) for c in calls]
    assert sorted((r.id, r.will_continue) for r in finals) == [(c, False) for c in calls]
    assert fake.client_contents() == []
    assert fake.errors == []


async def test_a_cancelled_call_gets_its_ending_as_client_content(
    slow_offstage: Offstage, exported: types.LiveConnectConfig
) -> None:
    async with fake_live() as fake, app(slow_offstage.base) as (conversation, live, mcp):
        async with connected(fake, live, mcp, exported):
            await fake.tool_call(draw("call-1", "a heron"))
            await fake.until(lambda: len(fake.tool_responses()) == 1)
            [answer] = fake.tool_responses()
            assert answer.will_continue is True
            # The user spoke over the model: Gemini drops the call.
            await fake.cancel("call-1")
            await fake.until(lambda: bool(fake.client_contents()))
            await conversation.wait(job_of(answer))

    [content] = fake.client_contents()
    assert f"[offstage job {job_of(answer)} completed]" in text_of(content.message)
    assert content.message.turn_complete is True
    assert len(fake.tool_responses()) == 1, "no final answer to a cancelled call"
    assert fake.errors == []


@pytest.mark.parametrize(("delivery", "waits"), [("when_idle", True), ("interrupt", False)])
async def test_client_content_waits_for_the_model_to_finish_unless_it_interrupts(
    offstage: Offstage, delivery: Delivery, waits: bool
) -> None:
    async with fake_live(model_turns=False) as fake, app(offstage.base, delivery) as (
        conversation, live, mcp,
    ):
        # Tools from the MCP session, as the docs/stacks.md snippet declares them: no NON_BLOCKING, so
        # the immediate answer closes the call and the ending is a user turn.
        async with connected(fake, live, mcp, {"tools": [mcp], "response_modalities": ["AUDIO"]}):
            await fake.speak("Let me draw that for you.")
            await fake.tool_call(draw("call-1", "a lighthouse"))
            await fake.until(lambda: len(fake.tool_responses()) == 1)
            [answer] = fake.tool_responses()
            assert not answer.will_continue
            job = job_of(answer)
            await conversation.wait(job)
            if waits:
                await asyncio.sleep(0.3)  # time enough to send it too early
                assert fake.client_contents() == [], "sent while the model was speaking"
                await fake.turn_complete()
            await fake.until(lambda: bool(fake.client_contents()))

    [content] = fake.client_contents()
    assert f"[offstage job {job} completed]" in text_of(content.message)
    assert content.message.turn_complete is True
    assert content.while_speaking is not waits
    assert fake.errors == []


async def test_endings_during_a_go_away_reach_the_resumed_session_once(
    slow_offstage: Offstage, exported: types.LiveConnectConfig
) -> None:
    async with fake_live() as fake, app(slow_offstage.base) as (conversation, live, mcp):
        async with connected(fake, live, mcp, exported):
            handle = await fake.issue_handle()
            await fake.tool_call(draw("call-1", "a fox"), draw("call-2", "an owl"))
            await fake.until(lambda: len(fake.tool_responses()) == 2)
            assert all(answer.will_continue for answer in fake.tool_responses())
            jobs = [job_of(answer) for answer in fake.tool_responses()]
            # While the calls run, Gemini's state is not resumable: the handle stays the first.
            await fake.issue_handle(resumable=False)
            await fake.go_away()
            await eventually(lambda: live.going_away)
            for job in jobs:
                await conversation.wait(job)
            await asyncio.sleep(0.3)  # time enough to send them to the session going away
        assert not [r for r in fake.received if r.after_go_away], "nothing sent after GoAway"
        assert live.resumption_handle == handle

        async with connected(fake, live, mcp, exported):
            assert fake.connections[-1].setup["sessionResumption"] == {"handle": handle}
            # The second waits for the model's answer to the first.
            await fake.until(lambda: len(fake.client_contents()) == 2)
            await asyncio.sleep(0.3)  # time enough to send one twice

    contents = fake.client_contents()
    assert {content.connection for content in contents} == {2}
    assert not [c for c in contents if c.while_speaking], "a when_idle turn cut the model off"
    texts = [text_of(content.message) for content in contents]
    assert sorted(jobs) == sorted(job for job in jobs for text in texts if job in text)
    # The calls died with the first connection: the fake refuses answers to them on the second.
    assert len(fake.tool_responses()) == 2
    assert fake.errors == []


async def test_a_restart_of_offstage_in_the_middle_of_a_burst_closes_each_call_once(
    offstage: Offstage, exported: types.LiveConnectConfig
) -> None:
    calls = [f"call-{n}" for n in range(8)]

    def closed() -> list[str]:
        return [r.id or "" for r in fake.tool_responses() if r.will_continue is False]

    async with fake_live() as fake, app(offstage.base) as (conversation, live, mcp):
        async with connected(fake, live, mcp, exported):
            for n, call in enumerate(calls[:4]):
                await fake.tool_call(draw(call, f"burst {n}"))
            await fake.until(lambda: len(fake.tool_responses()) >= 4)
            assert len(closed()) < 4, "the restart should come mid-burst"
            await asyncio.to_thread(offstage.restart)
            for n, call in enumerate(calls[4:], start=4):
                await fake.tool_call(draw(call, f"burst {n}"))
            await fake.until(lambda: set(closed()) == set(calls), within=40)
            await asyncio.sleep(0.3)  # time enough to send one twice
        assert conversation.stream.reconnects >= 1, "the restart ended the event stream"

    assert sorted(closed()) == sorted(calls)
    finals = [r for r in fake.tool_responses() if r.will_continue is False]
    assert all(r.response and r.response["output"]["status"] == "completed" for r in finals)
    assert fake.client_contents() == []
    assert fake.errors == []


async def test_answering_before_a_session_is_attached_says_what_to_do(offstage: Offstage) -> None:
    async with app(offstage.base) as (_, live, mcp):
        call = types.LiveServerToolCall(function_calls=[types.FunctionCall(id="c", name="x")])
        with pytest.raises(RuntimeError, match=r"live\.attach\(session\)"):
            await live.answer(call, mcp)
    with pytest.raises(RuntimeError, match="async with GeminiLive"):
        live.attach(None)
