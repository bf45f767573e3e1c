"""What the stack tests share: an MCP session with the official Python SDK, the tools as
`tools/list` serves them, `offstage tools export`, and the runnable snippets of README.md and
docs/."""

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


def snippet_pages() -> list[Path]:
    """The pages whose snippets run: README.md and every docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_snippets() -> dict[str, tuple[str, str, str]]:
    """Every fenced block marked `snippet=<name>` on those pages, as {name: (language, code,
    page)}; a name may be used once across all of them."""
    found: dict[str, tuple[str, str, str]] = {}
    for path in snippet_pages():
        page = str(path.relative_to(ROOT))
        for language, name, code in SNIPPET.findall(path.read_text()):
            assert name not in found, f"two snippets are called {name}: in {found[name][2]} and {page}"
            found[name] = (language, code, page)
    return found


def readme_snippets() -> dict[str, tuple[str, str]]:
    """Every snippet of README.md and docs/*.md, as {name: (language, code)}."""
    return {name: (language, code) for name, (language, code, _) in all_snippets().items()}


def snippet_page(name: str) -> str:
    """The page a snippet is on, such as `docs/stacks.md`."""
    return all_snippets()[name][2]


def snippet(name: str, base: str) -> str:
    """A snippet with the docs' address replaced by the test server's."""
    language, code = readme_snippets()[name]
    return code.replace("http://127.0.0.1:8787", base)


def text_of(result) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


def job_id_of(result) -> str:
    return result.structured_content["job_id"]


def repo_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
