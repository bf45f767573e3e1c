"""`OffstageMCP`: offstage's tools for a pipecat pipeline, through pipecat's own `MCPClient`, as
async function calls whose finished jobs come back into the LLM context by themselves.

pipecat's `MCPClient` hands the LLM the text of a tool result and forgets the call, so the
placeholder of a job ("Making the image now… job 4vkhxg4sz3j2ecg9.") is all the model ever
hears of it. Here every offstage tool is registered the way pipecat runs its own async function
calls (`cancel_on_interruption=False`): a job's placeholder goes to the context at once as an
intermediate result (`is_final=False`), so the LLM carries on; the handler waits for the job's
ending on the conversation's event stream; the ending goes in as the call's final result, which
pipecat injects as a developer message and runs the LLM on, with no user turn needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from mcp.client.session_group import StreamableHttpParameters
from pipecat.adapters.llm.schemas.direct_function import tool_options
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.services.llm_service import FunctionCallHandler, FunctionCallParams
from pipecat.services.mcp_service import MCPClient

from .conversation import Conversation
from .events import Event

# The end of the line with which a call that started (or joined) a job answers:
# "…; Don't call generate_image again for it; job 4vkhxg4sz3j2ecg9." pipecat's MCPClient keeps
# only a result's text, and this is where offstage's text names the job. `job_status` ("… Job
# <id>.") and `cancel_job` ("Cancelled job <id>.") report on a job without the semicolon.
PLACEHOLDER = re.compile(r"; job ([0-9A-Za-z]+)\.\s*$")

# offstage keeps MCP sessions in memory: after a restart it answers a call on an older session
# with 404 "Session not found". MCPClient hands that on as the call's text and keeps the dead
# session, so every later call would fail the same way.
CALL_FAILED = "Error calling mcp tool "
SESSION_GONE = "Session not found"


class OffstageMCP:
    """offstage's MCP tools for one pipecat conversation.

    ```python
    conversation = Conversation("http://127.0.0.1:8787", token=token)
    offstage = OffstageMCP(conversation)
    context = LLMContext(messages, tools=await offstage.tools())
    ```

    `client` is the pipecat `MCPClient`, connected to `conversation.mcp_url` with
    `conversation.headers`, so the jobs its calls make are the ones `conversation` follows.
    """

    def __init__(self, conversation: Conversation) -> None:
        if not isinstance(conversation, Conversation):
            raise TypeError(
                "OffstageMCP takes an offstage_client.Conversation, e.g. "
                "OffstageMCP(Conversation('http://127.0.0.1:8787', token=token))"
            )
        self.conversation = conversation
        self.client = MCPClient(
            server_params=StreamableHttpParameters(
                url=conversation.mcp_url, headers=conversation.headers
            )
        )
        self._sessions = _Sessions(self.client)
        self._handler = _JobCalls(self)

    async def tools(self) -> ToolsSchema:
        """offstage's tools with their handlers, for `LLMContext(tools=…)`: pipecat registers
        them when the context advertises them, as async calls, and calls `aclose` when the
        pipeline is torn down. Connects the MCP client and starts following the conversation."""
        self.conversation.start()
        listed = await self.client.tools()
        for schema in listed.standard_tools:
            if schema.handler is not None:
                self._handler.inner[schema.name] = schema.handler
        return ToolsSchema(
            standard_tools=[
                FunctionSchema(
                    name=schema.name,
                    description=schema.description,
                    properties=schema.properties,
                    required=schema.required,
                    handler=self._handler,
                )
                for schema in listed.standard_tools
            ]
        )

    async def aclose(self) -> None:
        """Closes the MCP connection and stops following the conversation (idempotent)."""
        await self.client.close()
        await self.conversation.aclose()


class _JobCalls:
    """The one handler of every offstage tool: MCPClient's call, and for a job, its ending."""

    def __init__(self, offstage: OffstageMCP) -> None:
        self.offstage = offstage
        self.inner: dict[str, FunctionCallHandler] = {}
        # Jobs a call of this conversation already waits for: a repeated call that offstage
        # answered with the same job ("That image is already being made") must not deliver
        # the same ending a second time.
        self.waiting: set[str] = set()
        # Read by pipecat when it registers the handler (LLMService._record_tool_cleanup).
        self._pipecat_cleanup = offstage.aclose
        tool_options(self, cancel_on_interruption=False)

    async def __call__(self, params: FunctionCallParams) -> None:
        answer = await self._call(params)
        found = PLACEHOLDER.search(answer)
        if found is None or found.group(1) in self.waiting:
            await params.result_callback(answer)
            return
        job_id = found.group(1)
        self.waiting.add(job_id)
        try:
            # run_llm=True: pipecat would otherwise hold the LLM while a sibling call of the same
            # response still runs, and every job of a batch is still running. (The answer is the
            # call's own line: the conversation's headers turn offstage's piggy-back off, since
            # each ending reaches the model as its own call's final result.)
            await params.result_callback(
                answer,
                properties=FunctionCallResultProperties(is_final=False, run_llm=True),
            )
            ending = await self.offstage.conversation.wait(job_id)
        finally:
            self.waiting.discard(job_id)
        # Each ending runs the LLM when it arrives, not when the batch's last job ends, unless
        # the conversation asked for silent delivery (context only).
        speak = ending.body["delivery"] != "silent"
        await params.result_callback(
            spoken(ending), properties=FunctionCallResultProperties(run_llm=speak)
        )

    async def _call(self, params: FunctionCallParams) -> str:
        """The tool result's text, as pipecat's MCPClient makes it (errors included). A call
        that offstage refused for a session it no longer knows never ran: it is made again on
        a new session."""
        sessions = self.offstage._sessions
        async with sessions.call() as session:
            answer = await self._ask(params)
        if answer.startswith(CALL_FAILED) and answer.endswith(SESSION_GONE):
            await sessions.renew(session)
            async with sessions.call():
                answer = await self._ask(params)
        return answer

    async def _ask(self, params: FunctionCallParams) -> str:
        answers: list[Any] = []

        async def keep(
            result: Any, *, properties: FunctionCallResultProperties | None = None
        ) -> None:
            answers.append(result)

        inner = self.inner[params.function_name]
        await inner(dataclasses.replace(params, result_callback=keep))
        return "".join(str(answer) for answer in answers)


