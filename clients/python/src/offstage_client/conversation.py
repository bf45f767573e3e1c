"""`Conversation`: one realtime conversation's link to offstage, shared by every adapter. It
names the conversation for the MCP client (the `Offstage-Conversation` header and the rest),
follows the conversation's events in the background with an `EventStream`, and hands each
job's ending out once: to whoever waits for that job (`wait`), and to every reader of
`endings()`.

A job ends once, but its ending event can reach a follower more than once in the life of an
app (a replay from `after=0` after the app restarted with an older id, two instances, a
webhook and the stream): the ending is keyed by job id, so each job is handed out once per
`Conversation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Literal

from .events import Event, EventStream

log = logging.getLogger(__name__)

# What the MCP client sends; offstage files the call's job under it (docs/results.md, "Conversations").
CONVERSATION_HEADER = "Offstage-Conversation"
DELIVERY_HEADER = "Offstage-Delivery"
# Set to `off`: offstage leaves finished jobs out of the conversation's next tool results,
# because the adapter brings each ending in itself and the model would hear it twice.
PIGGYBACK_HEADER = "Offstage-Piggyback"

Delivery = Literal["interrupt", "when_idle", "silent"]

# Endings kept for a late `wait` (a job that ended before its waiter asked): enough for every
# job one conversation makes, bounded so a long-lived one does not grow without end.
KEEP_ENDINGS = 1024


class Conversation:
    """One realtime conversation as offstage sees it.

    ```python
    conversation = Conversation("http://127.0.0.1:8787", token=token)
    mcp = MCPClient(url=conversation.mcp_url, headers=conversation.headers)  # any MCP client
    async with conversation:
        ending = await conversation.wait(job_id)      # or: async for e in conversation.endings()
    ```

    `id` is the conversation's name (a fresh `call-…` unless given). `headers` carries it, the
    bearer token and the delivery hint for the MCP client, so the jobs its calls make are the
    ones this object follows. They also turn offstage's piggy-back off (`Offstage-Piggyback:
    off`): an adapter brings each ending into the conversation, and the next tool result need
    not say it again. Pass `piggyback=True` when nothing delivers the endings. Events are followed from `after` (0: from the conversation's
    first event, so a job started before the follower was running is not missed; pass a stored
    `last_id` to resume after a restart of the app). The remaining keyword arguments go to
    `EventStream` (backoff, silence timeout, an `httpx2.AsyncClient`).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | None = None,
        id: str | None = None,
        delivery: Delivery | None = None,
        profile: str | None = None,
        piggyback: bool = False,
        after: int | None = 0,
        **stream_options: Any,
    ) -> None:
        bases = [base_url] if isinstance(base_url, str) else list(base_url)
        if not bases:
            raise ValueError("Conversation needs at least one base URL")
        self.base_urls = [base.rstrip("/") for base in bases]
        self.id = id or f"call-{secrets.token_hex(8)}"
        self.token = token
        self.delivery = delivery
        self.profile = profile
        self.piggyback = piggyback
        self._stream = EventStream(
            self.base_urls, token=token, conversation=self.id, after=after, **stream_options
        )
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._ended: OrderedDict[str, Event] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[Event]]] = {}
        self._readers: list[asyncio.Queue[Event | None]] = []
        self._closed = False

    # -- what the MCP client needs ---------------------------------------------------------

    @property
    def mcp_url(self) -> str:
        """offstage's MCP endpoint (`/mcp`, or `/mcp/<profile>`) on the first base URL."""
        path = f"/mcp/{self.profile}" if self.profile else "/mcp"
        return self.base_urls[0] + path

    @property
    def headers(self) -> dict[str, str]:
        """The HTTP headers of this conversation's MCP requests: `Offstage-Conversation`,
        `Offstage-Piggyback: off` unless asked to keep it, and `Authorization` and
        `Offstage-Delivery` when set. A new dict each time."""
        headers = {CONVERSATION_HEADER: self.id}
        if not self.piggyback:
            headers[PIGGYBACK_HEADER] = "off"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.delivery is not None:
            headers[DELIVERY_HEADER] = self.delivery
        return headers

    # -- following ---------------------------------------------------------------------------

    @property
    def last_id(self) -> int | None:
        """The id of the last event followed: store it, and pass it as `after` to resume."""
        return self._stream.last_id

    @property
    def stream(self) -> EventStream:
        """The underlying event stream (for `reconnects`, `base_url`)."""
        return self._stream

    def start(self) -> None:
        """Starts following in a background task of the running loop (idempotent)."""
        if self._closed:
            raise RuntimeError("this Conversation is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._follow(), name=f"offstage {self.id}"
            )

    async def aclose(self) -> None:
        """Stops following and closes the stream; waiters and readers see the end."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stream.close()
        self._finish(None)

    async def __aenter__(self) -> Conversation:
        self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait(self, job_id: str) -> Event:
        """The event that ended `job_id` (`job.completed`, `job.failed` or `job.cancelled`),
        at once when it already ended. Starts following if needed. Raises the stream's error
        (a refused token, say) if following stopped on one, and RuntimeError when closed."""
        if job_id in self._ended:
            return self._ended[job_id]
        self._check_open()
        self.start()
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        try:
            return await future
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiters[job_id]

    async def endings(self, *, replay: bool = True) -> AsyncIterator[Event]:
        """Every job ending of the conversation, each once, in event order: first those already
        followed (unless `replay` is false: a new realtime session on a conversation whose
        earlier session already heard them), then each one as it comes. Several readers each
        get every ending."""
        self._check_open()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        for ended in self._ended.values() if replay else ():
            queue.put_nowait(ended)
        self._readers.append(queue)
        self.start()
        try:
            while True:
                event = await queue.get()
                if event is None:
                    if self._failure is not None:
                        raise self._failure
                    return
                yield event
        finally:
            if queue in self._readers:
                self._readers.remove(queue)

    # -- inside ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise RuntimeError("this Conversation is closed")

    async def _follow(self) -> None:
        try:
            async for event in self._stream:
                if event.ended:
                    self._end(event)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # A refusal (wrong token, wrong address): retrying cannot help, so every waiter
            # and reader hears it rather than waiting forever.
            log.error("offstage conversation %s stopped following: %s", self.id, error)
            self._failure = error
            self._finish(error)

    def _end(self, event: Event) -> None:
        job_id = event.job["job_id"]
        if job_id in self._ended:
            return
        self._ended[job_id] = event
        while len(self._ended) > KEEP_ENDINGS:
            self._ended.popitem(last=False)
        for future in self._waiters.pop(job_id, []):
            if not future.done():
                future.set_result(event)
        for queue in self._readers:
            queue.put_nowait(event)

    def _finish(self, error: BaseException | None) -> None:
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(error or RuntimeError("the Conversation was closed"))
        self._waiters.clear()
        for queue in self._readers:
            queue.put_nowait(None)
