"""The cases every adapter goes through: transport failures on its first request.

Each adapter's own module runs `TRANSPORT_CASES` against the first request its publish makes,
so a refused connection, a connect timeout and a read timeout are classified the same everywhere.
"""

from __future__ import annotations

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from adapters.base import MaybeSent, Transient


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/", reason=reason))  # type: ignore[arg-type]


def reset_mid_answer() -> requests.ConnectionError:
    return requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


# (case id, exception the transport raises, typed error the adapter must raise)
TRANSPORT_CASES = [
    ("connect-timeout", lambda: requests.ConnectTimeout("connect timed out"), Transient),
    ("connection-refused", refused, Transient),
    ("read-timeout", lambda: requests.ReadTimeout("read timed out"), MaybeSent),
    ("reset-mid-answer", reset_mid_answer, MaybeSent),
]
