"""Telegram channels through the Bot API: text, one photo or video, or an album of 2–10.

The bot token is part of every request path (`/bot<token>/method`), so this module never lets a
URL, or a transport error that quotes one, reach an exception, a repr or a log line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from adapters.base import (
    AdapterError,
    AuthExpired,
    BaseAdapter,
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
from adapters.http import json_or_empty, request

API = "https://api.telegram.org"
CAPTION_MAX = 1024
TEXT_MAX = 4096
# Telegram asks bots to send at most about one message a second to one chat; the second step of
# a split post waits this long so that it does not earn a 429 it could have avoided.
BETWEEN_STEPS = 1.0

# A Bot API token is "<bot id>:<secret>". Checked before use because it is pasted into the path:
# anything else could change which URL is called.
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
# The same shape publisher.redact masks: whatever slipped past, a /bot<token> path segment.
_BOT_PATH = re.compile(r"/bot[^/\s'\"]+")

# Photos go through sendPhoto, GIFs through sendAnimation (sendPhoto would flatten them to a
# still), everything video through sendVideo. The value is (method, multipart field).
_SINGLE = {
    "photo": ("sendPhoto", "photo"),
    "animation": ("sendAnimation", "animation"),
    "video": ("sendVideo", "video"),
}


def count_utf16(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts text and entity offsets.

    It is never smaller than the count after entity parsing (markup only removes characters),
    so a text that passes here passes there.
    """
    return len(text.encode("utf-16-le")) // 2


def _kind(item: Media) -> str:
    if item.mime == "image/gif":
        return "animation"
    return "photo" if item.kind == "image" else "video"


class TransportFailure(Exception):
    """The transport's own error, retold with the bot token masked.

    It replaces the `requests` exception on `__cause__`: that one quotes the URL, hence the token.
    """


