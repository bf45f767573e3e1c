"""What each stack puts into the model's context for a `generate_image` placeholder and for a
finished job's `job_status`, through each library's own code, counted in o200k tokens.

Goal (issue 15): placeholder at most 60 tokens and final at most 120, in every stack. The table
is printed (run with -s, as scripts/stacks does) and recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from fake_live import fake_live, route_live_to

PLACEHOLDER_GOAL = 60
FINAL_GOAL = 120
# Ids are random, and so is their token count: measure over several jobs, keep the worst.
JOBS = 5
PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a paper boat",
           "a city at night seen from a hill, with fog rolling in"]

TABLE: dict[str, dict[str, int]] = {}


def record(stack: str, kind: str, tokens: int) -> None:
    row = TABLE.setdefault(stack, {})
    row[kind] = max(row.get(kind, 0), tokens)


def parts_tokens(o200k, output) -> int:
    """A Responses `function_call_output`: a string, or input_text parts the model reads."""
    if isinstance(output, str):
        return o200k(output)
    return sum(o200k(part["text"]) for part in output if part.get("type") == "input_text")


def test_openai_agents(offstage, o200k):
    from agents import RunContextWrapper
    from agents.items import ItemHelpers
    from agents.mcp import MCPServerStreamableHttp, MCPUtil
    from openai.types.responses import ResponseFunctionToolCall

    def item(name: str, arguments: dict, output) -> dict:
        call = ResponseFunctionToolCall(
            type="function_call", call_id="call_1", name=name, arguments=json.dumps(arguments)
        )
        return ItemHelpers.tool_call_output_item(call, output)

    async def run(structured: bool):
        params = {"url": offstage.mcp}
        async with MCPServerStreamableHttp(params, use_structured_content=structured) as server:
            tools = {tool.name: tool for tool in await server.list_tools()}
            context = RunContextWrapper(None)
            for prompt in PROMPTS[:JOBS]:
                arguments = {"prompt": prompt}
                output = await MCPUtil.invoke_mcp_tool(
                    server, tools["generate_image"], context, json.dumps(arguments)
                )
                placeholder = item("generate_image", arguments, output)["output"]
                text = placeholder if isinstance(placeholder, str) else placeholder[0]["text"]
                job_id = json.loads(text)["job_id"] if structured else text.rsplit(" ", 1)[1][:-1]
                offstage.wait_until_ended(job_id)
                arguments = {"job_id": job_id}
                output = await MCPUtil.invoke_mcp_tool(
                    server, tools["job_status"], context, json.dumps(arguments)
                )
                final = item("job_status", arguments, output)["output"]
                yield parts_tokens(o200k, placeholder), parts_tokens(o200k, final)

    async def measure():
        for structured, stack in [(False, "openai-agents"),
                                  (True, "openai-agents, use_structured_content")]:
            async for placeholder, final in run(structured):
                record(stack, "placeholder", placeholder)
                record(stack, "final", final)

    asyncio.run(measure())
    assert TABLE["openai-agents"]["placeholder"] <= PLACEHOLDER_GOAL, TABLE
    assert TABLE["openai-agents"]["final"] <= FINAL_GOAL, TABLE


def test_google_genai_live(offstage, o200k):
    from google import genai
    from google.genai import types

    from helpers import mcp_session

    async def measure():
        async with fake_live() as live, mcp_session(offstage.mcp) as mcp:
            restore = route_live_to(live)
            try:
                client = genai.Client(api_key="test-key")
                config = {"tools": [mcp], "response_modalities": ["AUDIO"]}
                async with client.aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
                    for prompt in PROMPTS[:JOBS]:
                        placeholder = await answer(session, live, mcp, "generate_image", {"prompt": prompt})
                        record("google-genai (Live, from_mcp_response)", "placeholder", placeholder[0])
                        offstage.wait_until_ended(placeholder[1])
                        final = await answer(session, live, mcp, "job_status", {"job_id": placeholder[1]})
                        record("google-genai (Live, from_mcp_response)", "final", final[0])
            finally:
                restore()

    async def answer(session, live, mcp, name, arguments):
        # The app's part of Live function calling: call the MCP tool, send the SDK's own
        # conversion of the MCP result back, and look at what reached the wire.
        result = await mcp.call_tool(name, arguments)
        response = types.FunctionResponse.from_mcp_response(name=name, response=result)
        response.id = "function-call-1"
        await session.send_tool_response(function_responses=[response])
        sent = await live.next_message("toolResponse")
        [wire] = sent["functionResponses"]
        body = json.dumps(wire["response"], separators=(",", ":"), ensure_ascii=False)
        return o200k(body), result.structured_content.get("job_id")

    asyncio.run(measure())
    row = TABLE["google-genai (Live, from_mcp_response)"]
    assert row["placeholder"] <= PLACEHOLDER_GOAL, TABLE
    assert row["final"] <= FINAL_GOAL, TABLE


def test_pipecat(offstage, o200k):
    from mcp.client.session_group import StreamableHttpParameters
    from pipecat.services.mcp_service import MCPClient

    async def measure():
        async with MCPClient(StreamableHttpParameters(url=offstage.mcp)) as client:
            await client.tools()
            for prompt in PROMPTS[:JOBS]:
                results: list = []
                # The handler pipecat registers for every MCP tool, with its result callback.
                await client._call_tool("generate_image", {"prompt": prompt}, results_append(results))
                # pipecat's aggregator puts json.dumps(result) into the tool message.
                placeholder = json.dumps(results[-1], ensure_ascii=False)
                record("pipecat", "placeholder", o200k(placeholder))
                job_id = results[-1].rsplit(" ", 1)[1][:-1]
                offstage.wait_until_ended(job_id)
                await client._call_tool("job_status", {"job_id": job_id}, results_append(results))
                record("pipecat", "final", o200k(json.dumps(results[-1], ensure_ascii=False)))
                assert "/v1/jobs/" in results[-1], "pipecat keeps text only: the URL is in it"

    def results_append(results):
        async def callback(result, **_):
            results.append(result)
        return callback

    asyncio.run(measure())
    assert TABLE["pipecat"]["placeholder"] <= PLACEHOLDER_GOAL, TABLE
    assert TABLE["pipecat"]["final"] <= FINAL_GOAL, TABLE


def test_livekit(offstage, o200k):
    from livekit.agents import llm
    from livekit.agents.llm import mcp
    from livekit.agents.llm._provider_format import openai as lk_openai
    from livekit.agents.llm.utils import execute_function_call

    async def measure():
        server = mcp.MCPServerHTTP(url=offstage.mcp, client_session_timeout_seconds=5)
        await server.initialize()
        try:
            context = llm.ToolContext(await server.list_tools())
            for index, prompt in enumerate(PROMPTS[:JOBS]):
                placeholder = await output_of(context, "generate_image", {"prompt": prompt}, index)
                record("LiveKit Agents", "placeholder", o200k(placeholder))
                job_id = json.loads(placeholder)["text"].rsplit(" ", 1)[1][:-1]
                offstage.wait_until_ended(job_id)
                final = await output_of(context, "job_status", {"job_id": job_id}, index)
                record("LiveKit Agents", "final", o200k(final))
        finally:
            await server.aclose()

    async def output_of(context, name, arguments, index):
        call = llm.FunctionToolCall(name=name, arguments=json.dumps(arguments), call_id=f"c{index}")
        result = await execute_function_call(call, context)
        assert result.raw_exception is None, result.raw_exception
        # What LiveKit sends the model for this output (OpenAI chat format; the same string in
        # its Responses and realtime formats).
        chat = llm.ChatContext(items=[result.fnc_call, result.fnc_call_out])
        messages, _ = lk_openai.to_chat_ctx(chat, inject_dummy_user_message=False)
        [tool_message] = [m for m in messages if m["role"] == "tool"]
        return tool_message["content"]

    asyncio.run(measure())
    assert TABLE["LiveKit Agents"]["placeholder"] <= PLACEHOLDER_GOAL, TABLE
    assert TABLE["LiveKit Agents"]["final"] <= FINAL_GOAL, TABLE


@pytest.fixture(scope="module", autouse=True)
def print_table():
    yield
    if not TABLE:
        return
    lines = ["| stack | placeholder | final |", "|---|---:|---:|"]
    for stack, row in TABLE.items():
        lines.append(f"| {stack} | {row.get('placeholder', '-')} | {row.get('final', '-')} |")
    print("\nTokens (o200k) in the model's context, worst of", JOBS, "jobs:")
    print("\n".join(lines))
