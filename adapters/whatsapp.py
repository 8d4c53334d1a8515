"""WhatsApp (Business Cloud API): a post is a broadcast to the account's list of opted-in numbers.

There is no API for WhatsApp Channels, so one delivery fans out to every number in the account's
`recipients` file. Each recipient's outcome is saved in the job's checkpoint as it happens, so a
retry sends only to the recipients still owed, and a recipient whose send may or may not have
gone out (a crash, a timeout) is never sent to a second time.

Account settings:

- `phone_number_id`, `token` (a system-user access token), `graph_version` (default below);
- `recipients`: a text file of E.164 numbers, one a line; `#` starts a comment, blank lines are
  ignored, spaces, dots, dashes and parentheses inside a number are allowed and dropped;
- `template`: a table `{ name = "siar_broadcast", language = "id", media = false }`. Outside the
  24-hour customer window WhatsApp delivers only approved templates (error 131047), so a
  broadcast normally needs one. When set, every send uses it: the post text (with its link) is
  the template's single body variable `{{1}}`; with `media = true` the template has an image or
  video header that takes the post's media. Without `template`, plain text / image / video
  messages are sent, which reach only people who wrote to the number in the last 24 hours.

Phone numbers are personal data: every error text masks them to their last three digits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import requests

from adapters.base import (
    AdapterError,
    AuthExpired,
    BaseAdapter,
    ConfigError,
    Job,
    Limits,
    MaybeSent,
    Media,
    Message,
    Problem,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
    check_limits,
)
from adapters.http import json_or_empty, request, retry_after

GRAPH_BASE = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"  # the same Graph version the Facebook and Instagram adapters default to

TEXT_MAX = 4096  # unconfirmed (PLATFORMS.md)
CAPTION_MAX = 1024
# A template's body, with its variable filled, may not exceed 1,024 characters (unconfirmed).
TEMPLATE_TEXT_MAX = 1024
IMAGE_TYPES = ("image/jpeg", "image/png")
VIDEO_TYPES = ("video/mp4",)

# "+" then a country code not starting with 0, 7 to 15 digits in all (E.164 allows at most 15).
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_NUMBER_SEPARATORS = re.compile(r"[\s().-]")
# Anything in a platform's text that looks like a phone number (7 or more digits, maybe split).
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s().-]?\d){6,}")

# Error codes, from Meta's Cloud API error reference (PLATFORMS.md lists the main ones).
_AUTH = {0, 190, 10, 3, 131005, 131031, 131042} | set(range(200, 300))
_RATE = {4, 80007, 130429, 131048, 131056}
_TRANSIENT = {1, 2, 131000, 131016, 133004}
# Refused because of this recipient: record it, never retry it, go on with the others.
_RECIPIENT = {
    131026,  # undeliverable (not on WhatsApp, old app, terms not accepted)
    131047,  # outside the 24-hour window and not a template
    131021,  # recipient is the sender
    131030,  # not in the allowed list (test numbers)
    131049,  # Meta chose not to deliver (per-user marketing limit)
    131050,  # the user stopped marketing messages
}
# Invalid parameter: PLATFORMS.md treats these as a recipient's permanent failure (a malformed
# number gives 100 too), but they can as well mean the message itself is wrong; see `_STREAK`.
_PARAMETER = {100, 131008, 131009}
# Refused because of the message (template, media): every recipient would fail alike.
_MESSAGE = {131051, 131053, 132000, 132001, 132005, 132007, 132012, 132015, 132016, 132068, 132069}
# When nobody has received the post yet and this many recipients in a row fail with the same
# non-recipient code, the message is at fault: stop rather than refuse it to thousands.
_STREAK = 3
# Pair rate: about one message per 6 s from this number to one recipient.
PAIR_RATE_WAIT = 6.0
HEARTBEAT_EVERY = 10.0  # seconds between lease renewals during a long fan-out


# --- recipients and masking ----------------------------------------------------------------------


def mask(number: str) -> str:
    """A phone number with all but its last three digits hidden: +***********890."""
    digits = re.sub(r"\D", "", number)
    prefix = "+" if number.strip().startswith("+") else ""
    return prefix + "*" * max(0, len(digits) - 3) + digits[-3:]


def scrub(text: str) -> str:
    """Mask anything that looks like a phone number in text that leaves this module."""
    return _PHONE_LIKE.sub(lambda m: mask(m.group(0)), text)


def read_recipients(path: Path) -> list[str]:
    """The numbers in a recipients file, in order, each once; ConfigError names a bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipients: cannot read {path}: {type(exc).__name__}") from exc
    numbers: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        number = _NUMBER_SEPARATORS.sub("", value)
        if not E164.match(number):
            raise ConfigError(
                f"recipients: {path} line {lineno}: {mask(value)!r} is not an E.164 number "
                "(a + and 7 to 15 digits, country code first)"
            )
        if number not in seen:  # a duplicate would get the post twice
            seen.add(number)
            numbers.append(number)
    return numbers


