"""Local stand-ins for the platforms, answering as the platforms document their APIs.

Each fake installs its routes on a `FakeServer` and answers from what the request carries, the
way the real service would: it checks the credentials and the fields it needs and answers the
platform's own error when they are wrong, keeps what was created (so a later read finds it), and
gives ids and permalinks in the platform's real shapes. The shapes come from
`../shared/PLATFORMS.md` and the platforms' reference pages (Graph API "Handling Errors", the X
API v2 OpenAPI description, YouTube's resumable upload guide, the Bot API, Mastodon's REST
entities, the atproto lexicons, LinkedIn's Posts and Images APIs, Meta's Threads posts guide), not
from the adapters.

A test makes a step fail with `fake.fail(step, Answer(...))`: that step then answers the given
answers in turn (the last one repeating; `None` answers as usual), before any check, as a
platform under load would. The functions beside each fake build that platform's real error answers.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tests.support.fakeserver import Answer, FakeServer, Seen

GRAPH_VERSION = r"/v\d+\.\d+"  # Graph accepts any current version in the path
Scripted = Answer | Callable[[Seen], Answer] | None


class FakePlatform:
    """What every fake shares: scripted failures per step and id counters."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self._failures: dict[str, list[Scripted]] = {}
        self._ids = itertools.count(1)

    def fail(self, step: str, *answers: Scripted) -> None:
        """Make `step` answer these in turn (the last repeating) instead of doing its work.

        An answer may be a function of the request (made when it arrives); None does the work.
        """
        self._failures[step] = list(answers)

    def _failure(self, step: str) -> Scripted:
        script = self._failures.get(step)
        if not script:
            return None
        return script.pop(0) if len(script) > 1 else script[0]

    def _step(self, step: str, handler: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            failure = self._failure(step)
            if failure is None:
                return handler(seen)
            return failure(seen) if callable(failure) else failure

        return answer

    def next_id(self) -> int:
        return next(self._ids)


# --- Meta Graph API (Facebook, Instagram, WhatsApp) ----------------------------------------------

# Graph sends its usage with answers; this much leaves plenty of room (no client should wait).
LOW_USAGE = {"X-App-Usage": json.dumps({"call_count": 2, "total_cputime": 1, "total_time": 1})}


def graph_error(
    status: int, code: int, message: str, *, subcode: int | None = None, kind: str = "OAuthException",
    headers: dict[str, str] | None = None, **extra: Any,
) -> Answer:
    """Graph's error answer: `{"error": {message, type, code, error_subcode?, fbtrace_id, …}}`."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra)
    error["fbtrace_id"] = "AbCdEfGhIjK" + str(code)
    return Answer(status, {"error": error}, headers=dict(headers or {}))


def graph_token_invalid() -> Answer:
    return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")


def graph_rate_limited(regain_minutes: int, business_id: str) -> Answer:
    """Code 4 (application request limit) with the business use case usage header at 100 %."""
    usage = {business_id: [{"type": "pages", "call_count": 100, "total_cputime": 38, "total_time": 41,
                            "estimated_time_to_regain_access": regain_minutes}]}
    return graph_error(
        400, 4, "(#4) Application request limit reached", is_transient=True,
        headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
    )


def graph_session_expired() -> Answer:
    return graph_error(
        400, 190,
        "Error validating access token: Session has expired on Tuesday, 24-Nov-26 23:00:00 PST. "
        "The current time is Wednesday, 25-Nov-26 01:00:03 PST.",
        subcode=463,
    )


class GraphFake(FakePlatform):
    """The token check every Graph endpoint does: `access_token` (query or form) or a Bearer header."""

    def __init__(self, server: FakeServer, token: str) -> None:
        super().__init__(server)
        self.token = token

    def token_of(self, seen: Seen) -> str | None:
        bearer = seen.header("Authorization") or ""
        if bearer.startswith("Bearer "):
            return bearer.removeprefix("Bearer ")
        return seen.query.get("access_token") or self._params(seen).get("access_token")

    def _params(self, seen: Seen) -> dict[str, str]:
        return seen.query if seen.method == "GET" else {**seen.query, **seen.form()}

    def authorised(self, handler: Callable[[Seen, dict[str, str]], Answer]) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            if self.token_of(seen) not in self.valid_tokens():
                return graph_token_invalid()
            return handler(seen, self._params(seen))

        return answer

    def valid_tokens(self) -> tuple[str, ...]:
        return (self.token,)

    def on(self, method: str, path: str, step: str, handler: Callable[[Seen, dict[str, str]], Answer]) -> None:
        """A versioned Graph route (`/vNN.N/` + `path`, a regular expression) that checks the token."""
        self.server.route_pattern(method, f"{GRAPH_VERSION}/{path}", self._step(step, self.authorised(handler)))


def _missing(name: str) -> Answer:
    return graph_error(400, 100, f"(#100) The parameter {name} is required")


def _unknown_object(object_id: str) -> Answer:
    return graph_error(
        400, 100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation.",
        subcode=33, kind="GraphMethodException",
    )


class FakeFacebook(GraphFake):
    """A Facebook Page: `/photos` (published or not), `/feed` with `attached_media`, post reads."""

    def __init__(self, server: FakeServer, *, page_id: str, token: str) -> None:
        super().__init__(server, token)
        self.page_id = page_id
        self.photos: dict[str, dict[str, str]] = {}  # photo id → the fields it was made with
        self.posts: dict[str, dict[str, Any]] = {}  # "{page}_{post}" → fields
        page = re.escape(page_id)
        self.on("POST", f"{page}/photos", "photos", self._photo)
        self.on("POST", f"{page}/feed", "feed", self._feed)
        self.on("GET", f"{page}_\\d+", "read", self._read)
        self.on("GET", f"{page}/published_posts", "published_posts", self._published)

    def permalink(self, post_id: str) -> str:
        page, post = post_id.split("_", 1)
        return f"https://www.facebook.com/{page}/posts/{post}"

    def _photo(self, seen: Seen, params: dict[str, str]) -> Answer:
        if "url" not in params and "source" not in seen.files():
            return graph_error(400, 324, "(#324) Requires upload file", kind="OAuthException")
        photo_id = str(1_000_000_000_000_000 + self.next_id())
        self.photos[photo_id] = params
        if params.get("published", "true") == "false":
            return Answer(200, {"id": photo_id}, headers=LOW_USAGE)
        post_id = self._new_post({"message": params.get("caption") or params.get("message", "")})
        return Answer(200, {"id": photo_id, "post_id": post_id}, headers=LOW_USAGE)

    def _feed(self, seen: Seen, params: dict[str, str]) -> Answer:
        if not (params.get("message") or params.get("link") or params.get("attached_media")):
            return graph_error(400, 100, "(#100) Missing message or attachment")
        attached = json.loads(params.get("attached_media") or "[]")
        for entry in attached:
            photo = self.photos.get(str(entry.get("media_fbid")))
            if photo is None or photo.get("published") != "false":
                return graph_error(400, 100, f"(#100) param attached_media[0] has invalid media_fbid {entry}")
        post_id = self._new_post({"message": params.get("message", ""), "attached_media": attached})
        answer: dict[str, Any] = {"id": post_id}
        if "permalink_url" in params.get("fields", ""):
            answer["permalink_url"] = self.permalink(post_id)
        return Answer(200, answer, headers=LOW_USAGE)

    def _read(self, seen: Seen, params: dict[str, str]) -> Answer:
        post_id = seen.route.rsplit("/", 1)[1]
        if post_id not in self.posts:
            return _unknown_object(post_id)
        answer = {"id": post_id}
        if "permalink_url" in params.get("fields", ""):
            answer["permalink_url"] = self.permalink(post_id)
        return Answer(200, answer, headers=LOW_USAGE)

    def _published(self, seen: Seen, params: dict[str, str]) -> Answer:
        """`GET /{page-id}/published_posts?since=…`: the Page's posts, newest first."""
        since = float(params.get("since") or 0)
        limit = int(params.get("limit") or 25)
        found = [
            {"id": post_id, "message": fields.get("message", ""),
             "created_time": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(fields["created"])),
             "permalink_url": self.permalink(post_id)}
            for post_id, fields in reversed(self.posts.items()) if fields["created"] >= since
        ]
        return Answer(200, {"data": found[:limit]}, headers=LOW_USAGE)

    def _new_post(self, fields: dict[str, Any]) -> str:
        post_id = f"{self.page_id}_{122_100_000_000_000_000 + self.next_id()}"
        self.posts[post_id] = {**fields, "created": time.time()}
        return post_id


