"""`GeminiLive`: owns the link between one offstage `Conversation` and the google-genai Live
sessions (`AsyncSession`) that carry it. It runs the model's function calls on offstage, keeps
a NON_BLOCKING job call open until its job ends and then closes it with the job's final
`toolResponse`, and otherwise adds the ending as a `clientContent` turn; each ending once, also
across `GoAway`, a dropped connection and session resumption.

The app keeps the session and reads `session.receive()` itself; it passes every message to
`observe()`, which is all this module learns from the session: the calls Gemini cancels, when
the model's turn ends, `GoAway`, and the newest resumable handle.

A call does not outlive its connection. Gemini gives a resumable handle only while no function
call is executing (google-genai's `LiveServerSessionResumptionUpdate.resumable`), and a resumed
session does not act on a `FunctionResponse` for a call it did not issue. So every call still
open when a new session is attached is forgotten, and its job's ending arrives as client content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from google.genai import types
from google.genai.live import AsyncSession
from mcp import ClientSession
from mcp.types import CallToolResult, TextContent
from websockets.exceptions import ConnectionClosed

from .._event_types import GeminiPayloads
from ..conversation import Conversation
from ..events import Event
from . import _calls
from ._calls import CALL_ID_META, mcp_session

__all__ = ["CALL_ID_META", "GeminiLive", "mcp_session"]

log = logging.getLogger(__name__)

# Message = what goes into the session for one ending: the call's final answer, or a user turn.
Message = types.FunctionResponse | types.LiveClientContent


@dataclass(frozen=True)
class _Ending:
    job_id: str
    delivery: str
    gemini: GeminiPayloads


class GeminiLive:
    """Brings `conversation`'s finished jobs into the Live session the app holds.

    ```python
    async with GeminiLive(conversation) as live, mcp_session(conversation) as mcp:
        config = live.connect_config(CONFIG)  # resumes from the newest handle
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            live.attach(session)
            while not live.going_away:
                async for message in session.receive():  # ends after each model turn
                    live.observe(message)
                    if message.tool_call:
                        await live.answer(message.tool_call, mcp)
    ```

    After a `GoAway` (`going_away`) or a dropped connection, connect again the same way and
    `attach` the new session; endings that arrived meanwhile are held and go to it.
    """

    def __init__(self, conversation: Conversation) -> None:
        _calls.check(conversation, "GeminiLive")
        self.conversation = conversation
        self._session: AsyncSession | None = None
        self._non_blocking: frozenset[str] = frozenset()
        # Open NON_BLOCKING calls of the attached session: call id -> the job that closes it.
        self._open: dict[str, str] = {}
        self._handle: str | None = None
        self._going_away = False
        self._model_speaking = False
        # While a call is being answered, its job may end before it is known to be open.
        self._answering = 0
        self._pending: list[_Ending] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None

    # -- the session ---------------------------------------------------------------------------

    @property
    def resumption_handle(self) -> str | None:
        """The newest resumable handle Gemini sent (`session_resumption_update`), if any."""
        return self._handle

    @property
    def going_away(self) -> bool:
        """Whether the attached session announced its end (`GoAway`): connect again and attach.
        Endings are held until then."""
        return self._going_away

    def connect_config(self, config: types.LiveConnectConfigOrDict) -> types.LiveConnectConfig:
        """`config` for `client.aio.live.connect`, resuming from `resumption_handle` (and asking
        for handles on the first connection). Its function declarations tell which calls stay
        open: those declared `NON_BLOCKING` (`offstage tools export --format gemini-live`); the
        others, and tools given as an MCP session, are answered once and their jobs' endings
        arrive as client content."""
        config = types.LiveConnectConfig.model_validate(config)
        self._non_blocking = frozenset(_non_blocking(config.tools or []))
        resumption = config.session_resumption or types.SessionResumptionConfig()
        return config.model_copy(
            update={"session_resumption": resumption.model_copy(update={"handle": self._handle})}
        )

    def attach(self, session: AsyncSession) -> None:
        """Makes `session` the one endings go to: the first, and each one connected after a
        `GoAway` or a drop. The calls of the previous session are forgotten (see the module)."""
        self._check_running()
        self._session = session
        self._open.clear()
        self._going_away = False
        self._model_speaking = False
        self._wake.set()

    def observe(self, message: types.LiveServerMessage) -> None:
        """Takes note of one message the app received from the attached session."""
        cancelled = message.tool_call_cancellation
        for call_id in (cancelled.ids if cancelled else None) or []:
            self._open.pop(call_id, None)
        content = message.server_content
        if content is not None:
            if content.turn_complete or content.interrupted:
                self._model_speaking = False
            elif content.model_turn is not None or content.output_transcription is not None:
                self._model_speaking = True
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self._handle = update.new_handle
        if message.go_away is not None:
            self._going_away = True
        self._wake.set()

    async def answer(self, tool_call: types.LiveServerToolCall, mcp: ClientSession) -> None:
        """Runs each function call of `tool_call` on offstage (`mcp`, see `mcp_session`) and
        answers them all at once with the tools' replies. A call that started a job stays open
        (`will_continue=True`) when its function is declared NON_BLOCKING, until the job ends.
        A closed session raises websockets' `ConnectionClosed`: connect again and attach."""
        session = self._attached()
        calls = tool_call.function_calls or []
        self._answering += 1
        try:
            results = await asyncio.gather(*(_calls.run(mcp, call) for call in calls))
            opened: dict[str, str] = {}
            responses = [self._reply(call, result, opened) for call, result in zip(calls, results)]
            if responses:
                await session.send_tool_response(function_responses=responses)
            self._open.update(opened)
        finally:
            self._answering -= 1
            self._wake.set()

    # -- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts following the conversation's endings in the running loop (idempotent)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._follow()), loop.create_task(self._deliver())]

    async def aclose(self) -> None:
        """Stops delivering; endings not yet delivered stay undelivered."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> GeminiLive:
        self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- inside --------------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._tasks:
            raise RuntimeError(
                "GeminiLive is not running: use `async with GeminiLive(conversation) as live`"
            )

    def _attached(self) -> AsyncSession:
        self._check_running()
        if self._session is None:
            raise RuntimeError("no Live session attached: call `live.attach(session)` first")
        return self._session

    def _reply(
        self, call: types.FunctionCall, result: CallToolResult | str, opened: dict[str, str]
    ) -> types.FunctionResponse:
        """The immediate answer to `call`; records it in `opened` when it stays open."""
        reply = types.FunctionResponse(id=call.id, name=call.name)
        if isinstance(result, str):
            reply.response = {"error": result}
            return reply
        text = "".join(block.text for block in result.content if isinstance(block, TextContent))
        reply.response = {"error" if result.is_error else "output": text}
        job_id = _calls.started_job(result)
        # One open call per job: a repeated call for a job under way is answered and closed.
        if (
            job_id is not None
            and call.id is not None
            and call.name in self._non_blocking
            and job_id not in self._open.values()
            and job_id not in opened.values()
        ):
            reply.will_continue = True
            opened[call.id] = job_id
        return reply

    async def _follow(self) -> None:
        try:
            async for event in self.conversation.endings():
                ending = _ending(event)
                if ending is not None:
                    self._pending.append(ending)
                    self._wake.set()
        except Exception as error:
            log.error("offstage endings for %s stopped: %s", self.conversation.id, error)
            self._failure = error

    async def _deliver(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush()
        except Exception as error:
            # A payload the library refuses: the app hears it at its next `answer` or `attach`
            # rather than endings stopping without a word.
            log.error("offstage endings for %s stopped: %s", self.conversation.id, error)
            self._failure = error

    async def _flush(self) -> None:
        """Sends every held ending the session can take now, in order; the rest wait."""
        index = 0
        while index < len(self._pending):
            session = self._session
            if session is None or self._going_away or self._answering:
                return
            ending = self._pending[index]
            message = self._message(ending)
            if message is None:
                index += 1
                continue
            del self._pending[index]
            try:
                await _send(session, message)
            except ConnectionClosed as closed:
                # Not taken: it goes to the next session the app attaches.
                log.warning("Live session closed (%s); job %s waits for the next session",
                            closed, ending.job_id)
                self._pending.insert(index, ending)
                if self._session is session:
                    self._session = None
                return
            self._sent(message)

    def _message(self, ending: _Ending) -> Message | None:
        """What to send for `ending` now, or None while it has to wait for the model's turn."""
        final = ending.gemini.get("tool_response")
        call_id = next((call for call, job in self._open.items() if job == ending.job_id), None)
        if call_id is not None and final is not None:
            [response] = final["toolResponse"]["functionResponses"]
            return types.FunctionResponse.model_validate({**response, "id": call_id})
        # A user turn cuts into the model's speech: only `interrupt` may.
        if self._model_speaking and ending.delivery != "interrupt":
            return None
        content = ending.gemini["client_content"]["clientContent"]
        return types.LiveClientContent.model_validate(content)

    def _sent(self, message: Message) -> None:
        if isinstance(message, types.FunctionResponse):
            self._open.pop(message.id or "", None)
            speaks = message.scheduling != types.FunctionResponseScheduling.SILENT
        else:
            speaks = bool(message.turn_complete)
        # The model answers what it was just given; a second turn sent now would cut it off.
        self._model_speaking = self._model_speaking or speaks


def _ending(event: Event) -> _Ending | None:
    realtime = event.body.get("realtime")
    if not realtime:
        log.error("offstage event %s ends job %s without realtime payloads", event.id,
                  event.job["job_id"])
        return None
    return _Ending(event.job["job_id"], event.body["delivery"], realtime["gemini"])


async def _send(session: AsyncSession, message: Message) -> None:
    if isinstance(message, types.FunctionResponse):
        await session.send_tool_response(function_responses=[message])
    else:
        await session.send_client_content(
            turns=list(message.turns or []), turn_complete=bool(message.turn_complete)
        )


def _non_blocking(tools: Iterable[object]) -> Iterable[str]:
    for tool in tools:
        if isinstance(tool, types.Tool):
            for declaration in tool.function_declarations or []:
                if declaration.behavior == types.Behavior.NON_BLOCKING and declaration.name:
                    yield declaration.name
