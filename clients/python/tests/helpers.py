"""What the tests share: starting a job the way a realtime app's MCP client does (one stateless
2026-07-28 `tools/call` with the conversation header), and reading a stream until a condition
holds."""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
import httpx2

from offstage_client import Event, EventStream

# What every 2026-07-28 request carries in `_meta`: there is no initialize handshake.
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "offstage-client-tests", "version": "0"},
}


async def start_job(base: str, prompt: str, conversation: str, token: str | None = None) -> str:
    """Calls `generate_image` in `conversation` and returns the job id of its placeholder."""
    body = {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "generate_image", "arguments": {"prompt": prompt}, "_meta": MODERN_META},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "generate_image",
        "Offstage-Conversation": conversation,
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(f"{base}/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    reply = rpc_reply(response.text)
    assert "result" in reply and not reply["result"].get("isError"), reply
    return str(reply["result"]["structuredContent"]["job_id"])


def rpc_reply(text: str) -> dict:
    """The JSON-RPC reply, sent as JSON or as one SSE `data:` line."""
    for line in text.splitlines():
        if line.startswith("data: "):
            return json.loads(line[len("data: "):])
    return json.loads(text)


async def read_until(
    stream: EventStream, seen: list[Event], done: Callable[[list[Event]], bool], within: float
) -> list[Event]:
    """Appends the stream's events to `seen` until `done(seen)`; fails after `within` seconds."""
    with anyio.fail_after(within):
        while not done(seen):
            seen.append(await stream.__anext__())
    return seen


def ended_jobs(events: list[Event]) -> set[str]:
    return {event.job["job_id"] for event in events if event.ended}


def summary(events: list[Event]) -> list[tuple[int, str, str]]:
    """(id, type, job id) of each event: what two reads of one sequence must agree on."""
    return [(event.id, event.type, event.job["job_id"]) for event in events]


def assert_increasing(events: list[Event]) -> None:
    ids = [event.id for event in events]
    assert all(a < b for a, b in zip(ids, ids[1:])), f"ids do not strictly increase: {ids}"
    for event in events:
        assert event.body["event_id"] == event.id, event.body


async def replay(base: str, conversation: str, up_to: int, token: str | None = None) -> list[Event]:
    """The conversation's sequence from the start (`Last-Event-ID: 0`) up to id `up_to`, read
    on a fresh stream: what a follower should have yielded."""
    seen: list[Event] = []
    async with EventStream(base, token=token, conversation=conversation, after=0) as stream:
        await read_until(stream, seen, lambda events: bool(events) and events[-1].id >= up_to, 10)
    return seen
