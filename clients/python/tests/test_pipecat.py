"""`OffstageMCP` in a real pipecat pipeline (context aggregators, `OpenAILLMService` on a local
chat-completions server, pipecat's `MCPClient` on a real `offstage serve`): a job's placeholder
reaches the LLM at once and its ending later, with no user turn in between; an interruption does
not cancel the call; a cancelled job reaches the context as its error sentence; across a restart
of offstage in the middle of a burst, each job's ending reaches the context exactly once."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    InterruptionFrame,
    LLMMessagesAppendFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators import async_tool_messages
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.workers.runner import WorkerRunner

from conftest import Offstage
from offstage_client import Conversation
from offstage_client.pipecat import OffstageMCP
from fake_chat import Messages, ScriptedChat, ToolCall

pytestmark = pytest.mark.anyio

# Jobs that outlast the steps a test takes while they work (an interruption, a cancel).
SLOW = {"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "3s"}


class Recorder(FrameProcessor):
    """The pipeline's last processor: keeps every frame that reaches the end."""

    def __init__(self, into: list[Frame]) -> None:
        super().__init__()
        self.into = into

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.into.append(frame)
        await self.push_frame(frame, direction)


class Bot:
    """A pipecat bot minus audio: user aggregator, LLM, assistant aggregator, as a voice app
    builds it, with offstage's tools from `OffstageMCP` in its context."""

    def __init__(self, offstage: OffstageMCP, model: ScriptedChat) -> None:
        self.offstage = offstage
        self.model = model
        self.frames: list[Frame] = []

    async def __aenter__(self) -> Bot:
        self.context = context = LLMContext(tools=await self.offstage.tools())
        llm = OpenAILLMService(api_key="sk-test", base_url=self.model.base_url)
        pair = LLMContextAggregatorPair(context)
        pipeline = Pipeline([pair.user(), llm, pair.assistant(), Recorder(self.frames)])
        self.worker = PipelineWorker(pipeline, cancel_on_idle_timeout=False)
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def on_started(worker: PipelineWorker, frame: Frame) -> None:
            started.set()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        self.running = asyncio.get_running_loop().create_task(runner.run())
        with anyio.fail_after(10):
            await started.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.worker.queue_frame(EndFrame())
        with anyio.fail_after(20):
            await self.running

    async def say(self, text: str) -> None:
        """A user turn, as the STT and user aggregator would hand it on."""
        message = {"role": "user", "content": text}
        await self.worker.queue_frame(LLMMessagesAppendFrame(messages=[message], run_llm=True))


# -- reading the LLM context a request carried ------------------------------------------------