# --- the adapter ---------------------------------------------------------------------------------


class WhatsAppAdapter(BaseAdapter):
    platform: ClassVar[str] = "whatsapp"
    limits: ClassVar[Limits] = Limits(
        text_max=TEXT_MAX,
        media_max=1,  # one message per recipient; several files would be several messages
        media_kinds=frozenset({"image", "video"}),
        image_max_bytes=5 * 1024 * 1024,
        video_max_bytes=16 * 1024 * 1024,
    )
    required: ClassVar[tuple[str, ...]] = ("phone_number_id", "token", "recipients")
    optional: ClassVar[tuple[str, ...]] = ("template", "graph_version")
    secrets: ClassVar[tuple[str, ...]] = ("token",)
    paths: ClassVar[tuple[str, ...]] = ("recipients",)

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        errors = [p for p in self.account_problems(account) if p.severity == "error"]
        if errors:
            raise ConfigError("; ".join(f"{p.field}: {p.message}" for p in errors))
        self.phone_number_id = str(account["phone_number_id"])
        self.version = str(account.get("graph_version") or DEFAULT_VERSION)
        self.template: dict[str, Any] | None = dict(account["template"]) if account.get("template") else None
        self.recipients_file = Path(str(account["recipients"])).expanduser()
        read_recipients(self.recipients_file)  # a broken file is a configuration error, found now
        # Time between lease renewals is measured with this; tests replace it.
        self.monotonic: Callable[[], float] = time.monotonic

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        problems = super().account_problems(account)
        version = account.get("graph_version")
        if version not in (None, "") and not re.fullmatch(r"v\d+\.\d+", str(version)):
            problems.append(Problem("graph_version", f"is {version!r}; write it like {DEFAULT_VERSION!r}"))
        template = account.get("template")
        if template in (None, ""):
            problems.append(
                Problem(
                    "template",
                    "is not set: without an approved template only people who wrote to the number "
                    "in the last 24 hours receive posts (error 131047 for the others)",
                    severity="warning",
                )
            )
        elif not isinstance(template, Mapping):
            problems.append(Problem("template", 'must be a table: { name = "…", language = "id" }'))
        else:
            for key in template:
                if key not in ("name", "language", "media"):
                    problems.append(Problem(f"template.{key}", "unknown key (known: name, language, media)"))
            if not isinstance(template.get("name"), str) or not re.fullmatch(r"[a-z0-9_]+", template["name"]):
                problems.append(Problem("template.name", "is required: the approved template's name (a-z, 0-9, _)"))
            language = template.get("language")
            if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", language):
                problems.append(
                    Problem("template.language", "is required: a template language code such as id or en_US")
                )
            if "media" in template and not isinstance(template["media"], bool):
                problems.append(Problem("template.media", "must be true or false"))
        return problems

    # --- offline checks ------------------------------------------------------------------------

    def check(self, message: Message) -> list[Problem]:
        problems = [p for p in check_limits(self.limits, self.count_text, message) if p.field != "text"]
        for index, item in enumerate(message.media):
            allowed = IMAGE_TYPES if item.kind == "image" else VIDEO_TYPES if item.kind == "video" else ()
            if allowed and item.mime not in allowed:
                problems.append(
                    Problem(f"media[{index}]", f"{item.file} is {item.mime}; WhatsApp takes {', '.join(allowed)}")
                )
        body = _body(message)
        if self.template is not None:
            flat = _flatten(body)
            if len(flat) > TEMPLATE_TEXT_MAX:
                problems.append(
                    Problem("text", f"is {len(flat)} characters long; a template variable takes {TEMPLATE_TEXT_MAX}")
                )
            if flat != body:
                problems.append(
                    Problem(
                        "text",
                        "is joined into one line: a template variable may not hold line breaks or long runs of spaces",
                        severity="warning",
                    )
                )
            if message.media and not self.template.get("media"):
                problems.append(
                    Problem(
                        "media",
                        "is not sent: the template has no media header (set template.media = true)",
                        severity="warning",
                    )
                )
            if self.template.get("media") and not message.media:
                problems.append(Problem("media", "is missing: the template's header takes an image or video"))
            if not body:
                problems.append(Problem("text", "is empty: the template's body variable needs the post text"))
        elif message.media:
            if len(body) > CAPTION_MAX:
                problems.append(Problem("text", f"is {len(body)} characters long; a caption takes {CAPTION_MAX}"))
        elif not body:
            problems.append(Problem("text", "is empty and there is no media: nothing to send"))
        elif len(body) > TEXT_MAX:
            problems.append(Problem("text", f"is {len(body)} characters long; the limit is {TEXT_MAX}"))
        return problems

    # --- publishing ------------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        errors = [p for p in self.check(message) if p.severity == "error"]
        if errors:
            raise Rejected("; ".join(f"{p.field}: {p.message}" for p in errors))
        try:
            # Read at every attempt: a citizen who opted out since must not be sent to.
            recipients = read_recipients(self.recipients_file)
        except ConfigError as exc:
            raise Rejected(str(exc)) from exc
        if not recipients:
            raise Rejected(f"recipients: {self.recipients_file} lists no numbers")

        state = _State.load(job.saved)
        if state.sending:
            # An earlier attempt stopped while this recipient's send was in flight: it may have
            # been delivered, and a duplicate is worse than a miss. Never sent again.
            state.unknown.append(state.sending)
            state.sending = None
            job.save(state.dump())

        owed = [r for r in recipients if not state.settled(r)]
        if owed:
            payload = self._payload(message, self._media_ref(message, job, state))
            self._fan_out(owed, payload, job, state)
        return self._result(state)

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        """A Receipt when every current recipient is settled; None while some are still owed.

        None sends the delivery back to pending, and `publish` then goes on with the recipients
        still owed (a recipient whose send was in flight is counted unknown, not resent).
        """
        state = _State.load(job.saved)
        if state.sending:
            # Recorded now, as publish would: the checkpoint then says what the receipt says.
            state.unknown.append(state.sending)
            state.sending = None
            job.save(state.dump())
        try:
            recipients = read_recipients(self.recipients_file)
        except ConfigError:
            return None
        if not recipients or any(not state.settled(r) for r in recipients):
            return None
        try:
            return self._result(state)
        except Rejected:
            return None  # nobody received it: `publish` raises the full refusal

    def whoami(self) -> str:
        response = request(
            self.http,
            "GET",
            self.url(GRAPH_BASE, f"/{self.version}/{self.phone_number_id}?fields=display_phone_number,verified_name"),
            timeout=self.timeout,
            headers=self._auth(),
        )
        if response.status_code != 200:
            raise self._account_error(response)
        body = json_or_empty(response)
        body = body if isinstance(body, dict) else {}
        return f"WhatsApp {body.get('display_phone_number', '?')} ({body.get('verified_name', '?')})"

    # --- the fan-out -----------------------------------------------------------------------------

    def _fan_out(self, owed: list[str], payload: dict[str, Any], job: Job, state: _State) -> None:
        url = self.url(GRAPH_BASE, f"/{self.version}/{self.phone_number_id}/messages")
        streak: list[str] = []  # recipients failed in a row with one non-recipient code
        last_beat = self.monotonic()
        job.heartbeat()
        for number in owed:
            if self.monotonic() - last_beat >= HEARTBEAT_EVERY:
                job.heartbeat()  # raises LeaseLost if another worker took the delivery
                last_beat = self.monotonic()
            # Committed before the request leaves, so a crash mid-send leaves a mark (see publish).
            state.sending = number
            job.save(state.dump())
            try:
                response = request(
                    self.http, "POST", url, timeout=self.timeout, headers=self._auth(), json={**payload, "to": number}
                )
            except Transient:
                state.sending = None  # surely not sent: owed again next time
                job.save(state.dump())
                raise
            # MaybeSent propagates with `sending` still set: that recipient becomes unknown.
            if response.status_code == 200:
                state.sent[number] = _wamid(response)
                state.sending = None
                job.save(state.dump())
                streak = []
                continue
            code = _code(response)
            state.sending = None  # the platform answered: this recipient was not sent to
            if code in _RECIPIENT:
                state.failed[number] = code
                job.save(state.dump())
                streak = []
                continue
            if code in _PARAMETER or _is_other_refusal(response, code):
                verdict = code if code is not None else response.status_code
                state.failed[number] = verdict
                same = bool(streak) and state.failed.get(streak[0]) == verdict
                streak = [*streak, number] if same else [number]
                if not state.sent and len(streak) >= _STREAK:
                    # The message, not the recipients, is refused: un-record them so a corrected
                    # post can still reach them, and stop before refusing it to everyone.
                    for refused in streak:
                        state.failed.pop(refused, None)
                    job.save(state.dump())
                    raise Rejected(
                        f"WhatsApp refused the first {len(streak)} recipients alike, "
                        f"so the message itself is at fault: {_error_text(response)}",
                        http_status=response.status_code,
                    )
                job.save(state.dump())
                continue
            job.save(state.dump())
            raise self._stop_error(response, code, state)

    def _stop_error(self, response: requests.Response, code: int | None, state: _State | None) -> AdapterError:
        """The error that stops the fan-out; what was settled so far stays in the checkpoint."""
        status = response.status_code
        detail = f"WhatsApp: HTTP {status} {_error_text(response)}"
        if state is not None:
            detail += f" ({len(state.sent)} sent, {len(state.failed)} failed so far)"
        if status == 401 or code in _AUTH:
            return AuthExpired(detail, http_status=status)
        if code in _RATE or status == 429:
            wait = PAIR_RATE_WAIT if code == 131056 else retry_after(response.headers)
            return RateLimited(detail, retry_after=wait, http_status=status)
        if code in _TRANSIENT or status >= 500:
            return Transient(detail, retry_after=retry_after(response.headers), http_status=status)
        return Rejected(detail, http_status=status)  # _MESSAGE codes: every recipient would fail alike

    def _account_error(self, response: requests.Response) -> AdapterError:
        return self._stop_error(response, _code(response), None)

    def _result(self, state: _State) -> Receipt:
        if state.sent:
            first = next(iter(state.sent.values())) or "accepted"
            notes = []
            if len(state.sent) > 1:
                notes.append(f"+{len(state.sent) - 1} more")
            if state.failed:
                notes.append(f"{len(state.failed)} failed")
            if state.unknown:
                notes.append(f"{len(state.unknown)} unknown")
            return Receipt(platform_id=f"{first} ({', '.join(notes)})" if notes else first, url=None)
        if state.unknown:
            raise MaybeSent(
                f"WhatsApp: no recipient confirmed; {len(state.unknown)} may have received it, "
                f"{len(state.failed)} failed"
            )
        counts: dict[int, int] = {}
        for code in state.failed.values():
            counts[code] = counts.get(code, 0) + 1
        listed = ", ".join(f"{n} × code {code}" for code, n in sorted(counts.items()))
        raise Rejected(f"WhatsApp refused every one of the {len(state.failed)} recipients: {listed}")

    # --- message shapes --------------------------------------------------------------------------

    def _media_ref(self, message: Message, job: Job, state: _State) -> dict[str, str] | None:
        """How the media is named in a message: by its public URL, or by an uploaded media id."""
        if not message.media or (self.template is not None and not self.template.get("media")):
            return None
        item = message.media[0]
        if item.url:
            return {"link": item.url}
        if not state.media_id:
            state.media_id = self._upload(item)
            job.save(state.dump())  # one upload for the whole fan-out and its retries
        return {"id": state.media_id}

    def _upload(self, item: Media) -> str:
        try:
            content = item.read()
        except OSError as exc:
            raise Rejected(f"media[0]: {item.file} cannot be read ({type(exc).__name__})") from exc
        response = request(
            self.http,
            "POST",
            self.url(GRAPH_BASE, f"/{self.version}/{self.phone_number_id}/media"),
            timeout=self.timeout,
            headers=self._auth(),
            data={"messaging_product": "whatsapp", "type": item.mime},
            files={"file": (Path(item.file).name, content, item.mime)},
        )
        body = json_or_empty(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("id"):
            return str(body["id"])
        raise self._account_error(response)

    def _payload(self, message: Message, media: dict[str, str] | None) -> dict[str, Any]:
        base: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        body = _body(message)
        if self.template is not None:
            components: list[dict[str, Any]] = []
            if media is not None:
                kind = message.media[0].kind
                components.append({"type": "header", "parameters": [{"type": kind, kind: media}]})
            if body:
                components.append({"type": "body", "parameters": [{"type": "text", "text": _flatten(body)}]})
            template: dict[str, Any] = {
                "name": self.template["name"],
                "language": {"code": self.template["language"]},
            }
            if components:
                template["components"] = components
            return {**base, "type": "template", "template": template}
        if media is not None:
            kind = message.media[0].kind
            content = dict(media)
            if body:
                content["caption"] = body
            return {**base, "type": kind, kind: content}
        return {**base, "type": "text", "text": {"preview_url": bool(re.search(r"https?://", body)), "body": body}}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.account['token']}"}


