"""Calls as the frameworks make them: inside their 5 s request budgets, with progress LiveKit
turns into its own non-blocking updates, and sessions that close without a warning."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from conftest import start
from helpers import job_id_of, mcp_session, text_of


@pytest.fixture(scope="module")
def slow_offstage():
    """Image jobs that take longer than any reply bound."""
    server = start({"OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "20s"})
    yield server
    server.stop()


def test_closing_an_mcp_session_logs_nothing(offstage, caplog):
    async def session():
        async with mcp_session(offstage.mcp) as mcp:
            await mcp.list_tools()

    with caplog.at_level(logging.WARNING):
        asyncio.run(session())
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mcp")] == []


def test_no_call_outlasts_the_frameworks_five_second_budget(slow_offstage):
    # openai-agents' and LiveKit's default read timeout: every request gets 5 s.
    from agents.mcp import MCPServerStreamableHttp

    async def calls():
        params = {"url": slow_offstage.mcp}
        async with MCPServerStreamableHttp(params, client_session_timeout_seconds=5) as server:
            started = await server.call_tool("generate_image", {"prompt": "a slow comet"})
            job_id = job_id_of(started)
            began = time.monotonic()
            # What our own description used to invite: a long wait.
            status = await server.call_tool("job_status", {"job_id": job_id, "wait_ms": 20000})
            return status, time.monotonic() - began

    status, took = asyncio.run(calls())
    assert not status.is_error, text_of(status)
    assert status.structured_content["status"] == "working"
    assert "still being made" in text_of(status)
    assert took < 5, f"job_status held the call {took:.1f} s"


def test_livekit_report_progress_turns_a_wait_into_updates(slow_offstage):
    from livekit.agents import AgentSession, llm
    from livekit.agents.llm import mcp
    from livekit.agents.llm.utils import execute_function_call
    from livekit.agents.voice import RunContext, SpeechHandle

    async def run():
        server = mcp.MCPServerHTTP(url=f"{slow_offstage.mcp}/voice", transport_type="streamable_http")
        await server.initialize()
        try:
            options = {"job_status": {"report_progress": True}}
            context = llm.ToolContext(await server.list_tools(tool_options=options))
            started = await execute_function_call(
                llm.FunctionToolCall(name="generate_image", arguments='{"prompt": "a comet"}',
                                     call_id="c1"),
                context,
            )
            job_id = json.loads(started.fnc_call_out.output)["text"].rsplit(" ", 1)[1][:-1]
            arguments = json.dumps({"job_id": job_id, "wait_ms": 20000})
            call = llm.FunctionCall(call_id="c2", name="job_status", arguments=arguments)
            run_context = RunContext(session=AgentSession(), speech_handle=SpeechHandle.create(),
                                     function_call=call)
            return await execute_function_call(
                llm.FunctionToolCall(name="job_status", arguments=arguments, call_id="c2"),
                context,
                call_ctx=run_context,
            )
        finally:
            await server.aclose()

    result = asyncio.run(run())
    assert result.raw_exception is None, result.raw_exception
    # Each MCP progress notification became a LiveKit update: the first one is what frees the
    # model's turn in a voice session, and it is a sentence to say.
    assert result.fnc_call_updates, "no progress reached ctx.update()"
    _, first = result.fnc_call_updates[0]
    assert "The image is still being made, about " in first.output, first.output
    assert "still being made" in result.fnc_call_out.output