class FakeInstagram(GraphFake):
    """An Instagram professional account: containers, their status, media_publish, permalinks."""

    def __init__(self, server: FakeServer, *, ig_user_id: str, token: str) -> None:
        super().__init__(server, token)
        self.ig_user_id = ig_user_id
        self.containers: dict[str, dict[str, str]] = {}
        self.media: dict[str, str] = {}  # media id → shortcode
        user = re.escape(ig_user_id)
        self.on("POST", f"{user}/media", "media", self._container)
        self.on("POST", f"{user}/media_publish", "media_publish", self._publish)
        self.on("GET", "\\d+", "read", self._read)

    def permalink(self, media_id: str) -> str:
        return f"https://www.instagram.com/p/{self.media[media_id]}/"

    def _container(self, seen: Seen, params: dict[str, str]) -> Answer:
        kind = params.get("media_type", "IMAGE")
        if kind == "CAROUSEL":
            children = [c for c in params.get("children", "").split(",") if c]
            if not 2 <= len(children) <= 10 or any(
                self.containers.get(c, {}).get("is_carousel_item") != "true" for c in children
            ):
                return graph_error(400, 100, "The carousel children are invalid", subcode=2207028,
                                   error_user_title="Invalid carousel",
                                   error_user_msg="A carousel takes 2 to 10 items.")
        elif kind == "IMAGE" and not params.get("image_url"):
            return _missing("image_url")
        container_id = str(17_900_000_000_000_000 + self.next_id())
        self.containers[container_id] = {**params, "status_code": "FINISHED"}
        return Answer(200, {"id": container_id}, headers=LOW_USAGE)

    def _publish(self, seen: Seen, params: dict[str, str]) -> Answer:
        container = self.containers.get(params.get("creation_id", ""))
        if container is None:
            return _missing("creation_id")
        if container.get("is_carousel_item") == "true":
            return graph_error(400, 100, "A carousel item cannot be published on its own")
        container["status_code"] = "PUBLISHED"
        media_id = str(18_000_000_000_000_000 + self.next_id())
        self.media[media_id] = "DC" + hashlib.sha1(media_id.encode()).hexdigest()[:9]
        return Answer(200, {"id": media_id}, headers=LOW_USAGE)

    def _read(self, seen: Seen, params: dict[str, str]) -> Answer:
        object_id = seen.route.rsplit("/", 1)[1]
        fields = params.get("fields", "").split(",")
        if object_id in self.containers:
            answer = {"id": object_id, "status_code": self.containers[object_id]["status_code"]}
            return Answer(200, answer, headers=LOW_USAGE)
        if object_id in self.media:
            answer = {"id": object_id}
            if "permalink" in fields:
                answer["permalink"] = self.permalink(object_id)
            return Answer(200, answer, headers=LOW_USAGE)
        return _unknown_object(object_id)


