"""`OffstageToolset` in a real LiveKit `AgentSession` (text mode, the agent's tools on offstage's
MCP endpoint) against a real `offstage serve`, with LiveKit's own `openai.LLM` streaming from a
local chat-completions endpoint where a script plays the model: a job tool's placeholder comes
back as the call's async update, the job's ending arrives later as the call's final result in
the chat context and the agent replies, with no user input; a failed or a cancelled job arrives
as its error sentence; a burst of jobs across a restart of offstage gives each ending once."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest
from livekit.agents import Agent, AgentSession, llm
from livekit.plugins import openai

from conftest import Offstage
from fake_chat import ChatCompletions, Reply, ToolCall
from offstage_client import Conversation
from offstage_client.livekit import OffstageToolset

pytestmark = pytest.mark.anyio

# offstage's placeholder names its job: "…; job 4vkhxg4sz3j2ecg9."
JOB_ID = re.compile(r"\bjob ([0-9a-z]{16})\b")
# Nothing refuses a loopback link at the call: the job fetches it, and fails.
UNREACHABLE_IMAGE = "http://127.0.0.1:9/fox.png"


def model(messages: list[dict[str, Any]]) -> Reply:
    """The scripted model. `draw a; b` calls generate_image for each prompt, `edit <url>`
    calls edit_image, `cancel <job id>` cancel_job, `check <job id>` job_status; after tool
    results it says `Heard: ` and the results it has not answered yet."""
    turns = [message for message in messages if message["role"] in ("user", "assistant", "tool")]
    last = turns[-1]
    if last["role"] == "user":
        said = text_of(last)
        verb, _, rest = said.partition(" ")
        if verb == "draw":
            return [ToolCall("generate_image", {"prompt": p.strip()}) for p in rest.split(";")]
        if verb == "edit":
            return [ToolCall("edit_image", {"image": rest, "instruction": "make it blue"})]
        if verb == "cancel":
            return [ToolCall("cancel_job", {"job_id": rest})]
        if verb == "check":
            return [ToolCall("job_status", {"job_id": rest, "wait_ms": 1000})]
        return f"You said: {said}"
    heard = []
    for message in reversed(turns):
        if message["role"] == "assistant" and text_of(message):
            break
        if message["role"] == "tool":
            heard.insert(0, text_of(message))
    return "Heard: " + " | ".join(heard)


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


@dataclass
class Call:
    """A LiveKit agent on offstage, its scripted model and the conversation it talks in."""

    session: AgentSession
    agent: Agent
    model: ChatCompletions
    conversation: Conversation

    def items(self) -> list[llm.ChatItem]:
        return list(self.agent.chat_ctx.items)

    def outputs(self, call_id: str) -> list[llm.FunctionCallOutput]:
        """Every output the chat context holds under `call_id`."""
        return [item for item in self.items()
                if item.type == "function_call_output" and item.call_id == call_id]

    def finals(self) -> list[llm.FunctionCallOutput]:
        """The late results: LiveKit files them as `<call id>_final`."""
        return [item for item in self.items()
                if item.type == "function_call_output" and item.call_id.endswith("_final")]

    def replied_after(self, item: llm.ChatItem) -> bool:
        """Whether an assistant message follows `item` in the chat context."""
        items = self.items()
        later = items[[i.id for i in items].index(item.id) + 1:]
        return any(i.type == "message" and i.role == "assistant" for i in later)

    def seen_by_model(self, text: str) -> bool:
        """Whether a request to the model carried a tool result with `text`."""
        return any(
            message["role"] == "tool" and text_of(message) == text
            for request in self.model.requests for message in request
        )

    async def until(self, done: Callable[[], bool], within: float = 20) -> None:
        """Waits, with no user input, until the session's items make `done()` true."""
        changed = asyncio.Event()

        def poke(_: object) -> None:
            changed.set()

        events = ("conversation_item_added", "tool_execution_updated")
        for event in events:
            self.session.on(event, poke)
        try:
            with anyio.fail_after(within):
                while True:
                    changed.clear()
                    if done():
                        return
                    await changed.wait()
        finally:
            for event in events:
                self.session.off(event, poke)


