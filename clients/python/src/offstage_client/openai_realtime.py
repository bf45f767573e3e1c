"""`OpenAIRealtime`: brings each finished offstage job into an `openai` SDK realtime connection
(`AsyncOpenAI().realtime.connect(...)`) at a moment the session takes it, and `mcp_tool`, the
`session.tools` entry that files OpenAI's own calls to offstage under the same conversation.

A session runs one response at a time: a `response.create` sent while one is active is refused
with `conversation_already_has_active_response`. So the adapter keeps its own view of the
session from the server events the app passes through it (`events()` or `observe()`): a
response is active from `response.created` to `response.done`, and one it asked for is on its
way from the moment it sends `response.create` until that `response.created` (or an `error`
naming the request) arrives. The app stays the only reader of the connection.

The server may start a response on its own (server VAD) just as the adapter asks for one. The
server then sends that response's `response.created` and, before its `response.done`, the
refusal naming offstage's `event_id`: the adapter sends the same `response.create` again after
that `response.done`, before anything else that needs an idle session. Once the session went
idle after a request with no refusal, the request was taken: it is never sent again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import Any, cast

import httpx2
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import (
    RealtimeClientEventParam,
    RealtimeErrorEvent,
    RealtimeServerEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    SessionCreatedEvent,
)
from openai.types.realtime.realtime_tools_config_union_param import Mcp

from .conversation import Conversation
from .errors import ProtocolError
from .events import Event

log = logging.getLogger(__name__)

# The server's refusal of a `response.create` sent while a response is active.
ALREADY_ACTIVE = "conversation_already_has_active_response"
# The server's answer to a `response.cancel` that came just after the response ended: harmless.
CANCEL_NOT_ACTIVE = "response_cancel_not_active"

# One OpenAI Realtime client event, as offstage's payload carries it.
Message = dict[str, Any]


def mcp_tool(conversation: Conversation, *, server_url: str | None = None) -> Mcp:
    """The `mcp` entry for `session.update`'s `session.tools`: OpenAI calls offstage with the
    conversation's headers (`Offstage-Conversation`, and `Offstage-Delivery` when set) and its
    token, so the jobs it starts are the ones `conversation` follows.

    `server_url` is offstage's MCP endpoint as OpenAI reaches it (public, https); it defaults to
    `conversation.mcp_url`, right when the conversation follows offstage at its public address.
    """
    url = server_url or conversation.mcp_url
    if not url.startswith(("https://", "http://")):
        raise ValueError(
            f"server_url must be the http(s) URL of offstage's MCP endpoint as OpenAI reaches it, "
            f"such as https://offstage.example.com/mcp, not {url!r}"
        )
    # OpenAI sends `authorization` as the bearer token itself; a second Authorization header
    # would clash with it.
    headers = {key: value for key, value in conversation.headers.items() if key != "Authorization"}
    tool: Mcp = {
        "type": "mcp",
        "server_label": "offstage",
        "server_url": url,
        "headers": headers,
        "require_approval": "never",
    }
    if conversation.token is not None:
        tool["authorization"] = conversation.token
    return tool


class OpenAIRealtime:
    """Sends each job ending of `conversation` into `connection`: offstage's `realtime.openai`
    messages, in event order, each job's once.

    ```python
    async with Conversation(OFFSTAGE, token=TOKEN) as conversation, \\
            client.realtime.connect(model="gpt-realtime") as connection, \\
            OpenAIRealtime(connection, conversation) as offstage:
        tools = [mcp_tool(conversation)]
        await connection.session.update(session={"type": "realtime", "tools": tools})
        async for event in offstage.events():
            ...  # the app handles every server event as before
    ```

    By the job's delivery hint:
    - `when_idle`: the `conversation.item.create` and `response.create` once no response is
      active or on its way; one job at a time, so each job gets its own response.
    - `interrupt`: `response.cancel` first if a response is active (none when idle, where the
      server would only answer an error), then as `when_idle` once it has ended.
    - `silent`: the item only, at once, even while a response is active (the server takes items
      at any time, and this one asks for no response); it waits only for earlier endings.

    With `inline_images`, the finished image goes as a `data:` URI of the bytes offstage serves
    (fetched from the base URL the conversation follows) instead of offstage's public image URL,
    for an offstage that OpenAI cannot reach. If that fetch fails, the item goes without its
    image part; its text still says the image is ready.

    Every server event of the connection must pass through `events()` or `observe()`, in order:
    the adapter sees the session only through them.
    """

    def __init__(
        self,
        connection: AsyncRealtimeConnection,
        conversation: Conversation,
        *,
        inline_images: bool = False,
    ) -> None:
        self.connection = connection
        self.conversation = conversation
        self.inline_images = inline_images
        # Endings received and not yet sent; the head leaves once all its messages are sent.
        self._pending: deque[Event] = deque()
        self._active: set[str | None] = set()
        # A `response.create` of ours was sent and neither its response nor a refusal has been
        # seen: a response is on its way.
        self._awaiting = False
        # The last `response.create` sent, until an error names it or the next one is sent.
        self._sent: Message | None = None
        # Refused while a response was active: waits for that response's `response.done`.
        self._refused: Message | None = None
        # Refused, and the response in its way has ended: sent again once the session is idle.
        self._owed: Message | None = None
        # Set on every change above; the delivery task is its only waiter.
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self._http: httpx2.AsyncClient | None = None

    @property
    def pending(self) -> list[str]:
        """The job ids whose endings arrived and are not yet all sent, oldest first."""
        return [ending.job["job_id"] for ending in self._pending]

    async def __aenter__(self) -> OpenAIRealtime:
        if self.inline_images:
            self._http = httpx2.AsyncClient(timeout=30)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._guard(self._follow()), name="offstage openai follow"),
            loop.create_task(self._guard(self._deliver_all()), name="offstage openai deliver"),
        ]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def events(self) -> AsyncIterator[RealtimeServerEvent]:
        """The connection's server events, each observed before the app gets it. Iterate it
        instead of the connection; it ends or raises as the connection's own iteration does."""
        async for event in self.connection:
            self.observe(event)
            yield event

    def observe(self, event: RealtimeServerEvent) -> None:
        """Notes one server event, for an app that reads the connection its own way (call it
        with every event, in order). Raises the error that stopped delivery, if one did: a
        refused token, say, or a connection that could not be written to."""
        if self._failure is not None:
            raise self._failure
        if isinstance(event, ResponseCreatedEvent):
            self._active.add(event.response.id)
            self._awaiting = False
        elif isinstance(event, ResponseDoneEvent):
            self._active.discard(event.response.id)
            self._release_refused()
        elif isinstance(event, RealtimeErrorEvent):
            self._error(event)
        elif isinstance(event, SessionCreatedEvent):
            # A new session (also after the SDK reconnected) has no response running, and a
            # request the old one had not answered will not be answered.
            self._active.clear()
            self._awaiting = False
            self._release_refused()
        else:
            return
        self._changed.set()

    # -- inside ------------------------------------------------------------------------------

    def _error(self, event: RealtimeErrorEvent) -> None:
        cause = event.error.event_id
        if self._sent is not None and cause == self._sent["event_id"]:
            self._awaiting = False
            if event.error.code == ALREADY_ACTIVE:
                self._refused = self._sent
            else:
                log.warning("OpenAI refused %s: %s", cause, event.error.message)
            self._sent = None
        elif cause and cause.startswith("offstage_") and event.error.code != CANCEL_NOT_ACTIVE:
            log.warning("OpenAI refused %s: %s", cause, event.error.message)

    def _release_refused(self) -> None:
        if self._refused is not None:
            self._owed, self._refused = self._refused, None

    def _idle(self) -> bool:
        return not self._active and not self._awaiting and self._refused is None

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._changed.clear()
            await self._changed.wait()

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("offstage delivery to OpenAI Realtime stopped: %s", error)
            self._failure = error

    async def _follow(self) -> None:
        async for ending in self.conversation.endings():
            self._pending.append(ending)
            self._changed.set()

    async def _deliver_all(self) -> None:
        while True:
            await self._until(lambda: bool(self._pending) or self._owed is not None)
            if self._pending:
                await self._deliver(self._pending[0])
                self._pending.popleft()
            else:
                await self._wait_idle()

    async def _deliver(self, ending: Event) -> None:
        # Prepared before any wait, so that the item follows the moment of idleness at once.
        messages = await self._messages(ending)
        cancel = [message for message in messages if message["type"] == "response.cancel"]
        create = [message for message in messages if message["type"] == "response.create"]
        if cancel:
            await self._cancel_active(cancel[0])
        if create:
            await self._wait_idle()
        for message in messages:
            if message["type"] not in ("response.cancel", "response.create"):
                await self._send(message)
        if create:
            await self._request(create[0])

    async def _cancel_active(self, cancel: Message) -> None:
        # A response we asked for may not have started yet: a cancel sent now would miss it.
        await self._until(lambda: not self._awaiting)
        if self._active:
            await self._send(cancel)

    async def _wait_idle(self) -> None:
        """Until no response is active or on its way; a refused `response.create` goes first."""
        while True:
            await self._until(self._idle)
            if self._owed is None:
                return
            owed, self._owed = self._owed, None
            await self._request(owed)

    async def _request(self, create: Message) -> None:
        self._sent = create
        self._awaiting = True
        await self._send(create)

    async def _send(self, message: Message) -> None:
        await self.connection.send(cast(RealtimeClientEventParam, message))

    async def _messages(self, ending: Event) -> list[Message]:
        job_id = ending.job["job_id"]
        realtime = ending.body.get("realtime")
        if not realtime:
            raise ProtocolError(f"the ending of job {job_id} has no realtime payloads: "
                                "is the server an offstage of the client's version?")
        messages = cast(list[Message], copy.deepcopy(realtime["openai"]))
        if self._http is not None:
            await self._inline_images(messages, job_id, self._http)
        return messages

    async def _inline_images(
        self, messages: list[Message], job_id: str, http: httpx2.AsyncClient
    ) -> None:
        for message in messages:
            parts: list[dict[str, Any]] = message.get("item", {}).get("content", [])
            images = [part for part in parts if part.get("type") == "input_image"]
            if not images:
                continue
            data_uri = await self._image_data_uri(job_id, http)
            for part in images:
                if data_uri is None:
                    parts.remove(part)
                else:
                    part["image_url"] = data_uri

    async def _image_data_uri(self, job_id: str, http: httpx2.AsyncClient) -> str | None:
        url = f"{self.conversation.stream.base_url}/v1/jobs/{job_id}/image"
        try:
            response = await http.get(url)
            response.raise_for_status()
        except httpx2.HTTPError as error:
            log.warning("the image of offstage job %s could not be fetched (%s): its item goes "
                        "without it", job_id, error)
            return None
        mime = response.headers.get("content-type", "image/png").partition(";")[0].strip()
        return f"data:{mime};base64,{base64.b64encode(response.content).decode('ascii')}"
