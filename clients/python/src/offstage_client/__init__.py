"""offstage_client: the host-app side of offstage. `EventStream` follows a server's job events
(`GET /v1/events`) without losing or repeating one; the realtime adapters that hand finished
jobs to OpenAI Realtime, Gemini Live, pipecat and LiveKit are planned (see README.md)."""

from ._event_types import SCHEMA_VERSION, EventBody, JobView
from .errors import AuthError, NotFoundError, OffstageError, ProtocolError, RefusedError
from .events import Event, EventStream

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AuthError",
    "Event",
    "EventBody",
    "EventStream",
    "JobView",
    "NotFoundError",
    "OffstageError",
    "ProtocolError",
    "RefusedError",
    "__version__",
]