@asynccontextmanager
async def livekit_call(base: str, **conversation_options: Any) -> AsyncIterator[Call]:
    conversation = Conversation(base, **conversation_options)
    async with ChatCompletions(model) as chat, conversation:
        agent = Agent(instructions="You make pictures.")
        brain = openai.LLM(model="scripted", base_url=chat.base_url, api_key="test")
        tools = [OffstageToolset(conversation)]
        async with brain, AgentSession(llm=brain, tools=tools) as session:
            await session.start(agent)
            yield Call(session, agent, chat, conversation)


def job_calls(result: Any) -> dict[str, str]:
    """The job each tool call of a run names in its first output, by call id."""
    calls = {}
    for event in result.events:
        if event.type == "function_call":
            arguments = json.loads(event.item.arguments)
            calls[event.item.call_id] = arguments.get("job_id")
        if event.type == "function_call_output" and (found := JOB_ID.search(event.item.output)):
            calls[event.item.call_id] = found.group(1)
    return calls


def expected(ending: Any) -> str:
    """The line a job's ending should become: its `say`, and the image of a finished one."""
    say = ending.body["say"]
    return f"{say} Image: {ending.job['image_url']}" if ending.type == "job.completed" else say


async def test_a_finished_image_reaches_the_chat_context_and_a_reply(offstage: Offstage) -> None:
    async with livekit_call(offstage.base) as call:
        result = await call.session.run(user_input="draw a red fox")
        [(call_id, job_id)] = job_calls(result).items()

        # The call returned at once: its output is the placeholder, as LiveKit's update, and
        # the model answered it in the same run.
        [update] = call.outputs(call_id)
        assert "has updated, message: Making the image now" in update.output, update.output
        assert not update.is_error
        kinds = [event.type for event in result.events]
        assert kinds == ["function_call", "function_call_output", "message"], kinds

        await call.until(lambda: bool(call.finals()) and call.replied_after(call.finals()[-1]))
        ending = await call.conversation.wait(job_id)
        assert ending.type == "job.completed"
        [final] = call.finals()
        assert final.call_id == f"{call_id}_final" and not final.is_error
        assert final.output == expected(ending)
        assert final.output.endswith(f"/v1/jobs/{job_id}/image"), final.output
        # The model was asked about the result and the agent spoke it; the user said nothing.
        assert call.seen_by_model(final.output)
        last = call.items()[-1]
        assert isinstance(last, llm.ChatMessage) and last.role == "assistant", last
        assert final.output in (last.text_content or ""), last
        users = [item for item in call.items() if item.type == "message" and item.role == "user"]
        assert len(users) == 1


async def test_a_failed_and_a_cancelled_job_arrive_as_their_error_sentences(
    offstage_servers: Callable[..., Offstage],
) -> None:
    # Slow images, so the one cancelled is still being made; the edit fails at its fetch.
    server = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "30s"})
    async with livekit_call(server.base) as call:
        [(edit_call, edit_job)] = job_calls(
            await call.session.run(user_input=f"edit {UNREACHABLE_IMAGE}")
        ).items()
        [(draw_call, draw_job)] = job_calls(
            await call.session.run(user_input="draw a slow comet")
        ).items()
        # The same call again: offstage answers with the job under way, which is already awaited.
        [(again_call, again_job)] = job_calls(
            await call.session.run(user_input="draw a slow comet")
        ).items()
        assert again_job == draw_job
        [again] = call.outputs(again_call)
        assert again.output.startswith("That image is already being made"), again.output
        # job_status reports progress while it waits: its first report is the call's update.
        [(check_call, _)] = job_calls(await call.session.run(user_input=f"check {draw_job}")).items()
        [check] = call.outputs(check_call)
        assert "has updated, message: The image is still being made" in check.output, check.output
        await call.until(lambda: bool(call.outputs(f"{check_call}_final")))
        [check_final] = call.outputs(f"{check_call}_final")
        assert "still being made" in check_final.output, check_final.output
        cancelled = await call.session.run(user_input=f"cancel {draw_job}")

        # cancel_job is no job: it answers in its own call, as LiveKit's MCP tools do.
        [cancel_output] = [e.item for e in cancelled.events if e.type == "function_call_output"]
        assert not cancel_output.call_id.endswith("_final")
        assert json.loads(cancel_output.output)["type"] == "text", cancel_output.output

        finals = {f"{edit_call}_final", f"{draw_call}_final", f"{check_call}_final"}
        await call.until(lambda: {f.call_id for f in call.finals()} >= finals
                         and all(call.replied_after(f) for f in call.finals()))
        for call_id, job_id, kind in [(edit_call, edit_job, "job.failed"),
                                      (draw_call, draw_job, "job.cancelled")]:
            ending = await call.conversation.wait(job_id)
            assert ending.type == kind, ending.body
            [final] = call.outputs(f"{call_id}_final")
            assert final.is_error, final
            assert final.output == ending.body["say"], final.output
            assert call.seen_by_model(final.output)
        # Each ending came once: not to the repeated call, nor to job_status's wait.
        assert {f.call_id for f in call.finals()} == finals


