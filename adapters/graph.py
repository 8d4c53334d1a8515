"""Meta Graph API plumbing shared by the Facebook, Instagram and Threads adapters.

Graph reports failures in the JSON body (`{"error": {"code", "error_subcode", …}}`, HTTP 400 for
most of them), so the HTTP status alone says little. This module maps each platform's error
numbers to the typed errors through a per-platform table (subcode first, then code), reads the
usage headers Meta sends with every answer, and gives adapters one `call` that puts the access
token where Graph wants it and keeps it out of every error message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import requests

from adapters.base import (
    AdapterError,
    AuthExpired,
    BaseAdapter,
    ConfigError,
    Job,
    MaybeSent,
    Media,
    Message,
    Problem,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
)
from adapters.http import json_or_empty, request

DEFAULT_VERSION = "v21.0"
_VERSION_SHAPE = re.compile(r"^v\d+\.\d+$")

# Usage headers give percentages of a rolling one-hour budget. Meta throttles at 100 %; stopping
# a little before keeps a burst of posts from tipping the whole app into a block.
BACKOFF_AT = 90.0
# When a header shows high usage but no `estimated_time_to_regain_access`, the oldest calls in
# the hour-long window have to age out; these waits are a judgement, not a Meta figure.
NEAR_LIMIT_WAIT = 5 * 60.0
AT_LIMIT_WAIT = 15 * 60.0

# Facebook's anti-spam block ("you're posting too fast", 368/1390008) lasts hours, and posting
# into it prolongs it; an hour keeps the daemon from knocking while the block is on.
POSTING_TOO_FAST_WAIT = 60 * 60.0
# Instagram's publishing cap is per rolling 24 h and Meta does not say when a slot frees; the
# oldest post of the window ages out within a day. If this wait passes the delivery's
# max_lateness, the dispatcher holds it as expired and a person decides.
DAILY_CAP_WAIT = 6 * 60 * 60.0
# Threads answers 24/4279009 "Media Not Found" when threads_publish comes too soon after the
# container was made, even once its status says FINISHED. Meta's "Threads Posts" guide advises
# waiting on average 30 seconds before publishing a container.
THREADS_SETTLE_WAIT = 30.0


# --- errors ------------------------------------------------------------------------------------


class Duplicate(Rejected):
    """Graph refused the post as a duplicate of a recent one (Facebook 506 / 1366051).

    A `Rejected`, so an adapter that does not handle it fails the delivery. An adapter that knows
    an earlier attempt of the same delivery may have gone out settles it as published instead.
    """


class ContainerExpired(Transient):
    """An Instagram/Threads container outlived its 24 hours (2207020): create it again.

    A `Transient`, so a retry recreates it when the adapter does not do so at once.
    """


class Outcome(Enum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate limited"
    AUTH = "credentials or permissions"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    CONTAINER_EXPIRED = "container expired"


@dataclass(frozen=True)
class Rule:
    """What one Graph error number means for a delivery."""

    outcome: Outcome
    why: str
    wait: float | None = None  # seconds to wait when the answer's headers give no better figure


@dataclass(frozen=True)
class ErrorTable:
    """One platform's Graph error numbers. Subcodes are more specific, so they are looked up first."""

    platform: str
    subcodes: Mapping[int, Rule] = field(default_factory=dict)
    codes: Mapping[int, Rule] = field(default_factory=dict)

    def rule(self, code: int | None, subcode: int | None) -> Rule | None:
        if subcode is not None and subcode in self.subcodes:
            return self.subcodes[subcode]
        if code is not None:
            return self.codes.get(code)
        return None

    def extend(
        self, platform: str, *, subcodes: Mapping[int, Rule] | None = None, codes: Mapping[int, Rule] | None = None
    ) -> ErrorTable:
        """A table for another platform: these numbers on top of this table's."""
        return ErrorTable(platform, {**self.subcodes, **(subcodes or {})}, {**self.codes, **(codes or {})})


def _each(numbers: Iterable[int], rule: Rule) -> dict[int, Rule]:
    return {number: rule for number in numbers}


_T, _RL, _AUTH, _REJ = Outcome.TRANSIENT, Outcome.RATE_LIMITED, Outcome.AUTH, Outcome.REJECTED

# Permission errors (10, 200–299) say the token lacks a permission on this Page or account, not
# that this post is wrong: every later post on the account would fail the same way. They are
# mapped to AuthExpired so the dispatcher pauses the account for a person to re-grant access,
# instead of burning through (and failing) each of its deliveries one by one.
_PERMISSION = Rule(_AUTH, "the token lacks a permission for this action (re-grant it)")