class FakeWhatsApp(GraphFake):
    """The WhatsApp Business Cloud API: one `/messages` send per recipient."""

    def __init__(self, server: FakeServer, *, phone_number_id: str, token: str) -> None:
        super().__init__(server, token)
        self.phone_number_id = phone_number_id
        self.delivered: dict[str, str] = {}  # recipient → wamid
        self.on("POST", f"{re.escape(phone_number_id)}/messages", "messages", self._send)

    def token_of(self, seen: Seen) -> str | None:
        bearer = seen.header("Authorization") or ""
        return bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None

    def _params(self, seen: Seen) -> dict[str, str]:
        return {}

    def _send(self, seen: Seen, _params: dict[str, str]) -> Answer:
        body = seen.json()
        if body.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        to = str(body.get("to") or "")
        if not re.fullmatch(r"\+?\d{7,15}", to):
            return graph_error(400, 131009, "(#131009) Parameter value is not valid", kind="OAuthException")
        wamid = "wamid.HBgN" + hashlib.sha1(f"{to}{self.next_id()}".encode()).hexdigest()[:24].upper()
        self.delivered[to] = wamid
        message: dict[str, str] = {"id": wamid}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        return Answer(200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [message],
        })


def whatsapp_throughput_reached() -> Answer:
    """130429: the phone number's messages-per-second throughput is used up (HTTP 429)."""
    return graph_error(
        429, 130429, "(#130429) Rate limit hit",
        error_data={"messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."},
    )


# --- X (API v2) --------------------------------------------------------------------------------


def x_schema_errors(value: Any, name: str) -> list[str]:
    """What X's OpenAPI schema `name` finds wrong with `value` (the X adapter tests' strict check);
    nothing when the spec is not beside the repository."""
    from tests.adapters.test_x import SPEC_PATH, schema, schema_errors

    return schema_errors(value, schema(name)) if SPEC_PATH.exists() else []


def x_problem(
    status: int, title: str, detail: str, kind: str = "about:blank", headers: dict[str, str] | None = None
) -> Answer:
    return Answer(status, {"title": title, "detail": detail, "type": kind, "status": status},
                  headers={"Content-Type": "application/problem+json", **(headers or {})})


def x_too_many_requests(reset_in: int) -> Callable[[Seen], Answer]:
    """429 with X's rate-limit headers: the window's budget is spent until `x-rate-limit-reset`
    (Unix seconds, `reset_in` after the request arrives)."""

    def answer(_seen: Seen) -> Answer:
        reset = int(time.time()) + reset_in
        return x_problem(429, "Too Many Requests", "Too Many Requests", headers={
            "x-rate-limit-limit": "100", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset),
        })

    return answer


