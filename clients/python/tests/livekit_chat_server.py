"""A local OpenAI chat-completions endpoint for the LiveKit tests: the transport boundary of
livekit-plugins-openai's `openai.LLM`, which streams `POST /v1/chat/completions`. A script
stands in for the model: it reads the request's messages and answers with text or tool calls,
streamed as the API streams them (`chat.completion.chunk` Server-Sent Events, then `[DONE]`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


# What the model answers: a text, or the tool calls of one turn (parallel calls).
Reply = str | list[ToolCall]
Script = Callable[[list[dict[str, Any]]], Reply]


class ChatCompletions:
    """`async with ChatCompletions(script) as server:` serves on `server.base_url` (give it to
    `openai.LLM(base_url=…)`); `requests` holds every request body received."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> ChatCompletions:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        assert body.get("stream") is True, "openai.LLM streams every completion"
        reply = self.script(body["messages"])
        n = len(self.requests)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for delta, finish in _deltas(reply, n):
            chunk = {
                "id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        last = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0,
                "model": body["model"], "choices": [], "usage": usage}
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


def _deltas(reply: Reply, n: int) -> list[tuple[dict[str, Any], str | None]]:
    if isinstance(reply, str):
        return [({"role": "assistant", "content": reply}, None), ({}, "stop")]
    calls = [
        {"index": i, "id": f"call_{n}_{i}", "type": "function",
         "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
        for i, call in enumerate(reply)
    ]
    return [({"role": "assistant", "tool_calls": [call]}, None) for call in calls] + [
        ({}, "tool_calls")
    ]
