"""offstage's side of a Gemini Live conversation: the MCP client session the app calls
offstage's tools with, one call made on it with the model's call id, and what a reply says about
the job it started."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
from google.genai import types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, RequestParamsMeta

from ..conversation import Conversation

log = logging.getLogger(__name__)

# The `_meta` key that tells offstage the model's call id, so its ending answers that call.
CALL_ID_META = "offstage/call_id"


@contextlib.asynccontextmanager
async def mcp_session(conversation: Conversation) -> AsyncIterator[ClientSession]:
    """A ready MCP client session on offstage's `conversation.mcp_url` whose requests
    carry `conversation.headers`, so the jobs its calls start are the ones `conversation`
    follows. Also usable as a Live tool (`config.tools=[session]`)."""
    check(conversation, "mcp_session")
    # The MCP SDK's own defaults: a response stream may stay open for minutes.
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=conversation.headers, timeout=timeout) as http,
        streamable_http_client(conversation.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        # MCP 2026-07-28, which keeps no session on the server: a restart of offstage does not
        # strand this client, as it would a legacy session.
        await session.discover()
        yield session


async def run(mcp: ClientSession, call: types.FunctionCall) -> CallToolResult | str:
    """offstage's reply to `call`, or why there is none (the model waits for an answer either
    way, so a failure is said to it rather than raised)."""
    meta = cast(RequestParamsMeta, {CALL_ID_META: call.id}) if call.id else None
    try:
        return await mcp.call_tool(call.name or "", call.args or {}, meta=meta)
    except Exception as error:
        log.warning("offstage call %s (%s) failed: %s", call.name, call.id, error)
        return f"offstage could not run {call.name}: {error}"


def check(conversation: object, who: str) -> None:
    if not isinstance(conversation, Conversation):
        raise TypeError(
            f"{who} takes an offstage_client.Conversation, e.g. "
            f"{who}(Conversation('http://127.0.0.1:8787', token=token))"
        )


def started_job(result: CallToolResult) -> str | None:
    """The job a reply started, or found under way for a repeated call: offstage's placeholder
    has the job id and `working`. A job view (`job_status` of a working job) has them too, but
    names the job's `tool`: that call is about a job, not its maker."""
    structured: Any = result.structured_content
    if result.is_error or not isinstance(structured, dict) or "tool" in structured:
        return None
    job_id = structured.get("job_id")
    return job_id if isinstance(job_id, str) and structured.get("status") == "working" else None
