"""The fault suite's platforms: every account on its own local fake server that answers as the
platform documents (tests/e2e/fakeplatforms.py) and COUNTS what it really created, so a test can
score a run the way Jepsen scores a queue: lost, duplicated, recovered, unknown.

Each post carries a marker (`kf-00042`, also its post id) in its text and in its media file names;
each counting fake keys what it created by (marker, part): part "" for a post, a recipient for a
WhatsApp message, the Bot API method for Telegram. Anything counted twice is a duplicate.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.fakeplatforms import (
    FakeBluesky,
    FakeFacebook,
    FakeInstagram,
    FakeLinkedIn,
    FakeMastodon,
    FakePlatform,
    FakeTelegram,
    FakeThreads,
    FakeWhatsApp,
    FakeX,
    FakeYouTube,
)
from tests.support.fakeserver import Answer, FakeServer, Seen
from tests.support.media import jpeg_bytes, mp4_bytes, png_bytes
from tests.support.process import query

MEDIA_URL = "https://cdn.palembang.go.id/siar/"
MARK = re.compile(r"kf-\d{4,6}")
RECIPIENTS = ("+6281234567801", "+6281234567802", "+6285712345603")
# Adapters that can ask the platform after a crash (exactly once); the others end `unknown`.
LOOKUP = {"outbox", "facebook", "instagram", "threads", "x", "youtube", "whatsapp", "mastodon", "bluesky"}
NO_LOOKUP = {"webhook", "telegram", "linkedin"}
ALL_PLATFORMS = ("outbox", "webhook", "facebook", "instagram", "threads", "x", "youtube", "whatsapp",
                 "telegram", "mastodon", "bluesky", "linkedin")
SETTLING = ("pending", "claimed", "sending", "retrying")
# The request that makes a post public, per platform: (method, path pattern).
IRREVERSIBLE = {
    "webhook": ("POST", r"/hook"),
    "facebook": ("POST", r"/v[\d.]+/\d+/feed"),
    "instagram": ("POST", r"/v[\d.]+/\d+/media_publish"),
    "threads": ("POST", r"/v[\d.]+/\d+/threads_publish"),
    "x": ("POST", r"/2/tweets"),
    "youtube": ("PUT", r"/upload/youtube/v3/videos"),
    "whatsapp": ("POST", r"/v[\d.]+/\d+/messages"),
    "telegram": ("POST", r"/bot[^/]+/send(Message|Photo|MediaGroup)"),
    "mastodon": ("POST", r"/api/v1/statuses"),
    "bluesky": ("POST", r"/xrpc/com\.atproto\.repo\.createRecord"),
    "linkedin": ("POST", r"/rest/posts"),
}


def marker_in(data: str | bytes) -> str | None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    found = MARK.search(text)
    return found.group(0) if found else None


# --- fakes that count what they created ----------------------------------------------------------


class Counts:
    """Mixed into a fake: `created[(marker, part)]`, the objects the platform really made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.created: Counter[tuple[str, str]] = Counter()  # before the fake's own set-up runs
        super().__init__(*args, **kwargs)

    def count(self, data: str | bytes | None, part: str = "") -> None:
        marker = marker_in(data or "")
        if marker:
            self.created[(marker, part)] += 1


class CountingFacebook(Counts, FakeFacebook):
    def _new_post(self, fields: dict[str, Any]) -> str:
        self.count(str(fields.get("message") or ""))
        return super()._new_post(fields)


class CountingInstagram(Counts, FakeInstagram):
    def _publish(self, seen: Seen, params: dict[str, str]) -> Answer:
        answer = super()._publish(seen, params)
        if answer.status == 200:
            self.count(self.containers[params["creation_id"]].get("caption"))
        return answer


class CountingThreads(Counts, FakeThreads):
    def _publish(self, seen: Seen, params: dict[str, str]) -> Answer:
        answer = super()._publish(seen, params)
        if answer.status == 200:
            self.count(self.containers[params["creation_id"]].get("text"))
        return answer


