"""A local stand-in for Gemini Live's BidiGenerateContent websocket, so google-genai's own
`client.aio.live.connect` runs for real against it: the library builds and sends the setup,
tool responses and client content exactly as it would to Google.

It speaks the documented wire format: the first client message is `{"setup": …}`, answered
with `{"setupComplete": {}}`; after that it can send `toolCall` and `goAway` messages and
records every client message (`toolResponse`, `clientContent`, `realtimeInput`).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import websockets


@dataclass
class FakeLive:
    url: str
    received: list[dict] = field(default_factory=list)
    connections: list = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def setup(self) -> dict:
        return next(message["setup"] for message in self.received if "setup" in message)

    async def send(self, message: dict) -> None:
        await self.connections[-1].send(json.dumps(message))

    async def next_message(self, key: str, timeout: float = 10.0) -> dict:
        """Waits for the next client message that has `key` (e.g. "toolResponse"). Proto JSON
        takes either spelling of a field, and google-genai writes top-level ones in snake case
        (`tool_response`), so both are matched."""
        seen = 0
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)

        async def find():
            nonlocal seen
            while True:
                for message in self.received[seen:]:
                    seen += 1
                    for spelling in (key, snake):
                        if spelling in message:
                            return message[spelling]
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(find(), timeout)


@asynccontextmanager
async def fake_live():
    """Serves one fake Live endpoint on a free loopback port."""
    live = FakeLive(url="")

    async def handler(connection):
        live.connections.append(connection)
        async for raw in connection:
            message = json.loads(raw)
            live.received.append(message)
            live.arrived.set()
            if "setup" in message:
                await connection.send(json.dumps({"setupComplete": {}}))

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        live.url = f"ws://127.0.0.1:{port}"
        yield live


def route_live_to(live: FakeLive):
    """Points google-genai's Live websocket at `live` (the transport boundary), leaving
    everything above it — setup building, MCP conversion, message encoding — to the library."""
    from google.genai import live as genai_live

    original = genai_live.ws_connect

    def connect(uri, **kwargs):
        path = uri.split("/ws/", 1)[1]
        kwargs.pop("ssl", None)  # a TLS context for Google's host; the stand-in is plain ws
        return original(f"{live.url}/ws/{path}", **kwargs)

    genai_live.ws_connect = connect
    return lambda: setattr(genai_live, "ws_connect", original)