# What every Graph platform shares: Meta's generic codes from "Handling errors".
GRAPH = ErrorTable(
    "Graph",
    subcodes={
        458: Rule(_AUTH, "the app is no longer installed for this user"),
        459: Rule(_AUTH, "the user is checkpointed: they must log in to Facebook first"),
        460: Rule(_AUTH, "the password changed: the token was invalidated"),
        463: Rule(_AUTH, "the access token has expired"),
        464: Rule(_AUTH, "the user is unconfirmed: they must log in to Facebook first"),
        467: Rule(_AUTH, "the access token is invalid"),
    },
    codes={
        1: Rule(_T, "unknown Graph error"),
        2: Rule(_T, "Graph service temporarily unavailable"),
        341: Rule(_T, "application limit reached"),
        368: Rule(_T, "temporarily blocked for policy violations"),
        4: Rule(_RL, "app-level rate limit"),
        17: Rule(_RL, "user-level rate limit"),
        32: Rule(_RL, "Page-level rate limit"),
        613: Rule(_RL, "custom rate limit"),
        **_each([*range(80000, 80010), 80014], Rule(_RL, "business use case rate limit")),
        190: Rule(_AUTH, "the access token is invalid or expired"),
        102: Rule(_AUTH, "the session has expired"),
        10: _PERMISSION,
        **_each(range(200, 300), _PERMISSION),
        100: Rule(_REJ, "invalid parameter"),
    },
)

FACEBOOK = GRAPH.extend(
    "Facebook",
    subcodes={
        1366051: Rule(Outcome.DUPLICATE, "duplicate of a recent post"),
        # Meta's table lists 1609005 as a code; clients see it as a subcode of 100: both work.
        1609005: Rule(_REJ, "Facebook could not fetch the link"),
        1346003: Rule(_REJ, "blocked by Facebook's content policy"),
        1404102: Rule(_REJ, "blocked by Facebook's community standards"),
        1366046: Rule(_REJ, "the photo is too large or not a JPG/PNG"),
        # Page Publishing Authorization: a person must complete it on the Page; every post waits.
        1404078: Rule(_AUTH, "the Page needs publishing authorization"),
        1390008: Rule(_RL, "posting too fast (anti-spam block)", wait=POSTING_TOO_FAST_WAIT),
    },
    codes={
        506: Rule(Outcome.DUPLICATE, "duplicate of a recent post"),
        1609005: Rule(_REJ, "Facebook could not fetch the link"),
    },
)

# PLATFORMS.md's list, with the parent codes and the two further "try again" subcodes (2207001,
# 2207008) of Meta's Instagram "Error Codes" reference.
INSTAGRAM = GRAPH.extend(
    "Instagram",
    subcodes={
        2207001: Rule(_T, "Instagram server error"),
        2207003: Rule(_T, "timed out downloading the media"),
        2207008: Rule(_T, "the media builder expired; try again"),
        2207032: Rule(_T, "creating the media failed; try again"),
        2207052: Rule(_T, "the media could not be fetched from its URL"),
        2207053: Rule(_T, "unknown upload error"),
        2207082: Rule(_T, "temporary Instagram error"),
        2207027: Rule(_T, "the media is not ready to publish yet"),
        2207004: Rule(_REJ, "the media file is too large"),
        2207005: Rule(_REJ, "unsupported media format"),
        2207009: Rule(_REJ, "unsupported aspect ratio (4:5 to 1.91:1)"),
        2207010: Rule(_REJ, "the caption is too long"),
        2207026: Rule(_REJ, "unsupported video format or length"),
        2207028: Rule(_REJ, "invalid carousel (2 to 10 items)"),
        2207050: Rule(_REJ, "the Instagram account is restricted or inactive"),
        2207051: Rule(_REJ, "the action was blocked by Instagram (restricted)"),
        2207042: Rule(_RL, "the daily publishing limit is reached", wait=DAILY_CAP_WAIT),
        2207020: Rule(Outcome.CONTAINER_EXPIRED, "the media container expired"),
    },
    codes={
        36003: Rule(_REJ, "unsupported aspect ratio (4:5 to 1.91:1)"),
        36004: Rule(_REJ, "the caption is too long"),
        9007: Rule(_T, "the media is not ready to publish yet"),
    },
)