class CountingX(Counts, FakeX):
    def _create(self, seen: Seen) -> Answer:
        answer = super()._create(seen)
        if answer.status == 201:
            self.count(seen.json().get("text"))
        return answer


class CountingYouTube(Counts, FakeYouTube):
    def _put(self, seen: Seen) -> Answer:
        before = len(self.videos)
        answer = super()._put(seen)
        if len(self.videos) > before:
            session = self.sessions[seen.query["upload_id"]]
            self.count(json.dumps(session["metadata"]))
        return answer


class CountingWhatsApp(Counts, FakeWhatsApp):
    def _send(self, seen: Seen, params: dict[str, str]) -> Answer:
        answer = super()._send(seen, params)
        if answer.status == 200:
            self.count(seen.body, part=str(seen.json().get("to")))
        return answer


class CountingTelegram(Counts, FakeTelegram):
    def _method(self, seen: Seen) -> Answer:
        answer = super()._method(seen)
        if answer.status == 200:  # text, caption or a file named after the post: one per method
            self.count(seen.body, part=seen.route.rsplit("/", 1)[1])
        return answer


class CountingMastodon(Counts, FakeMastodon):
    def _status(self, seen: Seen) -> Answer:
        before = len(self.statuses)
        answer = super()._status(seen)
        if len(self.statuses) > before:  # a new status, not the one a known key gave back
            self.count(seen.body)
        return answer


class CountingBluesky(Counts, FakeBluesky):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server.route("POST", "/xrpc/com.atproto.server.refreshSession",
                          self._step("refreshSession", self._refresh_session))

    def _refresh_session(self, seen: Seen) -> Answer:
        """The refresh token (which rotates) for a new pair of tokens."""
        bearer = (seen.header("Authorization") or "").removeprefix("Bearer ")
        if bearer not in self.refresh_jwts:
            return Answer(400, {"error": "ExpiredToken", "message": "Token has expired"})
        self.refresh_jwts.remove(bearer)
        access, refresh = self._jwt("com.atproto.appPass"), self._jwt("com.atproto.refresh")
        self.access_jwts.append(access)
        self.refresh_jwts.append(refresh)
        return Answer(200, {"did": self.did, "handle": self.handle, "accessJwt": access, "refreshJwt": refresh,
                            "active": True})

    def _create(self, seen: Seen) -> Answer:
        answer = super()._create(seen)
        if answer.status == 200:
            self.count((seen.json().get("record") or {}).get("text"))
        return answer


class CountingLinkedIn(Counts, FakeLinkedIn):
    def _post(self, seen: Seen) -> Answer:
        answer = super()._post(seen)
        if answer.status == 201:
            self.count(seen.json().get("commentary"))
        return answer


class FakeWebhook(Counts, FakePlatform):
    """The team's own receiver: every POST that arrives is acted on (no deduplication)."""

    def __init__(self, server: FakeServer) -> None:
        super().__init__(server)
        self.created = Counter()
        self.keys: Counter[str] = Counter()
        server.route("POST", "/hook", self._step("hook", self._hook))

    def _hook(self, seen: Seen) -> Answer:
        body = seen.json()
        if body.get("event") != "publish":
            return Answer(200, {"ok": True})
        self.count(body.get("text"))
        self.keys[seen.header("Idempotency-Key") or ""] += 1
        number = self.next_id()
        return Answer(200, {"id": f"w-{number}", "url": f"https://hooks.palembang.go.id/p/{number}"})


# --- accounts ------------------------------------------------------------------------------------


@dataclass
class Account:
    name: str
    platform: str
    fake: Any = None  # the counting fake (None for the outbox)
    server: FakeServer | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    toml: str = ""
    create: str = ""  # the fake's step name for the irreversible request
    issued: Callable[[], list[str]] = lambda: []  # tokens the platform handed out since

    @property
    def lookup(self) -> bool:
        return self.platform in LOOKUP


def _env(account: str, key: str) -> str:
    return "F_" + re.sub(r"[^A-Z0-9]", "_", f"{account}_{key}".upper())