class FakeX(FakePlatform):
    """X API v2 for one user: image upload, alt text, posts, `/2/users/me`.

    JSON request bodies are checked against X's own OpenAPI schemas (`shared/specs`) and refused
    as X refuses them; the fake's own successful answers are checked too, into `off_spec`.
    """

    def __init__(self, server: FakeServer, *, user_id: str, username: str, token: str) -> None:
        super().__init__(server)
        self.user_id, self.username, self.token = user_id, username, token
        self.media: dict[str, dict[str, Any]] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self.shown: dict[str, tuple[str, float]] = {}  # post id → (text as X shows it, when made)
        self.off_spec: list[str] = []  # answers of this fake that X's schemas would not allow
        server.route("POST", "/2/media/upload",
                     self._step("media_upload", self._authorised(self._upload, None, "MediaUploadResponse")))
        server.route("POST", "/2/media/metadata", self._step("media_metadata", self._authorised(
            self._metadata, "CreateMediaMetadataRequest", "CreateMediaMetadataResponse")))
        server.route("POST", "/2/tweets",
                     self._step("tweets", self._authorised(self._create, "CreatePostsRequest", "CreatePostsResponse")))
        server.route("GET", "/2/users/me",
                     self._step("users_me", self._authorised(self._me, None, "GetUsersMeResponse")))
        server.route_pattern("GET", r"/2/users/\d+/tweets",
                             self._step("timeline", self._authorised(self._timeline, None, "GetUsersPostsResponse")))

    def _authorised(
        self, handler: Callable[[Seen], Answer], request: str | None, response: str
    ) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            if seen.header("Authorization") != f"Bearer {self.token}":
                return x_problem(401, "Unauthorized", "Unauthorized")
            if request is not None:
                errors = x_schema_errors(seen.json(), request)
                if errors:
                    return x_problem(400, "Invalid Request", "; ".join(errors),
                                     "https://api.x.com/2/problems/invalid-request")
            given = handler(seen)
            if given.status < 300:
                self.off_spec += x_schema_errors(given.body, response)
            return given

        return answer

    def _upload(self, seen: Seen) -> Answer:
        form, files = seen.form(), seen.files()
        if "media" not in files or form.get("media_category") not in ("tweet_image", "tweet_gif", "tweet_video"):
            return x_problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                             "https://api.x.com/2/problems/invalid-request")
        media_id = str(1_880_028_106_020_515_000 + self.next_id())
        self.media[media_id] = {"size": len(files["media"].value), "type": files["media"].content_type}
        return Answer(200, {"data": {
            "id": media_id, "media_key": f"3_{media_id}", "size": len(files["media"].value),
            "expires_after_secs": 86400, "image": {"image_type": files["media"].content_type, "w": 4, "h": 3},
        }})

    def _metadata(self, seen: Seen) -> Answer:
        body = seen.json()
        if body.get("id") not in self.media:
            return x_problem(400, "Invalid Request", "The media id is not valid.",
                             "https://api.x.com/2/problems/invalid-request")
        self.media[body["id"]]["metadata"] = body.get("metadata")
        return Answer(200, {"data": {"id": body["id"], "associated_metadata": body.get("metadata") or {}}})

    def _create(self, seen: Seen) -> Answer:
        body = seen.json()
        media_ids = (body.get("media") or {}).get("media_ids") or []
        if any(m not in self.media for m in media_ids):
            return x_problem(400, "Invalid Request", "Your media IDs are invalid.",
                             "https://api.x.com/2/problems/invalid-request")
        post_id = str(1_861_000_000_000_000_000 + self.next_id())
        # X shows the text back with every link (and the attached media) as a t.co link.
        text = re.sub(r"https?://\S+", "https://t.co/AbC123xYz0", body.get("text", ""))
        if media_ids:
            text += " https://t.co/MeDiA0000a"
        self.posts[post_id] = body
        self.shown[post_id] = (text, time.time())
        return Answer(201, {"data": {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}})

    def _timeline(self, seen: Seen) -> Answer:
        """The user's posts since `start_time`, newest first, with X's t.co text."""
        if seen.route.split("/")[3] != self.user_id:
            return x_problem(403, "Forbidden", "You are not authorized to see this user's posts.")
        start = seen.query.get("start_time")
        since = calendar.timegm(time.strptime(start, "%Y-%m-%dT%H:%M:%SZ")) if start else 0.0
        limit = int(seen.query.get("max_results") or 10)
        data = [{"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}
                for post_id, (text, at) in reversed(self.shown.items()) if at >= since][:limit]
        if not data:
            return Answer(200, {"meta": {"result_count": 0}})
        return Answer(200, {"data": data, "meta": {"result_count": len(data), "newest_id": data[0]["id"],
                                                   "oldest_id": data[-1]["id"]}})

    def _me(self, seen: Seen) -> Answer:
        user = {"id": self.user_id, "name": "Pemerintah Kota Palembang", "username": self.username}
        return Answer(200, {"data": user})


# --- YouTube (Data API v3, resumable upload) and Google OAuth -------------------------------------


def youtube_error(status: int, reason: str, message: str, domain: str = "youtube.quota") -> Answer:
    return Answer(status, {"error": {"code": status, "message": message,
                                     "errors": [{"message": message, "domain": domain, "reason": reason}]}})


def youtube_quota_exceeded() -> Answer:
    return youtube_error(
        403, "quotaExceeded",
        "The request cannot be completed because you have exceeded your "
        '<a href="/youtube/v3/getting-started#quota">quota</a>.',
    )


class FakeYouTube(FakePlatform):
    """Google's token endpoint and YouTube's resumable `videos.insert`."""

    UPLOAD = "/upload/youtube/v3/videos"

    def __init__(self, server: FakeServer, *, client_id: str, client_secret: str, refresh_token: str) -> None:
        super().__init__(server)
        self.client = (client_id, client_secret, refresh_token)
        self.access_tokens: list[str] = []
        self.sessions: dict[str, dict[str, Any]] = {}  # upload_id → metadata, size, bytes so far
        self.videos: dict[str, dict[str, Any]] = {}
        server.route("POST", "/token", self._step("token", self._token))
        server.route("POST", self.UPLOAD, self._step("insert", self._authorised(self._start)))
        server.route("PUT", self.UPLOAD, self._step("upload", self._authorised(self._put)))

    def _token(self, seen: Seen) -> Answer:
        form = seen.form()
        if form.get("grant_type") != "refresh_token":
            return Answer(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "})
        if (form.get("client_id"), form.get("client_secret")) != self.client[:2]:
            return Answer(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        if form.get("refresh_token") != self.client[2]:
            return Answer(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        token = f"ya29.a0AfB_byE2e{self.next_id()}Qm9vVGhpc0lzQUZha2VBY2Nlc3NUb2tlbg"
        self.access_tokens.append(token)
        return Answer(200, {"access_token": token, "expires_in": 3599,
                            "scope": "https://www.googleapis.com/auth/youtube.upload", "token_type": "Bearer"})

    def _authorised(self, handler: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            bearer = (seen.header("Authorization") or "").removeprefix("Bearer ")
            if bearer not in self.access_tokens:
                return youtube_error(401, "authError", "Request had invalid authentication credentials. "
                                     "Expected OAuth 2 access token, login cookie or other valid authentication "
                                     "credential.", domain="global")
            return handler(seen)

        return answer

    def _start(self, seen: Seen) -> Answer:
        if seen.query.get("uploadType") != "resumable":
            return youtube_error(400, "badRequest", "Media type is required.", domain="global")
        metadata = seen.json()
        if not metadata.get("snippet", {}).get("title"):
            return youtube_error(400, "invalidTitle", "The request metadata specifies an invalid or empty video title.",
                                 domain="youtube.video")
        upload_id = f"AEnB2Uo{self.next_id()}e2eUploadSession"
        self.sessions[upload_id] = {
            "metadata": metadata, "size": int(seen.header("X-Upload-Content-Length") or 0), "received": b"",
        }
        # The session URI is on Google's own host, whatever host the request came to.
        location = (f"https://www.googleapis.com{self.UPLOAD}?uploadType=resumable&part=snippet,status"
                    f"&upload_id={upload_id}")
        return Answer(200, b"", headers={"Location": location, "X-GUploader-UploadID": upload_id})

    def _put(self, seen: Seen) -> Answer:
        session = self.sessions.get(seen.query.get("upload_id", ""))
        if session is None:
            return Answer(404, "Not Found")
        if session.get("video_id"):  # completed: every later request gets the video resource
            return Answer(200, self.videos[session["video_id"]])
        if re.fullmatch(r"bytes \*/(\d+)", seen.header("Content-Range") or ""):
            # Where does the upload stand? 308, with `Range` once some bytes have arrived.
            received = len(session["received"])
            return Answer(308, b"", headers={"Range": f"bytes=0-{received - 1}"} if received else {})
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", seen.header("Content-Range") or "")
        if not match or int(match.group(1)) != len(session["received"]) or int(match.group(3)) != session["size"]:
            return Answer(400, "Invalid Content-Range")
        session["received"] += seen.body
        if len(session["received"]) < session["size"]:
            return Answer(308, b"", headers={"Range": f"bytes=0-{len(session['received']) - 1}"})
        video_id = "dQw" + hashlib.sha1(seen.query["upload_id"].encode()).hexdigest()[:8]
        metadata = session["metadata"]
        video = {
            "kind": "youtube#video", "etag": "e2eEtag", "id": video_id,
            "snippet": {**metadata.get("snippet", {}), "channelId": "UCe2ePemkotPalembang0001",
                        "publishedAt": "2026-11-25T01:00:03Z"},
            "status": {"uploadStatus": "uploaded", **metadata.get("status", {})},
        }
        self.videos[video_id] = video
        session["video_id"] = video_id
        return Answer(200, video)


# --- Telegram (Bot API) ------------------------------------------------------------------------


def telegram_error(status: int, description: str, **parameters: Any) -> Answer:
    """The Bot API's failure: `{"ok": false, "error_code", "description", "parameters"?}`."""
    answer: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return Answer(status, answer)


def telegram_too_many_requests(retry_after: int) -> Answer:
    return telegram_error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


class FakeTelegram(FakePlatform):
    """The Bot API for one bot that is an admin of one public channel."""

    def __init__(self, server: FakeServer, *, bot_token: str, channel: str, channel_id: int) -> None:
        super().__init__(server)
        self.bot_token = bot_token
        self.chat = {"id": channel_id, "title": "Pemkot Palembang", "username": channel.lstrip("@"), "type": "channel"}
        self.channel = channel
        self.messages: list[dict[str, Any]] = []
        self._message_ids = itertools.count(4181)
        server.route_pattern("POST", r"/bot[^/]+/(sendMessage|sendPhoto|sendVideo|sendMediaGroup)",
                             self._step("send", self._method))

    def _method(self, seen: Seen) -> Answer:
        token, method = seen.route.removeprefix("/bot").split("/", 1)
        if token != self.bot_token:
            return telegram_error(401, "Unauthorized")
        is_json = (seen.header("Content-Type") or "").startswith("application/json")
        params: dict[str, Any] = seen.json() if is_json else seen.form()
        if str(params.get("chat_id")) not in (self.channel, str(self.chat["id"])):
            return telegram_error(400, "Bad Request: chat not found")
        if method == "sendMediaGroup":
            items = json.loads(params.get("media") or "[]")
            files = seen.files()
            if not 2 <= len(items) <= 10:
                return telegram_error(400, "Bad Request: wrong number of media in the album")
            group = str(13_800_000_000_000_000 + self.next_id())
            result = []
            for item in items:
                name = str(item.get("media", "")).removeprefix("attach://")
                if name not in files:
                    return telegram_error(400, f"Bad Request: file must be non-empty ({name})")
                message = self._message(photo=files[name].value, caption=item.get("caption"), media_group_id=group)
                result.append(message)
            return Answer(200, {"ok": True, "result": result})
        if method == "sendPhoto":
            if "photo" not in seen.files() and not params.get("photo"):
                return telegram_error(400, "Bad Request: there is no photo in the request")
            photo = seen.files()["photo"].value if "photo" in seen.files() else b""
            return Answer(200, {"ok": True, "result": self._message(photo=photo, caption=params.get("caption"))})
        if method == "sendMessage":
            if not str(params.get("text") or "").strip():
                return telegram_error(400, "Bad Request: message text is empty")
            return Answer(200, {"ok": True, "result": self._message(text=params["text"])})
        return telegram_error(400, "Bad Request: video is not supported here")

    def _message(self, *, photo: bytes | None = None, caption: str | None = None, text: str | None = None,
                 media_group_id: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": next(self._message_ids), "sender_chat": dict(self.chat),
                                   "chat": dict(self.chat), "date": int(time.time())}
        if media_group_id:
            message["media_group_id"] = media_group_id
        if photo is not None:
            unique = hashlib.sha1(photo).hexdigest()[:12]
            message["photo"] = [{"file_id": f"AgACAgUAAx0C{unique}", "file_unique_id": f"AQAD{unique[:8]}",
                                 "file_size": len(photo), "width": 4, "height": 3}]
        if caption:
            message["caption"] = caption
        if text is not None:
            message["text"] = text
        self.messages.append(message)
        return message


# --- Mastodon ----------------------------------------------------------------------------------


class FakeMastodon(FakePlatform):
    """A Mastodon instance (`host` is its public name) with one account posting through a token."""

    def __init__(
        self, server: FakeServer, *, host: str, username: str, token: str, account_id: str = "109876543210"
    ) -> None:
        super().__init__(server)
        self.host, self.username, self.token, self.account_id = host, username, token, account_id
        self.media: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.by_idempotency_key: dict[str, str] = {}
        self.key_seen_at: dict[str, float] = {}
        self.key_ttl = 3600.0  # Mastodon keeps an Idempotency-Key for one hour
        self.clock: Callable[[], float] = time.time  # a test can move the server's time on
        server.route("POST", "/api/v2/media", self._step("media", self._authorised(self._upload)))
        server.route("GET", "/api/v1/accounts/verify_credentials",
                     self._step("verify_credentials", self._authorised(self._me)))
        server.route_pattern("GET", r"/api/v1/accounts/\d+/statuses",
                             self._step("account_statuses", self._authorised(self._account_statuses)))
        server.route_pattern("GET", r"/api/v1/media/\d+",
                             self._step("media_status", self._authorised(self._media_status)))
        server.route("POST", "/api/v1/statuses", self._step("statuses", self._authorised(self._status)))
        server.route("GET", "/api/v2/instance", self._step("instance", self._instance))

    def _authorised(self, handler: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            if seen.header("Authorization") != f"Bearer {self.token}":
                return Answer(401, {"error": "The access token is invalid"})
            return handler(seen)

        return answer

    def _upload(self, seen: Seen) -> Answer:
        files = seen.files()
        if "file" not in files:
            return Answer(422, {"error": "Validation failed: File can't be blank"})
        media_id = str(113_500_000_000_000_000 + self.next_id())
        attachment = {
            "id": media_id, "type": "image", "url": None,
            "preview_url": f"https://{self.host}/system/media_attachments/files/{media_id}/small/e2e.png",
            "remote_url": None, "text_url": None, "meta": {"original": {"width": 4, "height": 3}},
            "description": seen.form().get("description"), "blurhash": "UAA]{?of00ay~qj[WBfQ00ay?bj[",
        }
        self.media[media_id] = attachment
        # Larger files are processed asynchronously: 202 with `url` null until they are ready.
        return Answer(202, attachment)

    def _media_status(self, seen: Seen) -> Answer:
        attachment = self.media.get(seen.route.rsplit("/", 1)[1])
        if attachment is None:
            return Answer(404, {"error": "Record not found"})
        attachment["url"] = f"https://{self.host}/system/media_attachments/files/{attachment['id']}/original/e2e.png"
        return Answer(200, attachment)

    def _status(self, seen: Seen) -> Answer:
        key = seen.header("Idempotency-Key")
        if key and key in self.by_idempotency_key and self.clock() - self.key_seen_at[key] < self.key_ttl:
            return Answer(200, self.statuses[self.by_idempotency_key[key]])  # remembered: same status back
        body = seen.json() if (seen.header("Content-Type") or "").startswith("application/json") else seen.form()
        text = str(body.get("status") or "")
        media_ids = body.get("media_ids") or []
        if not text and not media_ids:
            return Answer(422, {"error": "Validation failed: Text can't be blank"})
        if any(m not in self.media or not self.media[m]["url"] for m in media_ids):
            return Answer(422, {"error": "Cannot attach files that have not finished processing. "
                                         "Try again in a moment!"})
        status_id = str(113_600_000_000_000_000 + self.next_id())
        status = {
            "id": status_id, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "uri": f"https://{self.host}/users/{self.username}/statuses/{status_id}",
            "url": f"https://{self.host}/@{self.username}/{status_id}",
            "visibility": body.get("visibility", "public"), "language": body.get("language"),
            "content": "<p>" + text.replace("\n\n", "</p><p>").replace("\n", "<br />") + "</p>",
            "media_attachments": [self.media[m] for m in media_ids],
            "account": {"id": self.account_id, "username": self.username, "acct": self.username},
        }
        self.statuses[status_id] = status
        if key:
            self.by_idempotency_key[key] = status_id
            self.key_seen_at[key] = self.clock()
        return Answer(200, status)

    def _me(self, seen: Seen) -> Answer:
        return Answer(200, {"id": self.account_id, "username": self.username, "acct": self.username,
                            "display_name": "Pemerintah Kota Palembang", "url": f"https://{self.host}/@{self.username}"})

    def _account_statuses(self, seen: Seen) -> Answer:
        """`GET /api/v1/accounts/:id/statuses`: the account's statuses, newest first."""
        if seen.route.split("/")[4] != self.account_id:
            return Answer(404, {"error": "Record not found"})
        limit = min(int(seen.query.get("limit") or 20), 40)
        return Answer(200, list(reversed(self.statuses.values()))[:limit])

    def _instance(self, seen: Seen) -> Answer:
        return Answer(200, {
            "domain": self.host, "title": "Mastodon Pemerintah", "version": "4.3.2",
            "configuration": {
                "statuses": {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23},
                "media_attachments": {"description_limit": 1500, "image_size_limit": 16777216,
                                      "video_size_limit": 103809024},
            },
        })


def mastodon_validation_failed(message: str) -> Answer:
    return Answer(422, {"error": f"Validation failed: {message}"})


# --- Bluesky (AT Protocol) ---------------------------------------------------------------------


def atproto_error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    """XRPC's failure: `{"error": "<Name>", "message"}`."""
    return Answer(status, {"error": name, "message": message}, headers=dict(headers or {}))


def bluesky_rate_limited(reset_in: int) -> Callable[[Seen], Answer]:
    """429 with the PDS's rate-limit headers (`ratelimit-reset`: Unix seconds, `reset_in` from the request)."""

    def answer(_seen: Seen) -> Answer:
        reset = int(time.time()) + reset_in
        return atproto_error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers={
            "ratelimit-limit": "5000", "ratelimit-remaining": "0", "ratelimit-reset": str(reset),
            "ratelimit-policy": "5000;w=3600",
        })

    return answer


class FakeBluesky(FakePlatform):
    """A PDS holding one account: sessions, blobs, records, handle resolution."""

    def __init__(self, server: FakeServer, *, handle: str, did: str, app_password: str,
                 known_handles: dict[str, str] | None = None) -> None:
        super().__init__(server)
        self.handle, self.did, self.app_password = handle, did, app_password
        self.known_handles = {handle: did, **(known_handles or {})}
        self.access_jwts: list[str] = []
        self.refresh_jwts: list[str] = []
        self.blobs: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}  # rkey → record
        xrpc = "/xrpc/"
        for method, nsid, handler in (
            ("POST", "com.atproto.server.createSession", self._create_session),
            ("POST", "com.atproto.repo.uploadBlob", self._authorised(self._upload)),
            ("POST", "com.atproto.repo.createRecord", self._authorised(self._create)),
            ("GET", "com.atproto.repo.getRecord", self._get_record),
            ("GET", "com.atproto.identity.resolveHandle", self._resolve),
        ):
            server.route(method, xrpc + nsid, self._step(nsid.rsplit(".", 1)[1], handler))

    def _jwt(self, scope: str) -> str:
        header = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NksifQ"
        claims = json.dumps({"scope": scope, "sub": self.did, "iat": int(time.time()), "n": self.next_id()})
        payload = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
        return f"{header}.{payload}.{hashlib.sha256(payload.encode()).hexdigest()[:43]}"

    def _create_session(self, seen: Seen) -> Answer:
        body = seen.json()
        if body.get("identifier") not in (self.handle, self.did) or body.get("password") != self.app_password:
            return Answer(401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"})
        access, refresh = self._jwt("com.atproto.appPass"), self._jwt("com.atproto.refresh")
        self.access_jwts.append(access)
        self.refresh_jwts.append(refresh)
        return Answer(200, {"did": self.did, "handle": self.handle, "email": "humas@palembang.go.id",
                            "emailConfirmed": True, "accessJwt": access, "refreshJwt": refresh, "active": True})

    def _authorised(self, handler: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            bearer = (seen.header("Authorization") or "").removeprefix("Bearer ")
            if bearer in self.refresh_jwts:
                return atproto_error(400, "InvalidToken", "Bad token scope")
            if bearer not in self.access_jwts:
                return atproto_error(401, "AuthenticationRequired", "Authentication Required")
            return handler(seen)

        return answer

    def _upload(self, seen: Seen) -> Answer:
        if not seen.body:
            return Answer(400, {"error": "InvalidRequest", "message": "request body is empty"})
        cid = "bafkrei" + hashlib.sha256(seen.body).hexdigest()[:52]
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": seen.header("Content-Type"), "size": len(seen.body)}
        self.blobs[cid] = blob
        return Answer(200, {"blob": blob})

    def _create(self, seen: Seen) -> Answer:
        body = seen.json()
        record = body.get("record") or {}
        if body.get("repo") not in (self.did, self.handle) or body.get("collection") != "app.bsky.feed.post":
            return Answer(400, {"error": "InvalidRequest", "message": "Invalid repo or collection"})
        if not record.get("createdAt") or record.get("$type") != "app.bsky.feed.post":
            return atproto_error(400, "InvalidRequest",
                                 'Invalid app.bsky.feed.post record: Record must have the property "createdAt"')
        for image in (record.get("embed") or {}).get("images", []):
            if image.get("image", {}).get("ref", {}).get("$link") not in self.blobs:
                return Answer(400, {"error": "InvalidRequest", "message": "Could not find blob"})
            if "alt" not in image:
                return atproto_error(400, "InvalidRequest",
                                     'Invalid app.bsky.embed.images record: Image must have the property "alt"')
        rkey = body.get("rkey") or f"3lb{self.next_id():010d}"
        if rkey in self.records:
            return Answer(500, {"error": "InternalServerError", "message": "Internal Server Error"})
        self.records[rkey] = record
        cid = "bafyrei" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:52]
        return Answer(200, {"uri": f"at://{self.did}/app.bsky.feed.post/{rkey}", "cid": cid,
                            "commit": {"cid": "bafyreicommit" + cid[12:40], "rev": "3lbe2erev22"},
                            "validationStatus": "valid"})

    def _get_record(self, seen: Seen) -> Answer:
        rkey = seen.query.get("rkey", "")
        if rkey not in self.records:
            return atproto_error(400, "RecordNotFound",
                                 f"Could not locate record: at://{self.did}/app.bsky.feed.post/{rkey}")
        return Answer(200, {"uri": f"at://{self.did}/app.bsky.feed.post/{rkey}", "value": self.records[rkey]})

    def _resolve(self, seen: Seen) -> Answer:
        did = self.known_handles.get(seen.query.get("handle", ""))
        if did is None:
            return Answer(400, {"error": "InvalidRequest", "message": "Unable to resolve handle"})
        return Answer(200, {"did": did})


# --- LinkedIn (versioned REST API) --------------------------------------------------------------


def linkedin_daily_throttle() -> Answer:
    """LinkedIn's 429 carries no Retry-After; the daily application limit resets at midnight UTC."""
    return Answer(429, {
        "status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
        "message": "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
    })


class FakeLinkedIn(FakePlatform):
    """The Posts and Images APIs for one organization page, plus the upload host."""

    def __init__(self, server: FakeServer, *, organization: str, token: str) -> None:
        super().__init__(server)
        self.author = f"urn:li:organization:{organization}"
        self.token = token
        self.images: dict[str, dict[str, Any]] = {}  # image URN → upload state
        self.posts: dict[str, dict[str, Any]] = {}
        server.route("POST", "/rest/images", self._step("images", self._versioned(self._initialize)))
        server.route_pattern("PUT", r"/dms-uploads/.+", self._step("upload", self._upload))
        server.route("POST", "/rest/posts", self._step("posts", self._versioned(self._post)))

    def _versioned(self, handler: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
        def answer(seen: Seen) -> Answer:
            if seen.header("Authorization") != f"Bearer {self.token}":
                return Answer(401, {"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
                                    "message": "Invalid access token"})
            if not re.fullmatch(r"20\d{2}(0[1-9]|1[0-2])", seen.header("LinkedIn-Version") or ""):
                return Answer(400, {"status": 400, "code": "VERSION_MISSING", "message": "A version must be present. "
                                    "Please specify a version by adding the LinkedIn-Version header."})
            if seen.header("X-Restli-Protocol-Version") != "2.0.0":
                return Answer(400, {"status": 400, "message": "Rest.li protocol 2.0.0 is required"})
            return handler(seen)

        return answer

    def _initialize(self, seen: Seen) -> Answer:
        if seen.query.get("action") != "initializeUpload":
            return Answer(400, {"status": 400, "message": "Unknown action"})
        owner = (seen.json().get("initializeUploadRequest") or {}).get("owner")
        if owner != self.author:
            return Answer(403, {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
                                "message": f"Not enough permissions to access: owner {owner}"})
        key = f"D4D10AQE2e{self.next_id():06d}"
        urn = f"urn:li:image:{key}"
        self.images[urn] = {"uploaded": False, "key": key}
        upload_url = (f"https://www.linkedin.com/dms-uploads/sp/v2/{key}/uploaded-image/0?ca=vector_ads&cn=uploads"
                      f"&sync=0&v=beta&ut={quote('2e2UploadTicket')}")
        return Answer(200, {"value": {"uploadUrlExpiresAt": int(time.time() * 1000) + 86_400_000,
                                      "uploadUrl": upload_url, "image": urn}})

    def _upload(self, seen: Seen) -> Answer:
        key = seen.route.split("/")[4]
        urn = f"urn:li:image:{key}"
        if urn not in self.images or not seen.body:
            return Answer(400, b"")
        self.images[urn].update(uploaded=True, bytes=seen.body)
        return Answer(201, b"")

    def _post(self, seen: Seen) -> Answer:
        body = seen.json()
        if body.get("author") != self.author or body.get("lifecycleState") != "PUBLISHED":
            return Answer(422, {"status": 422, "message": "ERROR :: /author :: invalid author"})
        media = ((body.get("content") or {}).get("media") or {}).get("id")
        if media is not None and not self.images.get(media, {}).get("uploaded"):
            return Answer(422, {"status": 422, "message": f"ERROR :: /content/media/id :: {media} is not uploaded"})
        urn = f"urn:li:share:{7_265_000_000_000_000_000 + self.next_id()}"
        self.posts[urn] = body
        return Answer(201, b"", headers={"x-restli-id": urn, "x-linkedin-id": urn.rsplit(":", 1)[1]})


# --- Threads (graph.threads.net) -----------------------------------------------------------------


def threads_media_not_found(container: str) -> Answer:
    """24/4279009: `threads_publish` sent too soon after the container turned FINISHED."""
    return graph_error(400, 24, "The requested resource does not exist", subcode=4279009, is_transient=False,
                       error_user_title="Media Not Found",
                       error_user_msg=f"The media with id {container} cannot be found.")


class FakeThreads(GraphFake):
    """A Threads profile: long-lived token refresh, containers, `threads_publish`, permalinks."""

    def __init__(self, server: FakeServer, *, user_id: str, username: str, token: str) -> None:
        super().__init__(server, token)
        self.user_id, self.username = user_id, username
        self.issued: list[str] = []  # tokens handed out by refresh_access_token
        self.containers: dict[str, dict[str, str]] = {}
        self.media: dict[str, str] = {}  # media id → shortcode
        user = re.escape(user_id)
        server.route("GET", "/refresh_access_token", self._step("refresh", self._refresh))
        self.on("POST", f"{user}/threads", "threads", self._container)
        self.on("POST", f"{user}/threads_publish", "threads_publish", self._publish)
        self.on("GET", "\\d+", "read", self._read)

    def valid_tokens(self) -> tuple[str, ...]:
        return (self.token, *self.issued)  # a refreshed token does not end the older one

    def permalink(self, media_id: str) -> str:
        return f"https://www.threads.net/@{self.username}/post/{self.media[media_id]}"

    def _refresh(self, seen: Seen) -> Answer:
        if seen.query.get("grant_type") != "th_refresh_token":
            return graph_error(400, 100, "Unsupported grant type")
        if seen.query.get("access_token") not in (self.token, *self.issued):
            return graph_error(400, 190, "Error validating access token: Session has expired.")
        token = f"THAAe2eRefreshed{self.next_id()}VFh3Z0lOUkR6R1ZAhbGx0aHJlYWRzX3Rva2Vu"
        self.issued.append(token)
        return Answer(200, {"access_token": token, "token_type": "bearer", "expires_in": 5_183_944})

    def _container(self, seen: Seen, params: dict[str, str]) -> Answer:
        kind = params.get("media_type")
        if kind not in ("TEXT", "IMAGE", "VIDEO", "CAROUSEL"):
            return _missing("media_type")
        if kind == "IMAGE" and not params.get("image_url"):
            return _missing("image_url")
        if kind == "TEXT" and not params.get("text"):
            return _missing("text")
        container_id = str(17_950_000_000_000_000 + self.next_id())
        self.containers[container_id] = {**params, "status": "FINISHED"}
        return Answer(200, {"id": container_id})

    def _publish(self, seen: Seen, params: dict[str, str]) -> Answer:
        container = self.containers.get(params.get("creation_id", ""))
        if container is None:
            return threads_media_not_found(params.get("creation_id", ""))
        container["status"] = "PUBLISHED"
        media_id = str(18_050_000_000_000_000 + self.next_id())
        self.media[media_id] = "DCe2e" + hashlib.sha1(media_id.encode()).hexdigest()[:6]
        return Answer(200, {"id": media_id})

    def _read(self, seen: Seen, params: dict[str, str]) -> Answer:
        object_id = seen.route.rsplit("/", 1)[1]
        if object_id in self.containers:
            return Answer(200, {"id": object_id, "status": self.containers[object_id]["status"]})
        if object_id in self.media:
            answer = {"id": object_id}
            if "permalink" in params.get("fields", ""):
                answer["permalink"] = self.permalink(object_id)
            return Answer(200, answer)
        return _unknown_object(object_id)