# Threads (graph.threads.net) speaks the Graph error format with Meta's shared codes; on top, the
# permanent numbers of PLATFORMS.md and the "not visible yet" subcode clients meet in production
# (Postiz, trypost: 24/4279009 right after a container turned FINISHED).
THREADS = GRAPH.extend(
    "Threads",
    subcodes={
        2207051: Rule(_REJ, "the action was blocked by Threads (restricted)"),
        4279013: Rule(_REJ, "Threads blocked this post or account"),
        4279009: Rule(_T, "the container is not visible to publish yet", wait=THREADS_SETTLE_WAIT),
    },
)


@dataclass(frozen=True)
class GraphError:
    """The fields of a Graph error body that matter here (`status` 0: not from an HTTP answer)."""

    status: int
    code: int | None = None
    subcode: int | None = None
    message: str = ""
    user_msg: str = ""
    fbtrace_id: str = ""
    is_transient: bool | None = None

    @classmethod
    def parse(cls, status: int, payload: Any, text: str = "") -> GraphError:
        error = payload.get("error") if isinstance(payload, Mapping) else None
        if not isinstance(error, Mapping):
            # Not a Graph answer (a proxy's HTML page, an empty body): only the status speaks.
            return cls(status, message=" ".join(text.split())[:200])
        transient = error.get("is_transient")
        return cls(
            status,
            code=_int(error.get("code")),
            subcode=_int(error.get("error_subcode")),
            message=str(error.get("message") or ""),
            user_msg=str(error.get("error_user_msg") or ""),
            fbtrace_id=str(error.get("fbtrace_id") or ""),
            is_transient=transient if isinstance(transient, bool) else None,
        )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _fallback(error: GraphError) -> Rule:
    """A number the table does not know: go by what Graph and HTTP say about it."""
    if error.status == 429:
        return Rule(_RL, "rate limited")
    if error.status >= 500 or error.is_transient:
        return Rule(_T, "Graph server error")
    if error.status == 401:
        return Rule(_AUTH, "credentials rejected")
    return Rule(_REJ, "refused")


def classify(
    status: int,
    headers: Mapping[str, str],
    payload: Any,
    table: ErrorTable,
    *,
    text: str = "",
    secrets: Iterable[str] = (),
) -> AdapterError:
    """The typed error for one failed Graph answer."""
    return to_error(GraphError.parse(status, payload, text), table, wait=usage_wait(headers), secrets=secrets)


def to_error(
    error: GraphError, table: ErrorTable, *, wait: float | None = None, secrets: Iterable[str] = ()
) -> AdapterError:
    """The typed error for a Graph error, wherever it was reported (an answer, a container).

    `wait` is what the answer's usage headers asked for; a rule's own wait is a floor under it
    (for a rate limit or a passing failure alike).
    """
    rule = table.rule(error.code, error.subcode) or _fallback(error)
    numbers = "/".join(str(n) for n in (error.code, error.subcode) if n is not None) or "no code"
    where = f" HTTP {error.status}" if error.status else ""
    message = f"{table.platform}{where} error {numbers} ({rule.why})"
    detail = error.user_msg or error.message
    if detail:
        message += f": {detail}"
    if error.fbtrace_id:
        message += f" [fbtrace_id {error.fbtrace_id}]"
    message = redact(message, secrets)
    status = error.status or None
    waits = [w for w in (wait, rule.wait) if w is not None]
    longest = max(waits) if waits else None
    if rule.outcome is Outcome.RATE_LIMITED:
        return RateLimited(message, retry_after=longest, http_status=status)
    if rule.outcome is Outcome.TRANSIENT:
        return Transient(message, retry_after=longest, http_status=status)
    if rule.outcome is Outcome.CONTAINER_EXPIRED:
        return ContainerExpired(message, http_status=status)
    if rule.outcome is Outcome.AUTH:
        return AuthExpired(message, http_status=status)
    if rule.outcome is Outcome.DUPLICATE:
        return Duplicate(message, http_status=status)
    return Rejected(message, http_status=status)