class Fleet:
    """Accounts on fake platforms, one local server each, and the files Siar needs for them."""

    def __init__(self, root: Path, secret: Callable[[str, str], str] | None = None) -> None:
        self.root = root
        self.accounts: dict[str, Account] = {}
        self._secret = secret or (lambda account, key: f"s3cr3t-{account}-{key}-0123456789abcdef")

    # --- building --------------------------------------------------------------------------------

    def add(self, platform: str, name: str | None = None) -> Account:
        name = name or f"akun-{platform}"
        assert name not in self.accounts
        if platform == "outbox":
            account = Account(name, platform, toml=f'[accounts.{name}]\nplatform = "outbox"\n')
            self.accounts[name] = account
            return account
        server = FakeServer().__enter__()
        server.httpd.handle_error = lambda *_: None  # a killed daemon's dropped connections are expected
        api = server.url

        def s(key: str) -> str:
            value = self._secret(name, key)
            return f"7312845521:{value}" if key == "bot_token" else value  # the Bot API's token shape

        ref = lambda key: "${" + _env(name, key) + "}"  # noqa: E731
        secrets: dict[str, str] = {}
        keys: dict[str, str] = {}

        def secret(key: str) -> str:
            value = secrets[_env(name, key)] = s(key)
            keys[key] = ref(key)
            return value

        issued: Callable[[], list[str]] = lambda: []  # noqa: E731
        extra = ""
        if platform == "webhook":
            fake: Any = FakeWebhook(server)
            secret("secret")
            extra, create = f'url = "{api}/hook"\n', "hook"
        elif platform == "facebook":
            fake = CountingFacebook(server, page_id="104512345678901", token=secret("token"))
            extra, create = 'page_id = "104512345678901"\n', "feed"
        elif platform == "instagram":
            fake = CountingInstagram(server, ig_user_id="17841405822304914", token=secret("token"))
            extra, create = 'ig_user_id = "17841405822304914"\n', "media_publish"
        elif platform == "threads":
            fake = CountingThreads(server, user_id="26841405822304999", username="pemkotpalembang",
                                   token=secret("token"))
            extra, create = 'user_id = "26841405822304999"\n', "threads_publish"
            issued = lambda: list(fake.issued)  # noqa: E731
        elif platform == "x":
            fake = CountingX(server, user_id="1497318620945645568", username="pemkotplg", token=secret("token"))
            secret("refresh_token")
            extra, create = 'client_id = "T2e2eQ2xpZW50SWQ6MTpjaQ"\n', "tweets"
        elif platform == "youtube":
            client = "418921234567-e2esiar0pemkot.apps.googleusercontent.com"
            fake = CountingYouTube(server, client_id=client, client_secret=secret("client_secret"),
                                   refresh_token=secret("refresh_token"))
            extra = f'client_id = "{client}"\nprivacy = "unlisted"\ncategory = "25"\nchunk_size = 262144\n'
            create = "upload"
            issued = lambda: list(fake.access_tokens)  # noqa: E731
        elif platform == "whatsapp":
            fake = CountingWhatsApp(server, phone_number_id="106540352242922", token=secret("token"))
            (self.root / f"penerima-{name}.txt").write_text("\n".join(RECIPIENTS) + "\n")
            extra = (f'phone_number_id = "106540352242922"\nrecipients = "penerima-{name}.txt"\n'
                     'template = { name = "siaran_pemkot", language = "id", media = true }\n')
            create = "messages"
        elif platform == "telegram":
            fake = CountingTelegram(server, bot_token=secret("bot_token"), channel="@pemkotpalembang",
                                    channel_id=-1001234567890)
            extra, create = 'chat = "@pemkotpalembang"\n', "send"
        elif platform == "mastodon":
            fake = CountingMastodon(server, host="social.palembang.go.id", username="pemkot", token=secret("token"))
            extra, create = 'instance = "https://social.palembang.go.id"\nlanguage = "id"\n', "statuses"
        elif platform == "bluesky":
            fake = CountingBluesky(server, handle="pemkot.palembang.go.id", did="did:plc:e2epemkotplg7abcdefghij",
                                   app_password=secret("app_password"))
            extra, create = 'handle = "pemkot.palembang.go.id"\n', "createRecord"
            issued = lambda: [*fake.access_jwts, *fake.refresh_jwts]  # noqa: E731
        elif platform == "linkedin":
            fake = CountingLinkedIn(server, organization="2414183", token=secret("token"))
            extra, create = 'organization = "2414183"\nversion = "202605"\n', "posts"
        else:
            raise ValueError(platform)
        lines = "".join(f'{key} = "{value}"\n' for key, value in keys.items())
        toml = f'[accounts.{name}]\nplatform = "{platform}"\n{extra}{lines}api_base = "{api}"\n'
        account = Account(name, platform, fake, server, secrets, toml, create, issued)
        self.accounts[name] = account
        return account

    def write(self, workspace: Any, daemon: str) -> None:
        """siar.toml (the given [daemon]/[retry] tables, then every account) and .env (mode 0600)."""
        tables = "\n".join(a.toml for a in self.accounts.values())
        workspace.write_settings(textwrap.dedent(daemon) + "\n" + tables)
        env = workspace.root / ".env"
        env.write_text("".join(f"{k}={v}\n" for a in self.accounts.values() for k, v in a.secrets.items()))
        env.chmod(0o600)

    def post(self, workspace: Any, marker: str, targets: Iterable[str], *, rich: bool = False,
             at: str | None = None, extra: str = "") -> None:
        """One post file for `targets` whose text and media carry `marker`.

        Plain: text (with an image where a platform needs media). Rich: the multi-step flows —
        an album on Facebook, a carousel-free image elsewhere, a caption too long for Telegram
        (media, then text), a video on YouTube, an image template to three WhatsApp numbers.
        """
        targets = list(targets)
        platforms = {self.accounts[t].platform for t in targets}
        text = f"Pengumuman Pemkot Palembang {marker}: layanan publik tetap buka."
        media: list[str] = []
        media_dir = workspace.root / "media"
        if "youtube" in platforms:
            media.append(f"{marker}.mp4")
            (media_dir / media[-1]).write_bytes(mp4_bytes(4096))
        elif rich or platforms & {"instagram", "whatsapp"}:
            media.append(f"{marker}-1.jpg")
            (media_dir / media[-1]).write_bytes(jpeg_bytes(1024))
            if rich and "facebook" in platforms:
                media.append(f"{marker}-2.png")
                (media_dir / media[-1]).write_bytes(png_bytes(3, 2))
        if rich and "telegram" in platforms:
            text += " " + "Informasi lengkap tersedia di kantor kelurahan. " * 30  # over the 1,024 caption
        lines = [f'id = "{marker}"', "to = [" + ", ".join(f'"{t}"' for t in targets) + "]", f'text = "{text}"']
        if at:
            lines.append(f"at = {at}")
        if "youtube" in platforms:
            lines.append(f'title = "Profil Kota {marker}"')
        if media:
            items = ", ".join(f'{{ file = "{m}", alt = "Gambar {marker}" }}' for m in media)
            lines.append(f"media = [{items}]")
        if extra:
            lines.append(extra)
        workspace.post(f"{marker}.toml", "\n".join(lines) + "\n")

    # --- faults and latency ------------------------------------------------------------------------

    def intercept(self, name: str, method: str, pattern: str,
                  change: Callable[[Seen, Answer], Answer | None]) -> None:
        """After the platform acted on a request matching (method, pattern), `change` may replace
        its answer (a delay past the client's timeout, a reset, a held answer); None keeps it."""
        server = self.accounts[name].server
        assert server is not None

        def wrap(item: Any) -> Any:
            def answer(seen: Seen) -> Answer:
                given = item(seen) if callable(item) else item
                if seen.method == method and re.fullmatch(pattern, seen.route):
                    return change(seen, given) or given
                return given

            return answer

        for key, script in server.routes.items():
            server.routes[key] = [wrap(item) for item in script]
        server.patterns = [(m, p, [wrap(i) for i in s]) for m, p, s in server.patterns]

    def irreversible(self, name: str) -> list[Seen]:
        """The requests that make the post public (a YouTube status probe is not one)."""
        account = self.accounts[name]
        method, pattern = IRREVERSIBLE[account.platform]
        return [seen for seen in account.server.requests if seen.method == method
                and re.fullmatch(pattern, seen.route) and "*/" not in (seen.header("Content-Range") or "")]

    def slow(self, rng: random.Random, most: float) -> None:
        """Every answer of every fake waits up to `most` seconds AFTER the platform acted: the
        window where a crash leaves a post made but its answer unheard is wide open."""

        def wrap(item: Any) -> Any:
            def answer(seen: Seen) -> Answer:
                given = item(seen) if callable(item) else item
                return dataclasses.replace(given, delay=given.delay + rng.uniform(0, most))

            return answer

        for account in self.accounts.values():
            if account.server is None:
                continue
            for key, script in account.server.routes.items():
                account.server.routes[key] = [wrap(item) for item in script]
            account.server.patterns = [(m, p, [wrap(i) for i in s]) for m, p, s in account.server.patterns]

    # --- counting --------------------------------------------------------------------------------

    def created(self, name: str, workspace: Any) -> Counter[tuple[str, str]]:
        account = self.accounts[name]
        if account.platform != "outbox":
            return Counter(account.fake.created)
        made: Counter[tuple[str, str]] = Counter()
        for path in (workspace.state / "outbox" / name).glob("*.json"):
            made[(json.loads(path.read_text())["post_id"], "")] += 1
        return made

    def close(self) -> None:
        for account in self.accounts.values():
            if account.server is not None:
                account.server.__exit__(None, None, None)


