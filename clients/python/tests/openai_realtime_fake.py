"""A local stand-in for the OpenAI Realtime API's websocket, for the `openai` SDK to connect to
(`websocket_base_url`): GA wire format, every client event checked against the SDK's own
`RealtimeClientEventParam` and every server event it sends against `RealtimeServerEvent`, and
the server's one-response-at-a-time rule, so a wrong client meets the refusal a real one would.

Responses the client asks for end at once unless `hold` is set; a response the fake starts on
its own (`start_response`, as server VAD does) runs until `finish_response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeClientEventParam, RealtimeServerEvent
from pydantic import TypeAdapter, ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

CLIENT_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeClientEventParam)
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

Json = dict[str, Any]


class FakeRealtime:
    """`async with FakeRealtime() as fake:`, then `fake.client()` is an `AsyncOpenAI` whose
    `realtime.connect()` lands here."""

    def __init__(self) -> None:
        # What the client sent, in order; `log` interleaves it with what the fake sent.
        self.received: list[Json] = []
        # The client events `RealtimeClientEventParam` refused, with the reason.
        self.invalid: list[str] = []
        self.log: list[tuple[str, Json]] = []
        # Responses the client asks for stay active until `finish_response`.
        self.hold = False
        # The next `response.create` meets a response the server started just before it.
        self.race_next_create = False
        # How many connections the client opened.
        self.connections = 0
        self._active: str | None = None
        self._ids = itertools.count(1)
        self._socket: ServerConnection | None = None
        self._server: Server | None = None
        self._arrived = asyncio.Condition()

    async def __aenter__(self) -> FakeRealtime:
        self._server = await serve(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if kind is None:
            assert not self.invalid, self.invalid

    def client(self) -> AsyncOpenAI:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return AsyncOpenAI(api_key="sk-fake", websocket_base_url=f"ws://127.0.0.1:{port}/v1")

    @property
    def active(self) -> str | None:
        """The id of the response in progress, if one is."""
        return self._active

    @property
    def sent(self) -> list[Json]:
        """The server events the fake sent, in order."""
        return [event for side, event in self.log if side == "server"]

    def of_type(self, kind: str) -> list[Json]:
        """The client events of one type, in order."""
        return [event for event in self.received if event["type"] == kind]

    async def wait_for(self, done: Callable[[list[Json]], bool], within: float = 20) -> None:
        """Until `done(received)` holds; fails after `within` seconds."""
        with anyio.fail_after(within):
            async with self._arrived:
                await self._arrived.wait_for(lambda: self.invalid or done(self.received))
        assert not self.invalid, self.invalid

    async def start_response(self) -> str:
        """Starts a response as the server does on its own (server VAD); it runs until
        `finish_response`."""
        assert self._active is None, "the fake runs one response at a time"
        self._active = f"resp_{next(self._ids)}"
        await self._emit({"type": "response.created", "response": self._response("in_progress")})
        return self._active

    async def finish_response(self, status: str = "completed") -> None:
        assert self._active is not None, "no response is active"
        done = self._response(status)
        self._active = None
        await self._emit({"type": "response.done", "response": done})

    # -- inside ------------------------------------------------------------------------------

    async def drop(self) -> None:
        """Closes the connection as a server restart does (1012): the SDK may reconnect, to a
        new session with no response running."""
        assert self._socket is not None
        await self._socket.close(code=1012, reason="service restart")

    async def _serve(self, socket: ServerConnection) -> None:
        self._socket = socket
        self._active = None
        self.connections += 1
        await self._emit({"type": "session.created", "session": self._session()})
        # The SDK may drop the connection (a test's `drop`, its own close): nothing to report.
        with contextlib.suppress(ConnectionClosed):
            async for raw in socket:
                await self._take(json.loads(raw))

    async def _take(self, event: Json) -> None:
        try:
            CLIENT_EVENT.validate_python(event)
        except ValidationError as error:
            self.invalid.append(f"{event}: {error}")
        self.received.append(event)
        self.log.append(("client", event))
        await self._answer(event)
        async with self._arrived:
            self._arrived.notify_all()

    async def _answer(self, event: Json) -> None:
        kind = event["type"]
        if kind == "session.update":
            await self._emit({"type": "session.updated", "session": self._session()})
        elif kind == "conversation.item.create":
            item = {**event["item"], "id": f"item_{next(self._ids)}", "object": "realtime.item",
                    "status": "completed"}
            await self._emit({"type": "conversation.item.added", "item": item})
            await self._emit({"type": "conversation.item.done", "item": item})
        elif kind == "response.create":
            if self.race_next_create:
                self.race_next_create = False
                await self.start_response()
            if self._active is not None:
                await self._error(event, "conversation_already_has_active_response",
                                  f"Conversation already has an active response in progress: "
                                  f"{self._active}. Wait until the response is finished before "
                                  "creating a new one.")
                return
            await self.start_response()
            if not self.hold:
                await self.finish_response()
        elif kind == "response.cancel":
            if self._active is None:
                await self._error(event, "response_cancel_not_active",
                                  "Cancellation failed: no active response found")
            else:
                await self.finish_response("cancelled")
        elif kind == "input_audio_buffer.clear":
            await self._emit({"type": "input_audio_buffer.cleared"})

    async def _error(self, cause: Json, code: str, message: str) -> None:
        await self._emit({"type": "error", "error": {
            "type": "invalid_request_error", "code": code, "message": message, "param": None,
            "event_id": cause.get("event_id"),
        }})

    async def _emit(self, event: Json) -> None:
        assert self._socket is not None
        event = {"event_id": f"event_{next(self._ids)}", **event}
        SERVER_EVENT.validate_python(event)
        self.log.append(("server", event))
        await self._socket.send(json.dumps(event))

    def _response(self, status: str) -> Json:
        details = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": "client_cancelled"}
        return {
            "object": "realtime.response", "id": self._active, "status": status,
            "status_details": details, "output": [], "conversation_id": "conv_1",
            "output_modalities": ["audio"], "max_output_tokens": "inf", "metadata": None,
            "usage": None,
        }

    @staticmethod
    def _session() -> Json:
        return {"type": "realtime", "object": "realtime.session", "id": "sess_1",
                "model": "gpt-realtime", "output_modalities": ["audio"]}