class TelegramAdapter(BaseAdapter):
    platform: ClassVar[str] = "telegram"
    limits: ClassVar[Limits] = Limits(
        text_max=TEXT_MAX,
        media_max=10,
        media_kinds=frozenset({"image", "video"}),
        image_max_bytes=10_000_000,  # sendPhoto upload limit (10 MB)
        video_max_bytes=50_000_000,  # multipart upload limit of the public Bot API server
    )
    required: ClassVar[tuple[str, ...]] = ("bot_token", "chat")
    optional: ClassVar[tuple[str, ...]] = ("parse_mode", "disable_preview")
    secrets: ClassVar[tuple[str, ...]] = ("bot_token",)

    def __repr__(self) -> str:  # the default would be harmless, but say so explicitly
        return f"TelegramAdapter(name={self.name!r}, chat={self.chat!r})"

    @property
    def _token(self) -> str:
        return str(self.account.get("bot_token") or "")

    @property
    def chat(self) -> str:
        return str(self.account.get("chat", ""))

    # --- offline checks --------------------------------------------------------------------

    def count_text(self, text: str) -> int:
        return count_utf16(text)

    def check(self, message: Message) -> list[Problem]:
        text = _full_text(message)
        # The base check counts `text`; ours counts what is sent, link included.
        problems = check_limits(self.limits, lambda _text: self.count_text(text), message)
        if not text.strip() and not message.media:
            problems.append(Problem("text", "is empty and there is no media: nothing to send"))
        if message.media and self.count_text(text) > CAPTION_MAX:
            problems.append(
                Problem(
                    "text",
                    f"is {self.count_text(text)} characters; a caption holds {CAPTION_MAX}, so the "
                    "media go out first without one and the text follows as its own message",
                    severity="warning",
                )
            )
        if len(message.media) > 1:
            for index, item in enumerate(message.media):
                if _kind(item) == "animation":
                    problems.append(
                        Problem(f"media[{index}]", f"{item.file} is a GIF; Telegram albums take photos and videos only")
                    )
        return problems

    # --- publishing ------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        """Send the post; a long text with media goes as two steps, the first saved on the job.

        Text that fits a caption (1,024) rides on the media. Longer text cannot: the media are
        sent without a caption, their message ids saved with `job.save`, then the text is sent
        as a message. A retry after the first step finds the ids and sends only the text.
        """
        text = _full_text(message)
        if self.count_text(text) > TEXT_MAX:
            # Refused before anything goes out: found at step two, it would leave the media alone.
            raise Rejected(f"text is {self.count_text(text)} characters; Telegram's limit is {TEXT_MAX}")
        if not message.media:
            answer = self._call("sendMessage", json_body=self._text_body(text, message))
            return self._receipt([answer])

        # Media an earlier attempt sent are out for good, whatever the text has become since.
        saved = job.saved.get("media_messages")
        if not saved and self.count_text(text) <= CAPTION_MAX:
            return self._receipt(self._send_media(message.media, text))

        if saved:
            first: list[Mapping[str, Any]] = [{"message_id": mid} for mid in saved]
        else:
            first = self._send_media(message.media, "")
            job.save({**job.saved, "media_messages": [m["message_id"] for m in first]})
            self.sleep(BETWEEN_STEPS)
        job.heartbeat()  # the text is a second irreversible step: only while the lease is ours
        answer = self._call("sendMessage", json_body=self._text_body(text, message))
        return self._receipt([*first, answer], chat=answer.get("chat"))

    def whoami(self) -> str:
        me = self._call("getMe", json_body=None)
        name = me.get("username") or me.get("first_name") or me.get("id")
        return f"@{name} → {self.chat}"

    # --- requests --------------------------------------------------------------------------

    def _text_body(self, text: str, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {"chat_id": self.chat, "text": text}
        if self.account.get("parse_mode"):
            body["parse_mode"] = str(self.account["parse_mode"])
        preview: dict[str, Any] = {"is_disabled": _truthy(self.account.get("disable_preview"))}
        if message.link and not preview["is_disabled"]:
            preview["url"] = message.link  # the post's link, not whichever URL the text names first
        body["link_preview_options"] = preview
        return body

    def _send_media(self, media: Sequence[Media], caption: str) -> list[Mapping[str, Any]]:
        files: dict[str, tuple[str, bytes, str]] = {}
        data: dict[str, str] = {"chat_id": self.chat}
        if len(media) == 1:
            item = media[0]
            method, field = _SINGLE[_kind(item)]
            files[field] = (_basename(item), _read(item), item.mime)
            if caption:
                data["caption"] = caption
                self._parse_mode(data)
            return [self._call(method, data=data, files=files)]

        entries: list[dict[str, Any]] = []
        for index, item in enumerate(media):
            name = f"file{index}"
            kind = "video" if _kind(item) == "video" else "photo"
            entry: dict[str, Any] = {"type": kind, "media": f"attach://{name}"}
            if index == 0 and caption:
                # One caption on the first item is shown under the whole album.
                entry["caption"] = caption
                self._parse_mode(entry)
            entries.append(entry)
            files[name] = (_basename(item), _read(item), item.mime)
        data["media"] = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
        result = self._call("sendMediaGroup", data=data, files=files, many=True)
        return list(result)

    def _parse_mode(self, target: dict[str, Any]) -> None:
        if self.account.get("parse_mode"):
            target["parse_mode"] = str(self.account["parse_mode"])

    def _call(
        self,
        method: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        many: bool = False,
    ) -> Any:
        """One Bot API call; returns `result` or raises a typed error that cannot hold the token.

        The token is read from the account where it is used and never kept in a local variable:
        a traceback rendered with its frames' locals must not show it either.
        """
        if not _TOKEN_SHAPE.match(self._token):
            # Sending nothing: a malformed token would only be refused, or reshape the path.
            raise AuthExpired("bot_token does not look like a Bot API token (<digits>:<letters>)")
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["json"] = dict(json_body)
        if data is not None:
            kwargs["data"] = dict(data)
        if files is not None:
            kwargs["files"] = dict(files)
        failure: AdapterError | None = None
        try:
            # The URL is built inside the call so that no frame on a traceback keeps it as a local.
            response = request(
                self.http, "POST", self.url(API, f"/bot{self._token}/{method}"), timeout=self.timeout, **kwargs
            )
        except AdapterError as exc:
            failure = exc
        if failure is not None:
            # Raised here, outside the `except`, so the original is on neither __cause__ nor
            # __context__: `requests` put the URL in its message and kept the request on itself.
            raise self._scrubbed(failure)

        answer = json_or_empty(response)
        answer = answer if isinstance(answer, dict) else {}
        if 200 <= response.status_code < 300 and answer.get("ok") is True:
            result = answer.get("result")
            if method == "getMe" and isinstance(result, dict):
                return result
            if many and isinstance(result, list) and result and all(_is_message(m) for m in result):
                return result
            if not many and _is_message(result):
                return result
            # Telegram said ok, so the message is out; only where it is cannot be told.
            raise MaybeSent(f"Telegram {method} answered ok without a message id", http_status=response.status_code)
        if 200 <= response.status_code < 300 and answer.get("ok") is not False:
            # A success whose body cannot be read (a proxy's page, a cut answer): it may be out.
            raise MaybeSent(f"Telegram {method} answered HTTP {response.status_code} without a readable result",
                            http_status=response.status_code)
        raise classify(response.status_code, answer, self.chat)

    def _scrubbed(self, error: AdapterError) -> AdapterError:
        cause = error.__cause__
        error.args = tuple(_scrub(str(arg), self._token) for arg in error.args)
        error.__cause__ = None
        if cause is not None:
            error.__cause__ = TransportFailure(f"{type(cause).__name__}: {_scrub(str(cause), self._token)}")
        error.__context__ = None
        return error.with_traceback(None)

    # --- receipts --------------------------------------------------------------------------

    def _receipt(self, messages: Sequence[Mapping[str, Any]], chat: Any = None) -> Receipt:
        ids = [str(m["message_id"]) for m in messages]
        chat = chat if isinstance(chat, Mapping) else messages[0].get("chat")
        # The first message is where the post starts as a reader scrolls: the permalink's target.
        url = self.permalink(ids[0], chat if isinstance(chat, Mapping) else None)
        return Receipt(platform_id=",".join(ids), url=url)

    def permalink(self, message_id: str, chat: Mapping[str, Any] | None) -> str | None:
        """`t.me/<name>/<id>` for a public channel, `t.me/c/<id without -100>/<id>` for a private one."""
        username = (chat or {}).get("username")
        if not username and self.chat.startswith("@"):
            username = self.chat[1:]
        if username:
            return f"https://t.me/{username}/{message_id}"
        chat_id = str((chat or {}).get("id") or self.chat)
        if chat_id.startswith("-100") and chat_id[4:].isdigit():
            return f"https://t.me/c/{chat_id[4:]}/{message_id}"
        return None  # a basic group or a private chat has no link to a message


def classify(status: int, answer: Mapping[str, Any], chat: str = "") -> AdapterError:
    """Map a Bot API error answer to the typed errors (the description never holds the token)."""
    code = answer.get("error_code") if isinstance(answer.get("error_code"), int) else status
    description = str(answer.get("description") or f"HTTP {status}")[:300]
    parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
    detail = f"Telegram {code}: {description}"
    if code == 429:
        wait = parameters.get("retry_after")
        seconds = float(wait) if isinstance(wait, (int, float)) else None
        return RateLimited(detail, retry_after=seconds, http_status=status)
    if code in (401, 404):
        # 404 is what the Bot API answers for a token it does not know at all.
        return AuthExpired(f"{detail} (the bot token was refused)", http_status=status)
    if code == 403:
        # "bot is not a member of the channel chat", "bot was kicked": every post to this chat
        # would fail the same way until an admin adds the bot back. Pausing the account keeps
        # the other posts waiting for that fix; `Rejected` would fail each of them in turn.
        return AuthExpired(f"{detail} (make the bot an admin of {chat} who may post)", http_status=status)
    if code == 400 and "migrate_to_chat_id" in parameters:
        # The chat got a new id: nothing will reach the old one, so the account waits for a person.
        return AuthExpired(f"{detail} (set chat = {parameters['migrate_to_chat_id']})", http_status=status)
    if code == 400 and "chat not found" in description.lower():
        # A wrong `chat`, or a bot that cannot see it: account-wide too, like 403.
        return AuthExpired(f"{detail} (check chat = {chat} and that the bot is in it)", http_status=status)
    if status >= 500 or (isinstance(code, int) and code >= 500):
        return Transient(detail, http_status=status)
    return Rejected(detail, http_status=status)


def _full_text(message: Message) -> str:
    text = message.text.strip()
    if message.link and message.link not in text:
        text = f"{text}\n\n{message.link}" if text else message.link
    return text


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("message_id"), int)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _basename(item: Media) -> str:
    return item.path.name


def _read(item: Media) -> bytes:
    try:
        return item.read()
    except OSError as exc:
        # Nothing has been sent for this step: the post cannot go out as written.
        raise Rejected(f"cannot read media file {item.file}: {exc.strerror or type(exc).__name__}") from None


def _scrub(text: str, token: str) -> str:
    if token:
        text = text.replace(token, "***")
    return _BOT_PATH.sub("/bot***", text)