# --- scoring -------------------------------------------------------------------------------------


@dataclass
class Score:
    """The Jepsen-style figures of one run, and what each delivery ended as."""

    posts: int = 0
    deliveries: int = 0
    published: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    recovered: int = 0  # settled after a crash by asking the platform (found, or safely resent)
    unknown: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)

    def figures(self) -> dict[str, Any]:
        return {"posts": self.posts, "deliveries": self.deliveries, "published": self.published,
                "lost": len(self.lost), "duplicated": len(self.duplicated), "recovered": self.recovered,
                "unknown": len(self.unknown), "states": dict(self.states)}


def score(workspace: Any, fleet: Fleet) -> Score:
    """Compare what the database says with what the platforms made.

    lost: a delivery not published (nor `unknown` on a platform that cannot be asked), or one
    recorded published that the platform never made. duplicated: anything made twice.
    """
    db = workspace.state / "siar.db"
    rows = query(db, "SELECT id, post_id, account, platform, state FROM delivery ORDER BY id")
    reconciled = {r["delivery_id"] for r in query(
        db, "SELECT delivery_id, event, detail FROM audit_event WHERE event IN ('published', 'reconciled')")
        if r["event"] == "reconciled" or "reconciled" in (r["detail"] or "")}
    result = Score(posts=len({r["post_id"] for r in rows}), deliveries=len(rows))
    made = {name: fleet.created(name, workspace) for name in fleet.accounts}
    for row in rows:
        name, marker, state = row["account"], row["post_id"], row["state"]
        label = f"{marker}@{name} ({row['platform']}, {state})"
        result.states[state] += 1
        counts = {part: n for (m, part), n in made[name].items() if m == marker}
        if any(n > 1 for n in counts.values()):
            result.duplicated.append(f"{label}: {counts}")
        if state == "published":
            result.published += 1
            if not counts:
                result.lost.append(f"{label}: recorded published, never made")
            if row["id"] in reconciled:
                result.recovered += 1
        elif state == "unknown":
            result.unknown.append(label)
            if fleet.accounts[name].lookup:
                result.lost.append(f"{label}: left unknown though the platform can be asked")
        else:
            result.lost.append(label)
    return result
