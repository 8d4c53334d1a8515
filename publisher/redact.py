"""Secret masking: every resolved `${VAR}` value, bearer headers, tokens in URLs and query strings.

One process-wide `Redactor` learns the secret values as settings are loaded; logs, audit rows,
stored errors and command output all pass through `redact` before they leave the process.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

from adapters.base import on_secret

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words

_PATTERNS = [
    # OAuth 1.0a: Authorization: OAuth oauth_consumer_key="…", oauth_token="…", oauth_signature="…"
    # (first: the header pattern below stops at the first quote, before these values)
    re.compile(r'(?i)(oauth_(?:consumer_key|token|signature|nonce)="?)[^"&,\s]+'),
    # Authorization: Bearer abc / Basic abc / OAuth oauth_…
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer|basic|oauth)?\s*)[^\s'\",}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # access_token=…, refresh_token=…, client_secret=…, app_password=… in queries and forms
    re.compile(
        r"(?i)((?:access_token|refresh_token|client_secret|app_password|password|token|secret)=)[^&\s'\"]+"
    ),
    # Telegram puts the bot token in the path: /bot123456:ABC…/sendMessage
    re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+"),
]
# Each pattern above needs one of these to match at all: one search rules out all five for the
# common text (an event name, a time, an account) instead of five substitutions per string.
_HINT = re.compile(r"(?i)oauth_|authorization|bearer|=|/bot")


class Redactor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._regex: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        """Remember a secret, with the encoded forms it could take in a URL, header or body."""
        if not value or len(value) < _MIN_SECRET:
            return
        forms = {
            value,
            quote(value, safe=""),
            quote_plus(value),
            base64.b64encode(value.encode()).decode(),
            base64.urlsafe_b64encode(value.encode()).decode(),
            base64.b64encode(value.encode()).decode().rstrip("="),
        }
        with self._lock:
            before = len(self._secrets)
            self._secrets.update(f for f in forms if len(f) >= _MIN_SECRET)
            if len(self._secrets) != before:
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._regex = re.compile("|".join(re.escape(s) for s in ordered))

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._regex = None

    def __call__(self, text: str) -> str:
        regex = self._regex
        if regex is not None:
            text = regex.sub(MASK, text)
        if _HINT.search(text) is None:
            return text
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def deep(self, value: Any) -> Any:
        """Redact strings inside dicts, lists and tuples (for structured log events)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.deep(v) for v in value)
        if isinstance(value, BaseException):
            return self(f"{type(value).__name__}: {value}")
        return value


REDACTOR = Redactor()

# Tokens an adapter obtains at run time (a refreshed access token, a session) are told through
# this hook; without it they would be masked nowhere.
on_secret(REDACTOR.add)


def redact(text: str | None) -> str | None:
    return None if text is None else REDACTOR(text)
