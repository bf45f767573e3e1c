"""A stand-in for OpenAI's chat-completions endpoint on 127.0.0.1, for the pipecat tests:
pipecat's real `OpenAILLMService` (and the `openai` SDK under it) talks to it over HTTP, and it
answers in the API's streaming wire format (`chat.completion.chunk` objects as Server-Sent
Events, tool calls as `tool_calls` deltas with their arguments in fragments, then
`data: [DONE]`).

It plays a scripted model: a request with a user message it has a script for, and no answer to
that message yet, gets the script's tool calls; every other request gets a short text answer.
It keeps the messages of every request, which is what the tests read the LLM context from.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import web

Messages = list[dict[str, Any]]

ANSWER = "All right."


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


class FakeChatCompletions:
    """`POST /v1/chat/completions`, streaming. `scripts` maps a user message's text to the tool
    calls the model makes in answer to it; `requests` holds each request's messages, in order."""

    def __init__(self, scripts: dict[str, list[ToolCall]] | None = None) -> None:
        self.scripts = dict(scripts or {})
        self.requests: list[Messages] = []
        self.port = 0
        self._arrived = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeChatCompletions:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def wait_for(self, condition: Callable[[Messages], bool], within: float) -> Messages:
        """The messages of the first request, past or coming, that satisfy `condition`."""
        seen = 0
        with anyio.fail_after(within):
            async with self._arrived:
                while True:
                    for messages in self.requests[seen:]:
                        if condition(messages):
                            return messages
                    seen = len(self.requests)
                    await self._arrived.wait()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body.get("stream") is True, "pipecat streams its completions"
        messages: Messages = body["messages"]
        async with self._arrived:
            self.requests.append(messages)
            self._arrived.notify_all()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in self._chunks(messages):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _chunks(self, messages: Messages) -> AsyncIterator[dict[str, Any]]:
        calls = self._script(messages)
        completion = f"chatcmpl-{next(self._ids)}"
        yield chunk(completion, {"role": "assistant", "content": ""})
        if calls is None:
            yield chunk(completion, {"content": ANSWER})
            yield chunk(completion, {}, finish="stop")
            return
        for index, call in enumerate(calls):
            start = {"index": index, "id": f"call_{next(self._ids)}", "type": "function",
                     "function": {"name": call.name, "arguments": ""}}
            yield chunk(completion, {"tool_calls": [start]})
            # The arguments in two fragments, as the API streams them.
            arguments = json.dumps(call.arguments)
            half = len(arguments) // 2
            for fragment in (arguments[:half], arguments[half:]):
                yield chunk(completion, {"tool_calls": [
                    {"index": index, "function": {"arguments": fragment}}]})
        yield chunk(completion, {}, finish="tool_calls")

    def _script(self, messages: Messages) -> list[ToolCall] | None:
        """The script of the newest user message the model has not answered yet. Results
        that arrived after it (developer messages) do not count as an answer."""
        for message in reversed(messages):
            if message["role"] == "assistant":
                return None
            said = message.get("content")
            if message["role"] == "user" and isinstance(said, str) and said in self.scripts:
                return self.scripts[said]
        return None


def chunk(completion: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": completion, "object": "chat.completion.chunk", "created": 0, "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
