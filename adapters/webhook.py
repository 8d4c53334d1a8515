"""Generic webhook: the message as a signed JSON POST to a URL the team controls.

Headers: `Idempotency-Key` (the delivery key, stable across retries), `X-Siar-Event`, and
`X-Siar-Signature: sha256=<HMAC-SHA256 of the body with the account's secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar
from urllib.parse import urlsplit

from adapters.base import (
    AuthExpired,
    BaseAdapter,
    Job,
    Limits,
    Message,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
)
from adapters.http import json_or_empty, request, retry_after


class WebhookAdapter(BaseAdapter):
    platform: ClassVar[str] = "webhook"
    limits: ClassVar[Limits] = Limits(media_max=100, media_kinds=frozenset({"image", "video", "other"}))
    required: ClassVar[tuple[str, ...]] = ("url",)
    optional: ClassVar[tuple[str, ...]] = ("secret",)
    secrets: ClassVar[tuple[str, ...]] = ("secret",)

    def _target(self) -> str:
        url = str(self.account["url"])
        return self.url(url, "") if self.account.get("api_base") else url

    def _post(self, event: str, body: dict[str, Any], key: str | None = None) -> Any:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Siar-Event": event}
        if key:
            headers["Idempotency-Key"] = key
        secret = self.account.get("secret")
        if secret:
            digest = hmac.new(str(secret).encode(), payload, hashlib.sha256).hexdigest()
            headers["X-Siar-Signature"] = f"sha256={digest}"
        return request(self.http, "POST", self._target(), timeout=self.timeout, data=payload, headers=headers)

    def publish(self, message: Message, job: Job) -> Receipt:
        body = {
            "event": "publish",
            "key": job.key,
            "attempt": job.attempt,
            "account": self.name,
            "post_id": message.post_id,
            "text": message.text,
            "link": message.link,
            "title": message.title,
            "media": [{"file": m.file, "alt": m.alt, "url": m.url, "type": m.mime} for m in message.media],
        }
        response = self._post("publish", body, key=job.key)
        status = response.status_code
        if 200 <= status < 300:
            answer = json_or_empty(response)
            answer = answer if isinstance(answer, dict) else {}
            return Receipt(platform_id=str(answer.get("id") or job.key), url=answer.get("url"))
        raise classify(status, response.headers, response.text)

    def whoami(self) -> str:
        response = self._post("ping", {"event": "ping", "account": self.name})
        if 200 <= response.status_code < 300:
            return f"webhook {urlsplit(self._target()).netloc} (HTTP {response.status_code})"
        raise classify(response.status_code, response.headers, response.text)


def classify(status: int, headers: Any, body: str) -> Exception:
    """Map a webhook's HTTP answer to the typed errors."""
    # A short body is kept whole (the core masks any secret in it); a long one is only measured,
    # since cutting it could leave part of an echoed secret that no mask would recognise.
    detail = f"HTTP {status}: {body}" if len(body) <= 300 else f"HTTP {status} ({len(body)} bytes of body)"
    if status == 429:
        return RateLimited(detail, retry_after=retry_after(headers), http_status=status)
    if status >= 500 or status in (408, 425):
        return Transient(detail, retry_after=retry_after(headers), http_status=status)
    if status in (401, 403):
        return AuthExpired(detail, http_status=status)
    return Rejected(detail, http_status=status)
