"""The exceptions offstage_client raises: what retrying cannot fix, said once, so an app never
loops on a wrong token or a wrong address."""

from __future__ import annotations

import json


class OffstageError(Exception):
    """Base of every exception this package raises."""


class ProtocolError(OffstageError):
    """The server answered with something that is not offstage's event stream (a wrong address
    behind a proxy, or an event that is not JSON with a numeric id)."""


class RefusedError(OffstageError):
    """The server refused the request, and the same request would be refused again.

    `status` is the HTTP status; `code` and `message` come from offstage's JSON error body
    (`{"error": {"code", "message"}}`) when there is one.
    """

    def __init__(self, status: int, code: str | None, message: str, url: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.url = url
        detail = f"{code}: {message}" if code else message
        super().__init__(f"{url} answered {status} ({detail})")

    @classmethod
    def of(cls, status: int, body: bytes, url: str) -> RefusedError:
        """The exception for a refusal: AuthError for 401 and 403, NotFoundError for 404."""
        code, message = _error_body(body)
        kind: type[RefusedError] = cls
        if status in (401, 403):
            kind = AuthError
        elif status == 404:
            kind = NotFoundError
        return kind(status, code, message or f"HTTP {status}", url)


class AuthError(RefusedError):
    """401 or 403: the token is missing, wrong, expired or lacks a scope. Raised at once; a
    stream never retries with a token the server has refused."""


class NotFoundError(RefusedError):
    """404: the base URL does not lead to an offstage server's `/v1/events` (wrong port, path
    prefix or profile)."""


def _error_body(body: bytes) -> tuple[str | None, str]:
    try:
        error = json.loads(body)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return None, body.decode("utf-8", "replace").strip()[:200]
