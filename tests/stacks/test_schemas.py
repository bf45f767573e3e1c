"""Every stack takes offstage's tools as they are: each library's own converter reads the
`tools/list` schemas (and the exports) without an error, without dropping or adapting anything,
and keeps every argument."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import _mcp_utils, types as genai

from helpers import export, listed_tools

# OpenAI's Structured Outputs subset (strict mode): what the API accepts in a strict function's
# parameters. Everything else (default, minLength, maxLength, oneOf, allOf, …) is refused.
OPENAI_STRICT_KEYS = {
    "type", "description", "enum", "const", "properties", "required", "additionalProperties",
    "items", "anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minItems", "maxItems", "pattern", "format", "$defs", "$ref",
}


@pytest.fixture(scope="module")
def tools(offstage):
    return asyncio.run(listed_tools(offstage.mcp))


def test_the_default_profile_serves_every_kind_of_tool(tools):
    names = {tool.name for tool in tools}
    # Job tools, inline Rust tools and both kinds of manifest tool: every schema shape we ship.
    assert {"generate_image", "job_status", "cancel_job", "get_weather", "web_search"} <= names
    for tool in tools:
        assert "additionalProperties" not in str(tool.input_schema), tool.name


def test_google_genai_converts_every_tool_and_keeps_every_argument(tools):
    # The path client.aio.live.connect(config={"tools": [mcp_session]}) takes.
    converted = _mcp_utils.mcp_to_gemini_tools(tools)
    assert len(converted) == len(tools)
    for tool, gemini in zip(tools, converted):
        [declaration] = gemini.function_declarations
        assert declaration.name == tool.name
        schema = tool.input_schema
        parameters = declaration.parameters
        assert set(parameters.properties or {}) == set(schema.get("properties", {}))
        assert set(parameters.required or []) == set(schema.get("required", []))
        # Nothing had to be dropped: the strict form of the same conversion agrees.
        strict = genai.Schema.from_json_schema(
            json_schema=genai.JSONSchema(**schema), raise_error_on_unsupported_field=True
        )
        assert strict == parameters, tool.name


def test_the_gemini_live_export_is_valid_setup_and_marks_job_tools_non_blocking(tools):
    exported = export("gemini-live")
    config = genai.LiveConnectConfig(tools=exported)
    declarations = {d.name: d for d in config.tools[0].function_declarations}
    assert set(declarations) == {tool.name for tool in tools}
    jobs = {"generate_image", "web_search"} | ({"edit_image"} & set(declarations))
    for name, declaration in declarations.items():
        expected = genai.Behavior.NON_BLOCKING if name in jobs else genai.Behavior.BLOCKING
        assert declaration.behavior == expected, name


def test_the_openai_realtime_export_is_a_valid_session_update(tools):
    from openai.types.realtime import SessionUpdateEvent, SessionUpdateEventParam
    from pydantic import TypeAdapter

    exported = export("openai-realtime")
    update = {"type": "session.update", "session": {"type": "realtime", "tools": exported}}
    TypeAdapter(SessionUpdateEventParam).validate_python(update)
    parsed = SessionUpdateEvent.model_validate(update)
    assert [tool.name for tool in parsed.session.tools] == [tool.name for tool in tools]
    for tool, listed in zip(parsed.session.tools, tools):
        assert tool.parameters == listed.input_schema


def strict_subset_problems(schema: dict, at: str = "") -> list[str]:
    problems = [f"{at}.{key}" for key in schema if key not in OPENAI_STRICT_KEYS]
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            problems.append(f"{at}: open object")
        if set(schema.get("required", [])) != set(schema.get("properties", {})):
            problems.append(f"{at}: not every property required")
    for name, child in schema.get("properties", {}).items():
        problems += strict_subset_problems(child, f"{at}.{name}")
    for child in [schema.get("items")] if isinstance(schema.get("items"), dict) else []:
        problems += strict_subset_problems(child, f"{at}[]")
    for index, child in enumerate(schema.get("anyOf", [])):
        problems += strict_subset_problems(child, f"{at}|{index}")
    return problems


def test_openai_agents_takes_every_tool_strict_and_non_strict(offstage):
    from agents.mcp import MCPServerStreamableHttp, MCPUtil

    async def convert():
        async with MCPServerStreamableHttp(params={"url": offstage.mcp}) as server:
            listed = await server.list_tools()
            strict = [MCPUtil.to_function_tool(t, server, True) for t in listed]
            loose = [MCPUtil.to_function_tool(t, server, False) for t in listed]
            return listed, strict, loose

    listed, strict, loose = asyncio.run(convert())
    for tool, strict_tool, loose_tool in zip(listed, strict, loose):
        # No fallback to non-strict: the conversion succeeded, and the result is in the subset
        # OpenAI's strict mode accepts.
        assert strict_tool.strict_json_schema, tool.name
        assert strict_subset_problems(strict_tool.params_json_schema) == [], tool.name
        assert loose_tool.params_json_schema == tool.input_schema, tool.name


def test_pipecat_takes_every_tool_for_openai_realtime_and_gemini_live(offstage, tools):
    from loguru import logger
    from mcp.client.session_group import StreamableHttpParameters
    from pipecat.adapters.llm.services.gemini_live_adapter import GeminiLiveLLMAdapter
    from pipecat.adapters.llm.services.open_ai_realtime_adapter import OpenAIRealtimeLLMAdapter
    from pipecat.services.mcp_service import MCPClient

    async def schema():
        async with MCPClient(StreamableHttpParameters(url=offstage.mcp)) as client:
            return await client.tools()

    tools_schema = asyncio.run(schema())
    assert [f.name for f in tools_schema.standard_tools] == [tool.name for tool in tools]
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        realtime = OpenAIRealtimeLLMAdapter().to_provider_tools_format(tools_schema)
        gemini = GeminiLiveLLMAdapter().to_provider_tools_format(tools_schema)
    finally:
        logger.remove(sink)
    assert warnings == [], "pipecat had to adapt a schema"
    for function, tool in zip(realtime, tools):
        assert function["parameters"]["properties"] == tool.input_schema.get("properties", {})
    genai.Tool.model_validate(gemini[0])


def test_livekit_takes_every_tool_for_openai_and_gemini(offstage, tools):
    from livekit.agents import llm
    from livekit.agents.llm import mcp
    from livekit.agents.llm._provider_format import google, openai as lk_openai

    # LiveKit picks the SSE transport unless the path ends in /mcp: a profile URL needs
    # transport_type (docs/stacks.md says so).
    assert not mcp.MCPServerHTTP(url=f"{offstage.mcp}/voice")._use_streamable_http

    async def function_tools():
        server = mcp.MCPServerHTTP(url=f"{offstage.mcp}/voice", transport_type="streamable_http")
        await server.initialize()
        try:
            return await server.list_tools()
        finally:
            await server.aclose()

    context = llm.ToolContext(asyncio.run(function_tools()))
    assert sorted(context.function_tools) == sorted(tool.name for tool in tools)
    for function in lk_openai.to_fnc_ctx(context):
        assert function["function"]["parameters"]["type"] == "object"
    lk_openai.to_responses_fnc_ctx(context)
    for parameters_json_schema in (True, False):  # Gemini, and Gemini Live's Schema form
        declarations = google.to_fnc_ctx(context, use_parameters_json_schema=parameters_json_schema)
        genai.Tool(function_declarations=declarations)