_TOKEN_PARAM = re.compile(r"(access_token=)[^&\s\"']+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret value, and any `access_token=` query value, masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_PARAM.sub(r"\1***", text)


# --- usage headers -----------------------------------------------------------------------------


def usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds to hold off, from `X-App-Usage` and `X-Business-Use-Case-Usage`; None = carry on.

    Meta's own `estimated_time_to_regain_access` (minutes) wins; otherwise a usage percentage
    at or above `BACKOFF_AT` earns a short wait before Meta starts throttling.
    """
    highest = 0.0
    regain: list[float] = []
    app = _header_json(headers, "X-App-Usage")
    if isinstance(app, Mapping):
        highest = max(highest, _peak(app))
    business = _header_json(headers, "X-Business-Use-Case-Usage")
    if isinstance(business, Mapping):
        for entries in business.values():
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, Mapping):
                    continue
                highest = max(highest, _peak(entry))
                minutes = _number(entry.get("estimated_time_to_regain_access"))
                if minutes:
                    regain.append(minutes * 60.0)
    if regain:
        return max(regain)
    if highest >= 100:
        return AT_LIMIT_WAIT
    if highest >= BACKOFF_AT:
        return NEAR_LIMIT_WAIT
    return None


def _header_json(headers: Mapping[str, str], name: str) -> Any:
    value = headers.get(name)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _peak(usage: Mapping[str, Any]) -> float:
    values = [_number(usage.get(key)) for key in ("call_count", "total_cputime", "total_time")]
    return max((v for v in values if v is not None), default=0.0)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- text and checkpoints ----------------------------------------------------------------------


def text_with_link(message: Message) -> str:
    """The text as a media post sends it: media endpoints take no `link`, so it joins the text."""
    if message.link and message.media and message.link not in message.text:
        return f"{message.text.rstrip()}\n\n{message.link}".lstrip()
    return message.text


def same_text(ours: str, theirs: str) -> bool:
    """Whether a post found on the platform carries our text (line endings and spacing aside)."""
    return " ".join(ours.split()) == " ".join(theirs.split())


def still_valid(saved: Any, media: Sequence[Media]) -> list[dict[str, str]]:
    """Per-item ids saved by an earlier attempt (`{"file", "id"}`) that still fit these media.

    Only the leading run whose files match in order is kept: an edited post starts over there.
    """
    kept: list[dict[str, str]] = []
    for entry, item in zip(saved or [], media):
        if not isinstance(entry, Mapping) or entry.get("file") != item.file or not entry.get("id"):
            break
        kept.append({"file": item.file, "id": str(entry["id"])})
    return kept


def checkpoint(job: Job, *, drop: Iterable[str] = (), **changes: Any) -> None:
    """Commit the job's saved state with `changes` applied (`Job.save` replaces the whole state)."""
    dropped = set(drop)
    state = {key: value for key, value in job.saved.items() if key not in dropped}
    state.update(changes)
    job.save(state)


# --- the adapter base --------------------------------------------------------------------------


class GraphAdapter(BaseAdapter):
    """What every Graph adapter shares: versioned URLs, the token, usage back-off, error mapping.

    Subclasses declare `errors` (their `ErrorTable`) and `host`; the account may set
    `graph_version` (default `DEFAULT_VERSION`).
    """

    errors: ClassVar[ErrorTable] = GRAPH
    host: ClassVar[str] = "https://graph.facebook.com"
    default_version: ClassVar[str] = DEFAULT_VERSION

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        missing = [key for key in self.required if account.get(key) in (None, "")]
        if missing:
            raise ConfigError(f"{self.platform} needs {', '.join(missing)}")
        self.version = str(account.get("graph_version") or self.default_version)
        if not _VERSION_SHAPE.match(self.version):
            raise ConfigError(f"graph_version {self.version!r} is not of the form v21.0")
        self.api_host = self.host
        # Wall clock, replaceable in tests (lookup windows, token ages, usage holds).
        self.clock: Callable[[], float] = time.time
        # Set from usage headers; the adapter lives as long as its account, so a high figure
        # seen on one delivery also slows the next one down.
        self._hold_until = 0.0

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        problems = super().account_problems(account)
        version = account.get("graph_version")
        if version and not _VERSION_SHAPE.match(str(version)):
            problems.append(Problem("graph_version", f"{version!r} is not of the form v21.0"))
        return problems

    def access_token(self) -> str:
        return str(self.account["token"])

    def graph_url(self, path: str, host: str | None = None) -> str:
        return self.url(f"{host or self.api_host}/{self.version}/", path.lstrip("/"))

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        host: str | None = None,
    ) -> dict[str, Any]:
        """One Graph request; the answer's JSON object, or the typed error for its failure.

        The token travels as the `access_token` query parameter on reads and as a form field on
        writes (multipart too), as Graph documents. The URL is never put in an error message.
        """
        hold = self._hold_until - self.clock()
        if hold > 0:
            # Nothing is sent: every step before this one is already saved by the caller.
            raise RateLimited(
                f"{self.errors.platform} usage is near Meta's limit; holding off {hold:.0f}s", retry_after=hold
            )
        token = self.access_token()
        if method == "GET":
            params = {**(params or {}), "access_token": token}
        else:
            data = {**(data or {}), "access_token": token}
        response = request(
            self.http, method, self.graph_url(path, host), timeout=self.timeout,
            params=params, data=data, files=files,
        )
        wait = usage_wait(response.headers)
        if wait:
            self._hold_until = self.clock() + wait
        payload = json_or_empty(response)
        if 200 <= response.status_code < 300 and not (isinstance(payload, dict) and "error" in payload):
            # A success without a JSON object is returned empty; callers that need an id check.
            return payload if isinstance(payload, dict) else {}
        raise classify(
            response.status_code, response.headers, payload, self.errors, text=response.text, secrets=(token,)
        )