class _Sessions:
    """Connects the MCPClient again when offstage has forgotten its session, once for all the
    calls that found out, and only when no call is under way: closing a session fails every
    call still on it."""

    def __init__(self, client: MCPClient) -> None:
        self.client = client
        self.number = 0
        self.calls = 0
        self.renewing = False
        self.changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def call(self) -> AsyncIterator[int]:
        """Holds off a renewal while one call runs; yields the number of its session."""
        async with self.changed:
            await self.changed.wait_for(lambda: not self.renewing)
            self.calls += 1
            number = self.number
        try:
            yield number
        finally:
            async with self.changed:
                self.calls -= 1
                self.changed.notify_all()

    async def renew(self, seen: int) -> None:
        """A new session, unless another call renewed session `seen` already."""
        async with self.changed:
            await self.changed.wait_for(lambda: not self.renewing)
            if self.number != seen:
                return
            self.renewing = True
            await self.changed.wait_for(lambda: self.calls == 0)
        try:
            await self.client.close()
            await self.client.start()
        finally:
            async with self.changed:
                self.renewing = False
                self.number += 1
                self.changed.notify_all()


def spoken(ending: Event) -> str:
    """What the model is told when a job ended: offstage's sentence (`say`), then the image
    URL of a finished image, the result of another finished job, or why it did not finish."""
    job = ending.job
    said = ending.body.get("say") or f"The {job['tool'].replace('_', ' ')} job {job['status']}."
    if job["status"] == "completed":
        if job.get("image_url"):
            return f"{said} Image: {job['image_url']}"
        if job.get("result") is not None:
            return f"{said} Result: {json.dumps(job['result'], ensure_ascii=False)}"
        return said
    error = job.get("error")
    return f"{said} {error}" if error and error not in said else said
