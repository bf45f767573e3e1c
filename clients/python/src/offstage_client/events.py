"""`EventStream`: follows an offstage server's `GET /v1/events` for a conversation and/or a job,
across dropped connections, restarts and instances, and yields each event once, in id order.

offstage gives every event a durable, increasing id and, asked with `Last-Event-ID`, replays
exactly the events after it (docs/results.md, "Event stream for host apps"). So the whole job of this
module is to always reconnect with the id of the last event it yielded, and to drop anything at
or below that id should a server or a switch of instance ever send it again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import anyio
import httpx2

from ._event_types import EventBody, JobView
from .errors import ProtocolError, RefusedError

log = logging.getLogger(__name__)

# The event types after which a job does not change again.
ENDED = frozenset({"job.completed", "job.failed", "job.cancelled"})

# offstage's default `push.keep_alive`: an idle stream gets a comment line this often.
KEEP_ALIVE = 15.0
# A connection that stayed up this long was healthy: the next drop starts the backoff afresh.
HEALTHY_AFTER = 10.0
# An event carries a job's result; the parser's 1 MiB default could refuse a large one, and a
# refused event would be asked for again forever.
MAX_EVENT_BYTES = 64 * 1024 * 1024
# 408 and 429 say "later", like 5xx; every other 4xx is an answer that retrying cannot change.
RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Event:
    """One job event: its durable id, its type (`job.created`, `job.progress`, `job.completed`,
    `job.failed` or `job.cancelled`) and the JSON body of schemas/event.json."""

    id: int
    type: str
    body: EventBody

    @property
    def job(self) -> JobView:
        """The job as this change left it: the same JSON as `job_status`."""
        return self.body["job"]

    @property
    def ended(self) -> bool:
        """Whether the job has ended with this event (completed, failed or cancelled)."""
        return self.type in ENDED


class EventStream:
    """The events of one token's jobs, optionally only one conversation's or one job's.

    ```python
    stream = EventStream("http://127.0.0.1:8787", token=token, conversation="call-2f9c")
    async with stream as events:
        async for event in events:
            if event.ended:
                ...  # event.body["realtime"] holds the messages for the realtime session
    ```

    `after` is where the stream starts: 0 (the default) replays everything the filter matches
    from the start, so a stream opened after the first tool call still sees that job; an id
    resumes after it; None starts with live events only (and, until one arrives, a reconnect
    starts live again, since there is no id to resume from).

    On a dropped connection, a server restart, a 5xx or a stream silent for `silence_timeout`
    seconds (offstage sends a keep-alive comment every `push.keep_alive`, 15 s by default) it
    reconnects with `Last-Event-ID`, waiting an exponential, jittered backoff between
    `backoff_initial` and `backoff_max` seconds. With several base URLs (instances on one
    PostgreSQL database, which share one id sequence) each reconnect goes to the next. A refusal
    (401, 403, 404, other 4xx) raises a RefusedError subclass at once instead.

    Iterate it from one task. A timeout around one `anext()` is harmless: the next call
    reconnects and resumes. To stop it, leave the `async with` block or call `close()`.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | None = None,
        conversation: str | None = None,
        job: str | None = None,
        after: int | None = 0,
        silence_timeout: float = 3 * KEEP_ALIVE,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        bases = [base_url] if isinstance(base_url, str) else list(base_url)
        if not bases:
            raise ValueError("EventStream needs at least one base URL")
        self.base_urls: list[str] = [base.rstrip("/") for base in bases]
        self.conversation = conversation
        self.job = job
        self.silence_timeout = silence_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._token = token
        self._last_id = after
        # The read timeout is the longest silence between two bytes, and keep-alive comments
        # are bytes: only a stream that has really gone quiet times out.
        self._timeout = httpx2.Timeout(connect_timeout, read=silence_timeout)
        self._owns_client = http_client is None
        self._client = http_client or httpx2.AsyncClient()
        self._turn = 0
        self._connections = 0
        self._closed = False
        self._released = False
        # The generator that holds the connection; None until the first `__anext__`, and again
        # after a cancelled one (the next starts afresh from `last_id`).
        self._events: AsyncGenerator[Event, None] | None = None
        # What `close()` from another task needs to wake the one waiting in `__anext__`.
        self._reading = False
        self._response: httpx2.Response | None = None
        self._wake: anyio.Event | None = None

    @property
    def last_id(self) -> int | None:
        """The id of the last event yielded (or `after`, before the first): where a reconnect,
        or a new stream after a restart of the app, resumes."""
        return self._last_id

    @property
    def base_url(self) -> str:
        """The base URL the stream is on, or connects to next."""
        return self.base_urls[self._turn % len(self.base_urls)]

    @property
    def reconnects(self) -> int:
        """How many times the stream connected again after its first connection."""
        return max(0, self._connections - 1)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._follow()
        self._reading = True
        try:
            return await self._events.__anext__()
        except anyio.get_cancelled_exc_class():
            # A cancelled wait (a timeout around `anext`) ends the generator, not the stream:
            # the next call reconnects after the last id yielded, so nothing is lost.
            self._events = None
            raise
        finally:
            self._reading = False
            if self._closed:
                await self._release()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection (and the HTTP client, unless it was passed in). From another
        task, it ends the iteration there: its `async for` stops."""
        if self._closed:
            return
        self._closed = True
        if not self._reading:
            await self._release()
            return
        # Another task waits in `__anext__`, inside the generator, which cannot be closed from
        # here: wake it instead, and it releases everything on its way out.
        if self._wake is not None:
            self._wake.set()
        if self._response is not None:
            await self._response.aclose()

    async def _release(self) -> None:
        if self._released:
            return
        self._released = True
        # Shielded: this also runs while a cancelled `__anext__` unwinds.
        with anyio.CancelScope(shield=True):
            if self._events is not None:
                await self._events.aclose()
                self._events = None
            if self._owns_client:
                await self._client.aclose()

    async def _follow(self) -> AsyncGenerator[Event, None]:
        failures = 0
        self._wake = anyio.Event()
        while not self._closed:
            base = self.base_url
            retry_after: float | None = None
            connected_at: float | None = None
            delivered = False
            try:
                async with self._client.stream(
                    "GET",
                    f"{base}/v1/events",
                    params=self._params(),
                    headers=self._headers(),
                    timeout=self._timeout,
                ) as response:
                    retry_after = await self._check(response)
                    if retry_after is None:
                        self._connections += 1
                        connected_at = anyio.current_time()
                        self._response = response
                        source = httpx2.EventSource(response, max_event_size=MAX_EVENT_BYTES)
                        async for message in source:
                            event = self._event(message)
                            delivered = True
                            if event is None:
                                continue
                            self._last_id = event.id
                            yield event
                        reason = "the server ended the stream"
                    else:
                        reason = f"the server answered {response.status_code}"
            except httpx2.ReadTimeout:
                reason = f"nothing arrived for {self.silence_timeout:g} s"
            except httpx2.TransportError as error:
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            except httpx2.StreamClosed:
                # `close()` from another task closed the response under this reader.
                if not self._closed:
                    raise
            finally:
                self._response = None
            if self._closed:
                return
            healthy = delivered or (
                connected_at is not None and anyio.current_time() - connected_at >= HEALTHY_AFTER
            )
            failures = 1 if healthy else failures + 1
            self._turn += 1
            delay = self._backoff(failures, retry_after)
            log.warning(
                "offstage event stream on %s: %s; resuming after id %s on %s in %.1f s",
                base, reason, self._last_id, self.base_url, delay,
            )
            with anyio.move_on_after(delay):
                await self._wake.wait()

    def _params(self) -> dict[str, str]:
        params = {}
        if self.conversation is not None:
            params["conversation"] = self.conversation
        if self.job is not None:
            params["job"] = self.job
        return params

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        # The header, not `?after=`: the server prefers it, and it is what EventSource sends.
        if self._last_id is not None:
            headers["Last-Event-ID"] = str(self._last_id)
        return headers

    async def _check(self, response: httpx2.Response) -> float | None:
        """None for an event stream; the seconds to wait (0 when the server did not say) for an
        answer worth retrying; raises for a refusal."""
        status = response.status_code
        if status == 200:
            kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind != "text/event-stream":
                raise ProtocolError(f"{response.url} answered {kind or 'no content type'}, "
                                    "not an event stream: is this an offstage server?")
            return None
        body = await response.aread()
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            raise RefusedError.of(status, body, str(response.url))
        return retry_after_seconds(response.headers.get("retry-after"))

    def _event(self, message: httpx2.ServerSentEvent) -> Event | None:
        """The event a message carries, or None when it is at or below the last id yielded."""
        try:
            event_id = int(message.id)
        except ValueError:
            raise ProtocolError(f"event without a numeric id: {message.id!r}") from None
        if self._last_id is not None and event_id <= self._last_id:
            log.debug("offstage event %s skipped: yielded up to %s", event_id, self._last_id)
            return None
        try:
            body = message.json()
        except ValueError as error:
            raise ProtocolError(f"event {event_id} is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise ProtocolError(f"event {event_id} is not a JSON object")
        kind = str(body.get("type", message.event))
        return Event(id=event_id, type=kind, body=cast(EventBody, body))

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        """The pause after `failures` failed attempts in a row: doubling from `backoff_initial`
        up to `backoff_max`, jittered down to half so that the many clients one restart drops
        do not all come back in the same instant."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** (failures - 1))
        delay = ceiling * random.uniform(0.5, 1.0)
        if retry_after:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


def retry_after_seconds(value: str | None) -> float:
    """`Retry-After` in seconds (offstage sends a number); 0 when absent or a date."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