def calls(messages: Messages, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(tool call id, arguments) of each call of `name` the model made, in order."""
    return [
        (call["id"], json.loads(call["function"]["arguments"]))
        for message in messages if message["role"] == "assistant"
        for call in message.get("tool_calls") or []
        if call["function"]["name"] == name
    ]


def results(messages: Messages, call_id: str, kind: str) -> list[str]:
    """The text of each `intermediate` or `final` result of one async call (developer
    messages), or with `in_place`, the tool message that settled it as a plain result."""
    found = []
    for message in messages:
        payload = async_tool_messages.parse_message(message)
        if payload is not None and payload.tool_call_id == call_id and payload.kind == kind:
            assert payload.result is not None
            found.append(json.loads(payload.result))
        elif (kind == "in_place" and payload is None and message["role"] == "tool"
              and message["tool_call_id"] == call_id):
            found.append(json.loads(message["content"]))
    return found


def user_turns(messages: Messages) -> list[str]:
    return [message["content"] for message in messages if message["role"] == "user"]


def has(call_id: str, kind: str) -> Callable[[Messages], bool]:
    return lambda messages: bool(results(messages, call_id, kind))


def made(count: int) -> Callable[[Messages], bool]:
    return lambda messages: len(calls(messages, "generate_image")) == count


def job_of(placeholder: str) -> str:
    found = re.search(r"; job ([0-9a-z]+)\.$", placeholder)
    assert found, f"not a job placeholder: {placeholder!r}"
    return found.group(1)


async def job_status(offstage: Offstage, job: str) -> str:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{offstage.base}/v1/jobs/{job}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


# -- the tests ----------------------------------------------------------------------------------


async def test_the_placeholder_lets_the_llm_carry_on_and_the_image_comes_back_by_itself(
    offstage: Offstage,
) -> None:
    draw = [ToolCall("generate_image", {"prompt": "a red fox"})]
    conversation = Conversation(offstage.base)
    async with ScriptedChat({"Draw me a red fox": draw}) as model, \
            Bot(OffstageMCP(conversation), model) as bot:
        await bot.say("Draw me a red fox")
        asked = await model.wait_for(lambda messages: bool(calls(messages, "generate_image")), 15)
        [(call_id, arguments)] = calls(asked, "generate_image")
        assert arguments == {"prompt": "a red fox"}

        # The next request carries the placeholder, and not yet the image.
        carried_on = await model.wait_for(has(call_id, "intermediate"), 15)
        [placeholder] = results(carried_on, call_id, "intermediate")
        assert placeholder.startswith("Making the image now"), placeholder
        assert not results(carried_on, call_id, "final")
        job = job_of(placeholder)

        told = await model.wait_for(has(call_id, "final"), 15)
        ending = await conversation.wait(job)

    assert ending.type == "job.completed"
    assert ending.body["conversation"] == conversation.id, "the MCP calls carry its header"
    [final] = results(told, call_id, "final")
    image_url = ending.job["image_url"]
    assert image_url and image_url.startswith(f"{offstage.base}/v1/jobs/{job}/image")
    assert final == f"{ending.body['say']} Image: {image_url}"
    assert "is ready" in final
    assert user_turns(told) == ["Draw me a red fox"], "no user turn brought the ending in"
    assert model.requests.index(carried_on) < model.requests.index(told)


async def test_an_interruption_does_not_cancel_the_call_and_its_result_still_arrives(
    offstage_servers: Callable[..., Offstage],
) -> None:
    offstage = offstage_servers(SLOW)
    draw = [ToolCall("generate_image", {"prompt": "a lighthouse"})]
    async with ScriptedChat({"Draw a lighthouse": draw}) as model, \
            Bot(OffstageMCP(Conversation(offstage.base)), model) as bot:
        await bot.say("Draw a lighthouse")
        asked = await model.wait_for(lambda messages: bool(calls(messages, "generate_image")), 15)
        [(call_id, _)] = calls(asked, "generate_image")
        carried_on = await model.wait_for(has(call_id, "intermediate"), 15)
        job = job_of(results(carried_on, call_id, "intermediate")[0])

        # The user talks over the bot: pipecat cancels every call that is not async.
        await bot.worker.queue_frame(InterruptionFrame())
        with anyio.fail_after(10):
            while not any(isinstance(frame, InterruptionFrame) for frame in bot.frames):
                await asyncio.sleep(0.02)
        assert await job_status(offstage, job) == "working", "interrupted while the job works"

        told = await model.wait_for(has(call_id, "final"), 20)

    [final] = results(told, call_id, "final")
    assert f"/v1/jobs/{job}/image" in final and "is ready" in final, final
    assert not any(isinstance(frame, FunctionCallCancelFrame) for frame in bot.frames)
    assert "CANCELLED" not in json.dumps(told)


async def test_a_cancelled_job_reaches_the_context_as_its_error_sentence(
    offstage_servers: Callable[..., Offstage],
) -> None:
    offstage = offstage_servers(SLOW)
    conversation = Conversation(offstage.base)
    draw = [ToolCall("generate_image", {"prompt": "a heron"})]
    async with ScriptedChat({"Draw a heron": draw}) as model, \
            Bot(OffstageMCP(conversation), model) as bot:
        await bot.say("Draw a heron")
        asked = await model.wait_for(lambda messages: bool(calls(messages, "generate_image")), 15)
        [(call_id, _)] = calls(asked, "generate_image")
        carried_on = await model.wait_for(has(call_id, "intermediate"), 15)
        job = job_of(results(carried_on, call_id, "intermediate")[0])

        # "Never mind": the model cancels the job with offstage's own tool, a plain result.
        model.scripts["Never mind"] = [ToolCall("cancel_job", {"job_id": job})]
        await bot.say("Never mind")
        cancelling = await model.wait_for(lambda messages: bool(calls(messages, "cancel_job")), 15)
        [(cancel_id, _)] = calls(cancelling, "cancel_job")
        cancelled = await model.wait_for(has(cancel_id, "in_place"), 15)
        assert results(cancelled, cancel_id, "in_place") == [f"Cancelled job {job}."]

        told = await model.wait_for(has(call_id, "final"), 15)
        ending = await conversation.wait(job)

    assert ending.type == "job.cancelled"
    error = ending.job.get("error")
    assert error, ending.job
    [final] = results(told, call_id, "final")
    assert final == f"{ending.body['say']} {error}"
    assert "was cancelled" in final and "/image" not in final, final
    assert user_turns(told) == ["Draw a heron", "Never mind"]


async def test_a_silent_ending_goes_into_the_context_without_running_the_llm(
    offstage: Offstage,
) -> None:
    conversation = Conversation(offstage.base, delivery="silent")
    draw = [ToolCall("generate_image", {"prompt": "a quiet owl"})]
    async with ScriptedChat({"Draw an owl": draw}) as model, \
            Bot(OffstageMCP(conversation), model) as bot:
        await bot.say("Draw an owl")
        asked = await model.wait_for(lambda messages: bool(calls(messages, "generate_image")), 15)
        [(call_id, _)] = calls(asked, "generate_image")
        with anyio.fail_after(15):
            while not results(bot.context.get_messages(), call_id, "final"):
                await asyncio.sleep(0.02)

        await bot.say("Anything new?")
        told = await model.wait_for(has(call_id, "final"), 15)

    assert user_turns(told) == ["Draw an owl", "Anything new?"], "the ending ran no LLM"
    [final] = results(told, call_id, "final")
    assert "is ready" in final and "/image" in final, final


async def test_neither_a_repeated_call_nor_a_later_call_repeats_an_ending(
    offstage: Offstage,
) -> None:
    # Realtime models repeat calls: offstage answers the second with the job under way.
    twice = [ToolCall("generate_image", {"prompt": "a red fox"})] * 2
    whale = [ToolCall("generate_image", {"prompt": "a blue whale"})]
    scripts = {"Draw a red fox": twice, "And a blue whale": whale}
    async with ScriptedChat(scripts) as model, \
            Bot(OffstageMCP(Conversation(offstage.base)), model) as bot:
        await bot.say("Draw a red fox")
        asked = await model.wait_for(made(2), 15)
        ids = [call_id for call_id, _ in calls(asked, "generate_image")]
        told = await model.wait_for(
            lambda messages: any(results(messages, i, "final") for i in ids), 15
        )
        [waited] = [call_id for call_id in ids if results(told, call_id, "final")]
        [repeated] = [call_id for call_id in ids if call_id != waited]
        # The two calls raced to offstage, so either can be the one that waits for the job.
        [line] = results(told, repeated, "in_place")
        [placeholder] = results(told, waited, "intermediate")
        lines = sorted([line, placeholder])
        assert lines[0].startswith("Making the image now"), lines
        assert lines[1].startswith("That image is already being made"), lines
        job = job_of(line)
        assert job_of(placeholder) == job
        [final] = results(told, waited, "final")
        assert f"/v1/jobs/{job}/image" in final, final

        # offstage starts the next call's answer with the jobs that ended since (piggy-back).
        await bot.say("And a blue whale")
        asked = await model.wait_for(made(3), 15)
        whale_call = calls(asked, "generate_image")[-1][0]
        carried_on = await model.wait_for(has(whale_call, "intermediate"), 15)

    [placeholder] = results(carried_on, whale_call, "intermediate")
    assert placeholder.startswith("Making the image now"), placeholder
    mentions = [message for message in carried_on if "\u201ca red fox\u201d" in str(message)]
    assert len(mentions) == 1, mentions


async def test_a_restart_in_the_middle_of_a_burst_gives_each_ending_exactly_once(
    offstage_servers: Callable[..., Offstage],
) -> None:
    offstage = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "1s"})
    conversation = Conversation(offstage.base)

    def burst(numbers: range) -> list[ToolCall]:
        return [ToolCall("generate_image", {"prompt": f"burst {n}"}) for n in numbers]

    scripts = {"Draw four": burst(range(4)), "Four more": burst(range(4, 8))}
    async with ScriptedChat(scripts) as model, \
            Bot(OffstageMCP(conversation), model) as bot:
        await bot.say("Draw four")
        carried_on, first = await placeholders(model, 4)
        assert not any(results(carried_on, call_id, "final") for call_id in first), \
            "the LLM carried on from the placeholders before any job ended"
        states = [await job_status(offstage, job) for job in first.values()]
        assert "working" in states, "the restart should come mid-burst"
        await anyio.to_thread.run_sync(offstage.restart)

        await bot.say("Four more")
        _, jobs = await placeholders(model, 8)
        told = await model.wait_for(
            lambda messages: all(results(messages, call_id, "final") for call_id in jobs), 60
        )

    assert conversation.stream.reconnects >= 1, "the restart ended the event stream"
    assert len(set(jobs.values())) == 8
    for n, (call_id, job) in enumerate(jobs.items()):
        [final] = results(told, call_id, "final")
        assert f"/v1/jobs/{job}/image" in final or "failed" in final, final
        # Nowhere else either: not piggy-backed onto a later call's placeholder.
        mentions = [message for message in told if f"\u201cburst {n}\u201d" in str(message)]
        assert len(mentions) == 1, mentions
    assert user_turns(told) == ["Draw four", "Four more"]


async def placeholders(model: ScriptedChat, count: int) -> tuple[Messages, dict[str, str]]:
    """The first request that carries `count` generate_image placeholders, and the job of each
    call (by call id)."""
    def every(messages: Messages) -> bool:
        made = calls(messages, "generate_image")
        return len(made) == count and all(results(messages, id, "intermediate") for id, _ in made)

    carried = await model.wait_for(every, 30)
    return carried, {
        call_id: job_of(results(carried, call_id, "intermediate")[0])
        for call_id, _ in calls(carried, "generate_image")
    }
