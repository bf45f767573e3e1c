"""A stand-in for Gemini Live's `BidiGenerateContent` websocket on 127.0.0.1, so google-genai's
own `client.aio.live.connect` runs for real against it: the library builds and encodes the
setup, tool responses and client content exactly as it would for Google. It is served over TLS
like Google's `wss://` endpoint, and the library is pointed at it through its documented
`http_options` (`base_url` and the SSL context it trusts); nothing in the library is patched.

It speaks the documented wire format (`setup` → `setupComplete`; then `toolCall`,
`toolCallCancellation`, `serverContent`, `sessionResumptionUpdate`, `goAway`) and keeps the
rules the adapter depends on, recording each breach in `errors`:
- every client message is a `LiveClientToolResponse` or `LiveClientContent` that
  google.genai.types accepts (unknown fields refused);
- a call is answered only on the connection that issued it and only while it is open. A call
  to a function the setup declares `NON_BLOCKING` stays open after an answer with
  `willContinue: true`; any other answer closes it, and a cancelled call is closed;
- a setup resumes only from a handle this server issued (anything else is refused, as Gemini
  refuses an unknown handle).

Like a model, it answers what prompts it (a `clientContent` with `turnComplete`, a
`toolResponse` that is not all `SILENT`) with a short model turn and `turnComplete`, unless made
with `model_turns=False`, when the test says when the model speaks and when it is done.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google import genai
from google.genai import types
from websockets.asyncio.server import ServerConnection

OPEN, CLOSED = "open", "closed"


@dataclass
class Connection:
    """One Live connection as the server sees it."""

    number: int
    socket: ServerConnection
    setup: dict[str, Any]
    non_blocking: set[str]
    # call id -> (function name, OPEN or CLOSED); only calls this connection issued.
    calls: dict[str, tuple[str, str]] = field(default_factory=dict)
    went_away: bool = False


@dataclass
class Received:
    """One client message after setup: on which connection, whether it came after that
    connection's `goAway`, and whether it came while the model was speaking (a user turn then
    cuts the model off)."""

    connection: int
    after_go_away: bool
    while_speaking: bool
    message: types.LiveClientToolResponse | types.LiveClientContent


class FakeLive:
    def __init__(self, model_turns: bool) -> None:
        self.model_turns = model_turns
        self.connections: list[Connection] = []
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.handles: list[str] = []
        self.base_url = ""
        self.trust: ssl.SSLContext | None = None
        self.speaking = False
        self._changed = asyncio.Event()
        self._turns: set[asyncio.Task[None]] = set()

    def client(self) -> genai.Client:
        """A google-genai client whose Live connections come here."""
        return genai.Client(
            api_key="test-key",
            http_options=types.HttpOptions(
                base_url=self.base_url, async_client_args={"ssl": self.trust}
            ),
        )

    # -- what the server says --------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        await self.connections[-1].socket.send(json.dumps(message))

    async def tool_call(self, *calls: tuple[str, str, dict[str, Any]]) -> None:
        connection = self.connections[-1]
        for call_id, name, _ in calls:
            connection.calls[call_id] = (name, OPEN)
        function_calls = [{"id": i, "name": name, "args": args} for i, name, args in calls]
        await self.send({"toolCall": {"functionCalls": function_calls}})

    async def cancel(self, *call_ids: str) -> None:
        connection = self.connections[-1]
        for call_id in call_ids:
            name, _ = connection.calls[call_id]
            connection.calls[call_id] = (name, CLOSED)
        await self.send({"toolCallCancellation": {"ids": list(call_ids)}})

    async def speak(self, text: str) -> None:
        self.speaking = True
        model_turn = {"role": "model", "parts": [{"text": text}]}
        await self.send({"serverContent": {"modelTurn": model_turn}})

    async def turn_complete(self) -> None:
        self.speaking = False
        await self.send({"serverContent": {"turnComplete": True}})

    async def issue_handle(self, resumable: bool = True) -> str:
        """A `sessionResumptionUpdate`; a handle that is not resumable is empty, as Gemini's."""
        handle = f"handle-{len(self.handles) + 1}" if resumable else ""
        if resumable:
            self.handles.append(handle)
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": resumable}})
        return handle

    async def go_away(self) -> None:
        self.connections[-1].went_away = True
        await self.send({"goAway": {"timeLeft": "10s"}})

    # -- what the client said ----------------------------------------------------------------

    def tool_responses(self) -> list[types.FunctionResponse]:
        return [
            response
            for received in self.received
            if isinstance(received.message, types.LiveClientToolResponse)
            for response in received.message.function_responses or []
        ]

    def client_contents(self) -> list[Received]:
        return [r for r in self.received if isinstance(r.message, types.LiveClientContent)]

    async def until(self, done: Callable[[], bool], within: float = 20.0) -> None:
        """Waits until `done()` holds; fails after `within` seconds."""

        async def wait() -> None:
            while not done():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), within)

    # -- inside ------------------------------------------------------------------------------

    async def handle(self, socket: ServerConnection) -> None:
        setup = json.loads(await socket.recv())["setup"]
        resume = setup.get("sessionResumption", {}).get("handle")
        if resume is not None and resume not in self.handles:
            self.errors.append(f"setup resumes from unknown handle {resume!r}")
            await socket.close(1008, "invalid resumption handle")
            return
        connection = Connection(len(self.connections) + 1, socket, setup, _non_blocking(setup))
        self.connections.append(connection)
        self._changed.set()
        await socket.send(json.dumps({"setupComplete": {}}))
        async for raw in socket:
            message = self.take(connection, json.loads(raw))
            self._changed.set()
            if self.model_turns and message is not None and self.prompts_model(message):
                # The answer takes a moment to say, while the socket keeps being read.
                self.speaking = True
                turn = asyncio.create_task(self.answer_turn(socket))
                self._turns.add(turn)
                turn.add_done_callback(self._turns.discard)

    async def answer_turn(self, socket: ServerConnection) -> None:
        model_turn = {"modelTurn": {"role": "model", "parts": [{"text": "Noted."}]}}
        try:
            await socket.send(json.dumps({"serverContent": model_turn}))
            await asyncio.sleep(0.1)
            await socket.send(json.dumps({"serverContent": {"turnComplete": True}}))
        except websockets.ConnectionClosed:
            pass  # the client hung up mid-answer, as after a GoAway
        finally:
            self.speaking = False

    def take(
        self, connection: Connection, message: dict[str, Any]
    ) -> types.LiveClientToolResponse | types.LiveClientContent | None:
        """Records one client message; None (and an error) when Gemini would not take it."""
        [(key, body)] = message.items()
        try:
            if key in ("tool_response", "toolResponse"):
                parsed: Any = types.LiveClientToolResponse.model_validate(body)
                self.check_answers(connection, parsed)
            elif key in ("client_content", "clientContent"):
                parsed = types.LiveClientContent.model_validate(body)
            else:
                self.errors.append(f"unexpected client message {key}: {body}")
                return None
        except pydantic.ValidationError as error:
            self.errors.append(f"{key} is not what Gemini takes: {error}")
            return None
        self.received.append(
            Received(connection.number, connection.went_away, self.speaking, parsed)
        )
        return parsed

    def check_answers(self, connection: Connection, message: types.LiveClientToolResponse) -> None:
        for response in message.function_responses or []:
            call = connection.calls.get(response.id or "")
            if call is None or call[1] == CLOSED:
                state = "closed" if call else "not issued on this connection"
                self.errors.append(f"toolResponse for call {response.id}: {state}")
                continue
            name, _ = call
            if response.name != name:
                self.errors.append(f"call {response.id} is {name}, answered as {response.name}")
            stays_open = name in connection.non_blocking and response.will_continue is True
            connection.calls[response.id or ""] = (name, OPEN if stays_open else CLOSED)

    @staticmethod
    def prompts_model(message: types.LiveClientToolResponse | types.LiveClientContent) -> bool:
        if isinstance(message, types.LiveClientContent):
            return bool(message.turn_complete)
        silent = types.FunctionResponseScheduling.SILENT
        return any(r.scheduling != silent for r in message.function_responses or [])


def _non_blocking(setup: dict[str, Any]) -> set[str]:
    tools = setup.get("tools", [])
    declarations = [d for tool in tools for d in tool.get("functionDeclarations", [])]
    return {d["name"] for d in declarations if d.get("behavior") == "NON_BLOCKING"}


@asynccontextmanager
async def fake_live(model_turns: bool = True) -> AsyncIterator[FakeLive]:
    """Serves one fake Live endpoint on a free loopback port, over TLS with a fresh
    self-signed certificate."""
    live = FakeLive(model_turns)
    with tempfile.TemporaryDirectory(prefix="gemini-live-fake-") as scratch:
        serving, live.trust = _tls(Path(scratch))
        async with websockets.serve(live.handle, "127.0.0.1", 0, ssl=serving) as server:
            port = server.sockets[0].getsockname()[1]
            live.base_url = f"https://127.0.0.1:{port}"
            try:
                yield live
            finally:
                for turn in list(live._turns):
                    turn.cancel()


def _tls(scratch: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = scratch / "cert.pem", scratch / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert_file, key_file)
    return serving, ssl.create_default_context(cafile=str(cert_file))
