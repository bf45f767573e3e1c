"""A stand-in for OpenAI's chat-completions endpoint on 127.0.0.1: the transport boundary of the
LLM classes the pipecat and LiveKit tests run for real (pipecat's `OpenAILLMService`,
livekit-plugins-openai's `openai.LLM`, both on the `openai` SDK). It answers in the API's
streaming wire format: `chat.completion.chunk` objects as Server-Sent Events, tool calls as
`tool_calls` deltas with their arguments in fragments, a usage chunk, then `data: [DONE]`.

A script plays the model: it reads each request's messages and answers with a text or with the
tool calls of one turn. `ScriptedChat` is the common script: tool calls for the user turns it
knows, a short text otherwise.
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


# What the model answers: a text, or the tool calls of one turn (parallel calls).
Reply = str | list[ToolCall]
Script = Callable[[Messages], Reply]


class ChatCompletions:
    """`async with ChatCompletions(script) as server:` serves `POST /v1/chat/completions` on
    `server.base_url` (an LLM's `base_url=`); `requests` holds each request's messages, in
    order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Messages] = []
        self.port = 0
        self._arrived = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> ChatCompletions:
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
        assert body.get("stream") is True, "the LLM classes stream every completion"
        messages: Messages = body["messages"]
        async with self._arrived:
            self.requests.append(messages)
            self._arrived.notify_all()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in self._chunks(self.script(messages), body["model"]):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _chunks(self, reply: Reply, model: str) -> AsyncIterator[dict[str, Any]]:
        completion = f"chatcmpl-{next(self._ids)}"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": completion, "object": "chat.completion.chunk", "created": 0,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        if isinstance(reply, str):
            yield chunk({"content": reply})
            yield chunk({}, finish="stop")
        else:
            for index, call in enumerate(reply):
                start = {"index": index, "id": f"call_{next(self._ids)}", "type": "function",
                         "function": {"name": call.name, "arguments": ""}}
                yield chunk({"tool_calls": [start]})
                # The arguments in two fragments, as the API streams them.
                arguments = json.dumps(call.arguments)
                half = len(arguments) // 2
                for fragment in (arguments[:half], arguments[half:]):
                    yield chunk({"tool_calls": [
                        {"index": index, "function": {"arguments": fragment}}]})
            yield chunk({}, finish="tool_calls")
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        yield {"id": completion, "object": "chat.completion.chunk", "created": 0,
               "model": model, "choices": [], "usage": usage}


class ScriptedChat(ChatCompletions):
    """`scripts` maps a user message's text to the tool calls the model makes in answer to it
    (the test may add to it as it goes); every other request gets a short text answer."""

    def __init__(self, scripts: dict[str, list[ToolCall]] | None = None) -> None:
        super().__init__(self._reply)
        self.scripts = dict(scripts or {})

    def _reply(self, messages: Messages) -> Reply:
        """The script of the newest user message the model has not answered yet. Results
        that arrived after it (developer messages) do not count as an answer."""
        for message in reversed(messages):
            if message["role"] == "assistant":
                break
            said = message.get("content")
            if message["role"] == "user" and isinstance(said, str) and said in self.scripts:
                return self.scripts[said]
        return ANSWER
