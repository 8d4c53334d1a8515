"""HTTP helpers every adapter shares: timeouts, transport errors mapped to typed errors, waits."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from adapters.base import MaybeSent, Transient

USER_AGENT = "siar/0.1 (+https://github.com/siar-publisher)"


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def request(
    http: requests.Session, method: str, url: str, *, timeout: float, **kwargs: Any
) -> requests.Response:
    """Send one request; transport failures become `Transient` (surely not sent) or `MaybeSent`.

    A refused connection or a connect timeout means nothing reached the platform, so a retry is
    safe. A read timeout or a connection dropped mid-answer means the platform may have acted.
    """
    # The typed errors are raised `from None`: requests' own exception text names the URL, and a
    # URL may hold a token (Telegram's path, Graph's access_token query). The reason is kept.
    try:
        return http.request(method, url, timeout=timeout, **kwargs)
    except requests.ConnectTimeout as exc:
        error: Exception = Transient(f"connect timeout: {_describe(exc)}")
    except requests.ReadTimeout as exc:
        error = MaybeSent(f"no answer within {timeout:g}s: {_describe(exc)}")
    except requests.ConnectionError as exc:
        if _never_connected(exc):
            error = Transient(f"connection failed: {_describe(exc)}")
        else:
            error = MaybeSent(f"connection lost: {_describe(exc)}")
    raise error from None


def _never_connected(exc: requests.ConnectionError) -> bool:
    reason: Any = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, NameResolutionError))


def _describe(exc: Exception) -> str:
    # The exception text of requests names the URL, which may hold a token: callers redact, and
    # we keep only the class name and the innermost reason to say less in the first place.
    reason: Any = exc.args[0] if exc.args else exc
    if isinstance(reason, MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    return type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def seconds_until_epoch(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a reset given as Unix epoch seconds (X, Bluesky)."""
    if not value:
        return None
    try:
        return max(0.0, float(value) - (now if now is not None else time.time()))
    except ValueError:
        return None


def seconds_until_iso(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a reset given as an ISO-8601 timestamp (Mastodon)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def json_or_empty(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}
