"""What the stack tests share: an MCP session with the official Python SDK, the tools as
`tools/list` serves them, `offstage tools export`, and the README's runnable snippets."""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import ROOT, binary


@asynccontextmanager
async def mcp_session(url: str):
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def listed_tools(url: str):
    async with mcp_session(url) as session:
        return (await session.list_tools()).tools


def export(format_name: str) -> object:
    """`offstage tools export --format …`, run from the repository root as a user would."""
    out = subprocess.run(
        [binary(), "tools", "export", "--format", format_name],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


SNIPPET = re.compile(r"^```(\w+) snippet=([\w-]+)\n(.*?)^```$", re.S | re.M)


def readme_snippets() -> dict[str, tuple[str, str]]:
    """Every fenced block in README.md marked `snippet=<name>`, as {name: (language, code)}."""
    text = (ROOT / "README.md").read_text()
    found: dict[str, tuple[str, str]] = {}
    for language, name, code in SNIPPET.findall(text):
        assert name not in found, f"two README snippets are called {name}"
        found[name] = (language, code)
    return found


def snippet(name: str, base: str) -> str:
    """A README snippet with the README's address replaced by the test server's."""
    language, code = readme_snippets()[name]
    return code.replace("http://127.0.0.1:8787", base)


def text_of(result) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


def job_id_of(result) -> str:
    return result.structured_content["job_id"]


def repo_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