# --- the checkpoint ------------------------------------------------------------------------------


class _State:
    """The fan-out's checkpoint: who got it (wamid), who was refused (code), who is unknown."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}
        self.failed: dict[str, int] = {}
        self.unknown: list[str] = []
        self.sending: str | None = None
        self.media_id: str | None = None

    @classmethod
    def load(cls, saved: Mapping[str, Any]) -> _State:
        state = cls()
        state.sent = {str(k): str(v) for k, v in dict(saved.get("sent") or {}).items()}
        state.failed = {str(k): int(v) for k, v in dict(saved.get("failed") or {}).items()}
        state.unknown = [str(n) for n in saved.get("unknown") or []]
        state.sending = saved.get("sending") or None
        state.media_id = saved.get("media_id") or None
        return state

    def dump(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sent": dict(self.sent), "failed": dict(self.failed), "unknown": list(self.unknown)}
        if self.sending:
            data["sending"] = self.sending
        if self.media_id:
            data["media_id"] = self.media_id
        return data

    def settled(self, number: str) -> bool:
        return number in self.sent or number in self.failed or number in self.unknown


# --- helpers -------------------------------------------------------------------------------------


def _body(message: Message) -> str:
    text = message.text.strip()
    if message.link and message.link not in text:
        text = f"{text}\n\n{message.link}" if text else message.link
    return text


def _flatten(text: str) -> str:
    # Template variables refuse new lines, tabs and more than four spaces in a row (132018).
    return " ".join(text.split())


def _error(response: requests.Response) -> dict[str, Any]:
    body = json_or_empty(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _code(response: requests.Response) -> int | None:
    code = _error(response).get("code")
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def _is_other_refusal(response: requests.Response, code: int | None) -> bool:
    """A 4xx with a code none of the lists name: treated as this recipient's refusal (streak-guarded)."""
    status = response.status_code
    known = _AUTH | _RATE | _TRANSIENT | _MESSAGE
    return 400 <= status < 500 and status not in (401, 429) and code not in known


def _error_text(response: requests.Response) -> str:
    error = _error(response)
    if not error:
        return scrub(response.text[:200])
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    text = f"code {error.get('code')}: {error.get('message', '')}"
    if details:
        text += f" — {details}"
    # Meta's texts sometimes quote the recipient's number: mask before it reaches any log.
    return scrub(text[:400])


def _wamid(response: requests.Response) -> str:
    body = json_or_empty(response)
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        return str(messages[0].get("id") or "")
    return ""
