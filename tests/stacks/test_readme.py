"""Every snippet in README.md and docs/*.md runs as written: the client snippets (README's
"Connect a client", docs/stacks.md) against a real offstage, with the docs' address the only
thing replaced, and README's "Add a tool" manifest against the manifest schema."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, binary
from fake_live import fake_live, route_live_to
from helpers import readme_snippets, snippet, snippet_page

# Each snippet of README.md and docs/*.md and the test that runs it; a snippet without a test
# fails the first test. The client snippets share one conversation (their header), so each test
# asks for its own picture: a repeated request would rightly get the job already made.
TESTED = {"openai-realtime", "openai-agents", "gemini-live", "pipecat", "livekit", "mcp-http",
          "mcp-stdio", "add-a-tool", "roll-dice"}


def run_snippet(name: str, base: str) -> dict:
    namespace: dict = {"__name__": f"readme_{name.replace('-', '_')}"}
    exec(compile(snippet(name, base), f"{snippet_page(name)}:{name}", "exec"), namespace)
    return namespace


def test_every_readme_snippet_is_tested():
    assert set(readme_snippets()) == TESTED


def test_the_add_a_tool_manifest_is_a_manifest():
    import jsonschema

    language, code = readme_snippets()["add-a-tool"]
    assert language == "toml" and snippet_page("add-a-tool") == "README.md"
    manifest = tomllib.loads(code)
    schema = json.loads((ROOT / "schemas" / "manifest.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(manifest)
    # The comment names the file the manifest must be saved as.
    assert f"tools/{manifest['name']}.toml" in code
    # The check can fail: a mode the format does not know is refused.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**manifest, "mode": "later"})


def test_the_roll_dice_example_is_the_file_the_rust_tests_compile():
    # src/tools/builtin/tests.rs calls it; here: the README shows that very file.
    language, code = readme_snippets()["roll-dice"]
    assert language == "rust" and snippet_page("roll-dice") == "README.md"
    assert code == (ROOT / "src" / "tools" / "builtin" / "roll_dice.rs").read_text()


def test_openai_realtime_session_update_passes_the_sdk_types(offstage):
    from openai.types.realtime import SessionUpdateEvent, SessionUpdateEventParam
    from pydantic import TypeAdapter, ValidationError

    language, _ = readme_snippets()["openai-realtime"]
    update = json.loads(snippet("openai-realtime", offstage.base))
    assert language == "json"
    TypeAdapter(SessionUpdateEventParam).validate_python(update)
    [tool] = SessionUpdateEvent.model_validate(update).session.tools
    assert tool.type == "mcp" and tool.require_approval == "never"
    assert tool.headers == {"Offstage-Conversation": "call-2f9c"}
    # The check can fail: without `session.type` the same update is refused.
    del update["session"]["type"]
    with pytest.raises(ValidationError):
        TypeAdapter(SessionUpdateEventParam).validate_python(update)


def test_openai_agents_snippet_lists_and_calls_the_tools(offstage):
    from agents import RunContextWrapper
    from agents.tool_context import ToolContext

    namespace = run_snippet("openai-agents", offstage.base)

    async def use():
        async with namespace["offstage"]:
            tools = await namespace["agent"].get_mcp_tools(RunContextWrapper(None))
            by_name = {tool.name: tool for tool in tools}
            arguments = json.dumps({"prompt": "a fox for openai-agents"})
            context = ToolContext(context=None, tool_name="generate_image", tool_call_id="c1",
                                  tool_arguments=arguments)
            return by_name, await by_name["generate_image"].on_invoke_tool(context, arguments)

    tools, output = asyncio.run(use())
    assert {"generate_image", "job_status", "cancel_job"} <= set(tools)
    text = output["text"] if isinstance(output, dict) else str(output)
    assert "Making the image now" in text, output


def test_gemini_live_snippet_declares_the_tools_and_answers_a_call(offstage):
    namespace = run_snippet("gemini-live", offstage.base)

    async def conversation():
        async with fake_live() as live:
            restore = route_live_to(live)
            os.environ.setdefault("GEMINI_API_KEY", "test-key")
            try:
                talk = asyncio.create_task(namespace["talk"]())
                setup = await wait_for_setup(live)
                await live.send({"toolCall": {"functionCalls": [
                    {"id": "function-call-1", "name": "generate_image",
                     "args": {"prompt": "a fox for gemini live"}}]}})
                answer = await live.next_message("toolResponse")
                await live.send({"serverContent": {"turnComplete": True}})
                await asyncio.wait_for(talk, 10)
                return setup, answer
            finally:
                restore()

    async def wait_for_setup(live):
        while not any("setup" in message for message in live.received):
            await asyncio.sleep(0.01)
        return live.setup

    setup, answer = asyncio.run(conversation())
    # google-genai's MCP converter took every tool offstage lists.
    declared = {d["name"]: d for tool in setup["tools"] for d in tool["functionDeclarations"]}
    assert {"generate_image", "job_status", "cancel_job", "get_weather", "web_search"} <= set(declared)
    assert declared["generate_image"]["parameters"]["required"] == ["prompt"]
    [response] = answer["functionResponses"]
    assert response["id"] == "function-call-1" and response["name"] == "generate_image"
    assert "Making the image now" in response["response"]["output"], response
    job_id = response["response"]["output"].rsplit(" ", 1)[1][:-1]
    # The call id reached offstage, which will answer that very call when the job ends.
    job = offstage.wait_until_ended(job_id)
    assert job["status"] == "completed"


def test_pipecat_snippet_lists_and_calls_the_tools(offstage):
    from pipecat.services.llm_service import FunctionCallParams

    namespace = run_snippet("pipecat", offstage.base)
    results: list = []

    async def result_callback(result, **_):
        results.append(result)

    async def use():
        client = namespace["offstage"]
        async with client:
            tools = await client.tools()
            [generate] = [f for f in tools.standard_tools if f.name == "generate_image"]
            params = FunctionCallParams(
                function_name="generate_image", tool_call_id="c1",
                arguments={"prompt": "a fox for pipecat"}, llm=None, pipeline_worker=None,
                context=None,
                result_callback=result_callback,
            )
            await generate.handler(params)
            return tools

    tools = asyncio.run(use())
    assert {"generate_image", "job_status"} <= {f.name for f in tools.standard_tools}
    assert results and "Making the image now" in results[0]


def test_livekit_snippet_uses_streamable_http_and_reports_progress(offstage):
    from livekit.agents import llm
    from livekit.agents.llm.utils import execute_function_call

    namespace = run_snippet("livekit", offstage.base)

    async def use():
        toolset = namespace["offstage"]
        await toolset.setup()
        try:
            context = llm.ToolContext([toolset])
            call = llm.FunctionToolCall(name="generate_image", call_id="c1",
                                        arguments=json.dumps({"prompt": "a fox for livekit"}))
            return context, await execute_function_call(call, context)
        finally:
            await toolset.aclose()

    context, result = asyncio.run(use())
    assert {"generate_image", "job_status"} <= set(context.function_tools)
    assert "Making the image now" in result.fnc_call_out.output


def inspector(node: str, *arguments: str) -> subprocess.CompletedProcess:
    cli = Path(os.environ["STACKS_NODE_MODULES"]) / "@modelcontextprotocol/inspector/clients/cli/build/index.js"
    return subprocess.run([node, str(cli), *arguments], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def node():
    path = os.environ.get("STACKS_NODE")
    assert path and os.environ.get("STACKS_NODE_MODULES"), "scripts/stacks sets STACKS_NODE"
    return path


def test_the_mcp_inspector_takes_the_http_config_and_finds_the_schemas_portable(offstage, node):
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder, "mcp.json")
        config.write_text(snippet("mcp-http", offstage.base))
        run = inspector(node, "--cli", "--config", str(config), "--server", "offstage",
                        "--method", "tools/list", "--strict")
    assert run.returncode == 0, run.stderr
    assert "portability" not in run.stderr, run.stderr
    names = {tool["name"] for tool in json.loads(run.stdout)["tools"]}
    assert {"generate_image", "job_status", "cancel_job"} <= names


def test_the_mcp_inspector_starts_the_stdio_config(node):
    config = json.loads(snippet("mcp-stdio", "unused"))
    server = config["mcpServers"]["offstage"]
    assert server["command"] == "offstage"
    server["command"] = binary()  # the README assumes `offstage` on PATH
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "mcp.json")
        path.write_text(json.dumps(config))
        run = inspector(node, "--cli", "--config", str(path), "--server", "offstage",
                        "-e", f"OFFSTAGE_DATA_DIR={folder}/data", "--cwd", str(ROOT),
                        "--method", "tools/call", "--tool-name", "generate_image",
                        "--tool-arg", "prompt=a fox for the inspector")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert "Making the image now" in result["content"][0]["text"], result
