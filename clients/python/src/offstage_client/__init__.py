"""offstage_client: the host-app side of offstage. `EventStream` follows a server's job events
(`GET /v1/events`) without losing or repeating one; `Conversation` names one realtime
conversation for the MCP client and hands out each job's ending once; the adapters
(`offstage_client.openai_realtime`, `.gemini_live`, `.pipecat`, `.livekit`, each behind its
extra) bring those endings into the realtime session (see README.md)."""

from ._event_types import SCHEMA_VERSION, EventBody, JobView
from .conversation import Conversation, Delivery
from .errors import AuthError, NotFoundError, OffstageError, ProtocolError, RefusedError
from .events import Event, EventStream

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AuthError",
    "Conversation",
    "Delivery",
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
