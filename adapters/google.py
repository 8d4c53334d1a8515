"""Google OAuth 2.0 for adapters that post to Google APIs (YouTube): refresh token → access token.

The access token is cached with its expiry in the account's state folder (mode 0600, via
`TokenStore`), so a daemon restart does not spend a refresh, and every token is registered as a
secret so that no log line or error can show it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import requests

from adapters.base import AuthExpired, RateLimited, Transient, register_secret
from adapters.http import json_or_empty, request, retry_after
from adapters.tokens import TokenStore

TOKEN_BASE = "https://oauth2.googleapis.com"
TOKEN_PATH = "/token"
# Refresh this long before the stated expiry: a chunk PUT started with a token that dies
# mid-flight would come back 401 after its bytes were spent.
EXPIRY_MARGIN = 120.0
# Google's errors that mean a person must authorise again (or fix the client credentials);
# retrying cannot help. https://www.rfc-editor.org/rfc/rfc6749#section-5.2
_REAUTHORISE = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}


class GoogleAuth:
    """Hands out a valid access token for one account, refreshing it when needed."""

    def __init__(
        self,
        *,
        http: requests.Session,
        token_url: str,
        timeout: float,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        state_dir: Path | None,
    ) -> None:
        self.http = http
        self.token_url = token_url
        self.timeout = timeout
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.store = TokenStore(state_dir, "google-token.json")
        # Waits and expiries are measured with this, so tests can move time.
        self.clock: Callable[[], float] = time.time
        # A cached token belongs to the credentials it was made from: when the operator changes
        # the client or the refresh token, the old cache must not be used.
        self._owner = hashlib.sha256(f"{client_id}\0{refresh_token}".encode()).hexdigest()[:16]

    def token(self) -> str:
        """A token valid for at least `EXPIRY_MARGIN` seconds: the cached one, or a fresh one."""
        cached = self.store.load()
        if (
            cached.get("owner") == self._owner
            and isinstance(cached.get("access_token"), str)
            and float(cached.get("expires_at", 0)) - EXPIRY_MARGIN > self.clock()
        ):
            return str(cached["access_token"])
        return self.refresh()

    def refresh(self) -> str:
        """Exchange the refresh token for a new access token and persist it (0600)."""
        response = request(
            self.http,
            "POST",
            self.token_url,
            timeout=self.timeout,
            data={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "refresh_token": self.refresh_token,
                "grant_type": "refresh_token",
            },
        )
        answer = json_or_empty(response)
        answer = answer if isinstance(answer, dict) else {}
        status = response.status_code
        if status == 200 and isinstance(answer.get("access_token"), str):
            access = answer["access_token"]
            self.cache(access, float(answer.get("expires_in") or 3600))
            return access
        error = str(answer.get("error") or "")
        # `error_description` is Google's own sentence ("Token has been expired or revoked."):
        # it names no credential, so it is safe and useful to show.
        description = str(answer.get("error_description") or "")[:200]
        detail = f"Google token refresh: HTTP {status} {error} {description}".strip()
        if status == 429:
            raise RateLimited(detail, retry_after=retry_after(response.headers), http_status=status)
        if status >= 500:
            raise Transient(detail, retry_after=retry_after(response.headers), http_status=status)
        if error in _REAUTHORISE or status in (400, 401, 403):
            raise AuthExpired(f"{detail}: authorise the account again", http_status=status)
        raise Transient(detail, http_status=status)

    def cache(self, access_token: str, expires_in: float) -> None:
        """Keep an access token until shortly before it expires (file mode 0600)."""
        register_secret(access_token)
        self.store.save(
            {"owner": self._owner, "access_token": access_token, "expires_at": self.clock() + expires_in}
        )

    def forget(self) -> None:
        """Drop the cached token (the API said it is no longer valid)."""
        self.store.save({})