# --- the container flow ------------------------------------------------------------------------

# What a job forgets once its container can never publish (expired, in ERROR): the next round
# makes a new container, carousel items and all.
CONTAINER_KEYS = ("container", "children")


class ContainerAdapter(GraphAdapter):
    """Meta's container flow, as Instagram and Threads publish: create a container, poll it until
    FINISHED, publish it, then name the post.

    Each step is saved through `job.save` before the next one is sent, so a retry or a crash asks
    the saved container's status instead of making (and publishing) a second one: PUBLISHED
    settles, FINISHED publishes, EXPIRED or ERROR starts over with a new container.

    A subclass declares its edges, status fields and poll pacing, and writes what is its own:
    the container's fields (`_post_data`, `_item`), a container's ERROR (`_container_error`),
    finding a published post (`_find`), and token upkeep at the start of an operation (`_begin`).
    """

    create_edge: ClassVar[str]  # POST {user}/{create_edge} makes a container
    publish_edge: ClassVar[str]  # POST {user}/{publish_edge} with its creation_id publishes it
    status_fields: ClassVar[tuple[str, str]]  # a container's state, and what its ERROR says
    poll_interval: ClassVar[float]
    poll_attempts: ClassVar[int]
    # Which carousel items must be FINISHED before the carousel may name them, and what the
    # error says when one expired instead.
    finish_items: ClassVar[frozenset[str]] = frozenset({"image", "video"})
    item_expired: ClassVar[str] = "creating the carousel again"

    @property
    def user(self) -> str:
        raise NotImplementedError

    def _begin(self) -> None:
        """The start of an operation: token upkeep, where the platform needs it."""

    def _post_data(self, message: Message, job: Job, since: int) -> dict[str, str]:
        """The fields of the post's container (a carousel's items are made on the way)."""
        raise NotImplementedError

    def _item(self, item: Media, *, carousel: bool) -> dict[str, str]:
        """The container fields for one media file, alone or as a carousel item."""
        raise NotImplementedError

    def _container_error(self, container: str, error: str) -> AdapterError:
        """The typed error for a container in ERROR, from what its status says."""
        raise NotImplementedError

    def _find(self, message: Message, since: Any) -> Receipt | None:
        """The published post among the account's newest, made since the saved time."""
        raise NotImplementedError

    # --- publish ------------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        self._begin()
        if job.saved.get("media_id"):
            return self._receipt(str(job.saved["media_id"]))
        # A second round only when the first container turned out expired: create it again.
        for _ in range(2):
            container = str(job.saved.get("container") or self._create(message, job))
            status = self._wait(job, container)
            if status == "PUBLISHED":
                return self._settle(message, job, container)
            if status == "EXPIRED":
                checkpoint(job, drop=CONTAINER_KEYS)
                continue
            receipt = self._publish(message, job, container)
            if receipt is not None:
                return receipt
        raise Transient(f"{self.errors.platform} let the new container expire too; trying again later")

    def _create(self, message: Message, job: Job) -> str:
        """Create the post's container (and a carousel's items), saving each id at once."""
        since = job.saved.get("since") or int(self.clock())
        container = self._container(self._post_data(message, job, since))
        checkpoint(job, container=container, since=since)
        return container

    def _media_data(self, message: Message, job: Job, since: int) -> dict[str, str]:
        """The container fields for the post's media: one file, or a carousel of its items."""
        if len(message.media) == 1:
            return self._item(message.media[0], carousel=False)
        children = self._children(message, job, since)
        return {"media_type": "CAROUSEL", "children": ",".join(child["id"] for child in children)}

    def _children(self, message: Message, job: Job, since: int) -> list[dict[str, str]]:
        done = still_valid(job.saved.get("children"), message.media)
        for item in message.media[len(done):]:
            child = self._container(self._item(item, carousel=True))
            done.append({"file": item.file, "id": child})
            checkpoint(job, children=done, since=since)
        # The carousel may name only processed items; an item that failed says why here, where
        # its own error message is, rather than as a vague failure of the whole carousel.
        for entry, item in zip(done, message.media):
            if item.kind in self.finish_items and self._wait(job, entry["id"]) != "FINISHED":
                # Only an item left a day before a retry expires: the carousel starts over.
                checkpoint(job, drop=CONTAINER_KEYS)
                raise Transient(f"{self.errors.platform} let carousel item {item.file} expire; {self.item_expired}")
        return done

    def _container(self, data: Mapping[str, str]) -> str:
        answer = self.call("POST", f"{self.user}/{self.create_edge}", data=data)
        if not answer.get("id"):
            # An unpublished container costs nothing and expires: a retry simply makes another.
            raise Transient(f"{self.errors.platform} answered a container request without an id")
        return str(answer["id"])

    def _status(self, container: str) -> tuple[str, str]:
        state, detail = self.status_fields
        answer = self.call("GET", container, params={"fields": f"{state},{detail}"})
        return str(answer.get(state) or ""), str(answer.get(detail) or "")

    def _wait(self, job: Job, container: str) -> str:
        """Poll a container until it is FINISHED, PUBLISHED or EXPIRED; raise on ERROR."""
        for attempt in range(self.poll_attempts):
            job.heartbeat()
            status, error = self._status(container)
            if status in ("FINISHED", "PUBLISHED", "EXPIRED"):
                return status
            if status == "ERROR":
                # This container will never publish: the next attempt starts with a new one.
                checkpoint(job, drop=CONTAINER_KEYS)
                raise self._container_error(container, error)
            if attempt + 1 < self.poll_attempts:
                self.sleep(self.poll_interval)
        raise Transient(
            f"{self.errors.platform} is still processing container {container}; polling again later", retry_after=60
        )

    def _publish(self, message: Message, job: Job, container: str) -> Receipt | None:
        """Publish one FINISHED container; None when it expired meanwhile."""
        try:
            answer = self.call("POST", f"{self.user}/{self.publish_edge}", data={"creation_id": container})
        except ContainerExpired:
            checkpoint(job, drop=CONTAINER_KEYS)
            return None
        return self._published(job, answer)

    def _published(self, job: Job, answer: Mapping[str, Any]) -> Receipt:
        """Save the media id the publish edge answered, and give its receipt."""
        if not answer.get("id"):
            raise MaybeSent(f"{self.errors.platform} answered {self.publish_edge} without a media id")
        checkpoint(job, media_id=str(answer["id"]))
        return self._receipt(str(answer["id"]))

    def _settle(self, message: Message, job: Job, container: str) -> Receipt:
        """The container says PUBLISHED: find the post it became among the account's newest."""
        if job.saved.get("media_id"):
            return self._receipt(str(job.saved["media_id"]))
        try:
            found = self._find(message, job.saved.get("since"))
        except AdapterError:
            found = None  # published for certain: failing to name it must not make it unknown
        if found is None:
            # No recent post matches (the text was edited since?): the container id is the best
            # handle left.
            return Receipt(container)
        checkpoint(job, media_id=found.platform_id)
        return found if found.url else self._receipt(found.platform_id)

    def _receipt(self, media_id: str) -> Receipt:
        """The receipt for a published post; its permalink is a courtesy, never a failure."""
        try:
            answer = self.call("GET", media_id, params={"fields": "permalink"})
        except AdapterError:
            answer = {}
        return Receipt(media_id, answer.get("permalink") or None)

    # --- after a crash ------------------------------------------------------------------------

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        self._begin()
        if job.saved.get("media_id"):
            return self._receipt(str(job.saved["media_id"]))
        container = job.saved.get("container")
        if not container:
            return None  # the publish edge is only ever sent for a saved container
        status, _ = self._status(str(container))
        return self._settle(message, job, str(container)) if status == "PUBLISHED" else None
