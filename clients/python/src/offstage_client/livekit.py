"""`OffstageToolset`: offstage's tools for a LiveKit agent, with each job's ending delivered as
the late result of the very call that started it, through LiveKit's async tools.

LiveKit keeps nothing of a call once it has returned, so a job tool's placeholder would be the
last the agent hears of the job. Here a job tool's call hands the placeholder to
`RunContext.update()` instead (LiveKit speaks it and lets the conversation go on), waits for the
job's ending on the `Conversation`, and returns it as the call's final result: LiveKit adds it to
the chat context and replies once the agent is idle. The toolset is an `MCPToolset` (an
`AsyncToolset`) on an `MCPServerHTTP` that sends the conversation's headers, so the jobs its
calls make are the ones the conversation follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeAlias

from livekit.agents import RunContext, ToolError, ToolResult, function_tool
from livekit.agents.llm import RawFunctionTool, mcp
from livekit.agents.llm.utils import prepare_function_arguments

from .conversation import Conversation
from .events import Event

log = logging.getLogger(__name__)

# One of LiveKit's MCP tools (`mcp.MCPTool`), as the type checker spells it.
_Tool: TypeAlias = "RawFunctionTool[..., Awaitable[Any]]"

# `job_status {wait_ms}` sends progress while it waits: LiveKit turns the first into the call's
# interim answer, so the turn is not held for the wait.
_TOOL_OPTIONS: dict[str, mcp.MCPToolOptions] = {"job_status": {"report_progress": True}}


class OffstageToolset(mcp.MCPToolset):
    """offstage's tools, each job's ending coming back as its call's final result.

    ```python
    conversation = Conversation("http://127.0.0.1:8787", token=token)
    async with conversation:
        session = AgentSession(llm=…, tools=[OffstageToolset(conversation)])
        await session.start(Agent(instructions="…"))
    ```

    On the session (not on an `Agent`) the calls survive a handoff, and each ending goes to
    the agent current when it arrives.

    A call whose result is a job at work (`structuredContent` with a `job_id` and status
    `working`) becomes an async call: its text goes to `ctx.update()`, and once the job ends its
    `say` sentence (with the image URL when the job made one) is the call's final result, or its
    error as a `ToolError`. A job with delivery `silent` is added to the chat context without a
    reply. Every other result is returned as LiveKit's MCP tools return it.
    """

    def __init__(self, conversation: Conversation, *, id: str = "offstage") -> None:
        if not isinstance(conversation, Conversation):
            raise TypeError(
                "OffstageToolset takes the offstage_client.Conversation whose headers the MCP "
                f"client sends, not {type(conversation).__name__}"
            )
        self.conversation = conversation
        self._server = _OffstageServer(conversation)
        super().__init__(id=id, mcp_server=self._server, tool_options=_TOOL_OPTIONS)

    async def aclose(self) -> None:
        # LiveKit's close awaits every call it may not cancel, and a job can take minutes (or,
        # with offstage gone, never end): the calls still waiting end as cancelled instead,
        # and their jobs go on.
        self._server.stop_waiting()
        await super().aclose()


@dataclass(frozen=True, slots=True)
class _JobStarted:
    """What a call answered when it left a job at work: the job and the placeholder's text."""

    job_id: str
    text: str


def _resolve(context: mcp.MCPToolResultContext) -> Any:
    structured = context.result.structured_content or {}
    job_id = structured.get("job_id")
    if isinstance(job_id, str) and structured.get("status") == "working":
        text = "\n".join(part.text for part in context.result.content if part.type == "text")
        return _JobStarted(job_id, text)
    return mcp._default_tool_result_resolver(context)


class _OffstageServer(mcp.MCPServerHTTP):
    """`MCPServerHTTP` on the conversation's MCP endpoint, whose tools wait for their jobs."""

    def __init__(self, conversation: Conversation) -> None:
        super().__init__(
            url=conversation.mcp_url,
            # A profile's URL ends in /mcp/<profile>, for which LiveKit would pick SSE.
            transport_type="streamable_http",
            headers=conversation.headers,
            tool_result_resolver=_resolve,
        )
        self._conversation = conversation
        # The jobs a call of this server waits for: a second result naming one (a repeated
        # call offstage answers with the job under way, a `job_status`) must not wait too,
        # or the ending would reach the chat context twice.
        self._awaited: set[str] = set()
        self._waits: set[asyncio.Future[Event]] = set()

    def stop_waiting(self) -> None:
        """Cancels every wait for a job's ending; their calls end as cancelled."""
        for wait in self._waits:
            wait.cancel()

    async def list_tools(
        self, *, tool_options: dict[str, mcp.MCPToolOptions] | None = None
    ) -> list[_Tool]:
        return [self._waiting(tool) for tool in await super().list_tools(tool_options=tool_options)]

    def _waiting(self, tool: _Tool) -> _Tool:
        """`tool`, made to answer a job at work with `ctx.update()` and then its ending."""

        async def call(ctx: RunContext[Any], raw_arguments: dict[str, Any]) -> Any:
            # LiveKit's tool takes a RunContext only when it reports progress (job_status).
            args, kwargs = prepare_function_arguments(
                fnc=tool, json_arguments=raw_arguments, call_ctx=ctx
            )
            output = await tool(*args, **kwargs)
            if not isinstance(output, _JobStarted):
                return output
            if output.job_id in self._awaited:
                return output.text
            self._awaited.add(output.job_id)
            await ctx.update(output.text)
            return await self._ending(output.job_id)

        info = tool.info
        return function_tool(
            call,
            raw_schema=info.raw_schema,
            flags=info.flags,
            on_duplicate=info.on_duplicate,
            duplicate_scope=info.duplicate_scope,
        )

    async def _ending(self, job_id: str) -> Any:
        wait = asyncio.ensure_future(self._conversation.wait(job_id))
        self._waits.add(wait)
        try:
            ending = await wait
        except Exception as error:
            # `wait` fails only when following stopped (a refused token, a closed Conversation):
            # the model hears that the result will not come by itself, and how to get it.
            log.error("offstage job %s: its ending cannot be followed: %s", job_id, error)
            raise ToolError(
                f"Job {job_id} is still running, but its result will not arrive by itself; "
                f"call job_status with job_id {job_id} to read it."
            ) from error
        finally:
            self._waits.discard(wait)
        return _final_result(ending)


def _final_result(ending: Event) -> Any:
    """What LiveKit adds to the chat context for a job's ending: the `say` sentence, plus the
    image URL of a finished image; a `ToolError` for a failed or cancelled job; a result that
    asks for no reply when the delivery is `silent`."""
    job = ending.job
    text = ending.body.get("say") or job.get("error") or f"The job {job['job_id']} ended."
    image_url = job.get("image_url")
    if ending.type == "job.completed" and image_url:
        text = f"{text} Image: {image_url}"
    if ending.body["delivery"] == "silent":
        return ToolResult(text, reply_required=False)
    if ending.type != "job.completed":
        raise ToolError(text)
    return text