async def test_a_silent_job_joins_the_context_without_a_reply(offstage: Offstage) -> None:
    async with livekit_call(offstage.base, delivery="silent") as call:
        [(call_id, job_id)] = job_calls(await call.session.run(user_input="draw a quiet owl")).items()
        await call.until(lambda: bool(call.outputs(f"{call_id}_final")))
        ending = await call.conversation.wait(job_id)
        assert ending.body["delivery"] == "silent"
        [final] = call.outputs(f"{call_id}_final")
        assert final.output == expected(ending) and not final.reply_required

        await call.session.run(user_input="hello")
        # The model knew of the image when next it spoke, and had not spoken about it before.
        assert call.seen_by_model(final.output)
        items = call.items()
        after = items[[item.id for item in items].index(final.id) + 1:]
        assert [(item.type, item.role) for item in after if item.type == "message"] == [
            ("message", "user"), ("message", "assistant")
        ]


async def test_closing_the_session_leaves_no_call_waiting_for_its_job(
    offstage_servers: Callable[..., Offstage],
) -> None:
    server = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "30s"})
    async with livekit_call(server.base) as call:
        [(_, job_id)] = job_calls(await call.session.run(user_input="draw a far moon")).items()
        # LiveKit's close awaits the calls it may not cancel; this one waits for a 30 s job.
        with anyio.fail_after(10):
            await call.session.aclose()
    async with httpx2.AsyncClient() as http:
        job = (await http.get(f"{server.base}/v1/jobs/{job_id}")).json()
    assert job["status"] == "working", "the job itself goes on"


async def test_a_follower_that_stops_sends_the_model_to_job_status(
    offstage_servers: Callable[..., Offstage],
) -> None:
    server = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "30s"})
    async with livekit_call(server.base) as call:
        [(call_id, job_id)] = job_calls(await call.session.run(user_input="draw a far moon")).items()
        await call.conversation.aclose()
        await call.until(lambda: bool(call.outputs(f"{call_id}_final")))
        [final] = call.outputs(f"{call_id}_final")
        assert final.is_error and f"call job_status with job_id {job_id}" in final.output, final

    with pytest.raises(TypeError, match="offstage_client.Conversation"):
        OffstageToolset(server.base)  # type: ignore[arg-type]


async def test_a_burst_across_a_restart_gives_each_ending_once(
    offstage_servers: Callable[..., Offstage],
) -> None:
    # Jobs of a second each, so the restart comes while they are being made. The follower
    # comes back 3-6 s after the drop, when the restarted server has ended them: only a resume
    # by event id delivers those endings.
    server = offstage_servers({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "1s"})
    async with livekit_call(server.base, backoff_initial=6.0) as call:
        prompts = "; ".join(f"burst {n}" for n in range(6))
        calls = job_calls(await call.session.run(user_input=f"draw {prompts}"))
        assert len(set(calls.values())) == 6, calls
        assert len(call.finals()) < 6, "the restart should come mid-burst"
        await anyio.to_thread.run_sync(server.restart)

        await call.until(lambda: len(call.finals()) >= 6 and call.replied_after(call.finals()[-1]),
                         within=40)
        assert call.conversation.stream.reconnects >= 1, "the restart ended the stream"

        history = [item for item in call.session.history.items
                   if item.type == "function_call_output"]
        for call_id, job_id in calls.items():
            assert len(call.outputs(f"{call_id}_final")) == 1, call_id
            assert sum(item.call_id == f"{call_id}_final" for item in history) == 1, call_id
            [final] = call.outputs(f"{call_id}_final")
            assert final.output == expected(await call.conversation.wait(job_id))
            assert call.seen_by_model(final.output)
        assert len(call.finals()) == 6
