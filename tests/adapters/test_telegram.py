"""The Telegram adapter against the Bot API's real answers, mocked with `responses`.

Every mocked URL carries the bot token in its path, as the Bot API wants, so a request that
reaches a registered mock proves the token went where it should — and nowhere else, which the
token tests check in every text an exception can be rendered to.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

from adapters.base import (
    AuthExpired,
    LeaseLost,
    MaybeSent,
    MemoryJob,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
)
from adapters.telegram import TelegramAdapter, TransportFailure, count_utf16
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES

TOKEN = "7012345678:AAHx9Zq-siarTestToken_ABCDEFghijkl12"
BASE = f"https://api.telegram.org/bot{TOKEN}"
CHANNEL_ID = -1001234567890
LONG_TEXT = "Jadwal layanan kependudukan selama libur Hari Guru. " * 30  # ~1,560: over a caption

# --- what the Bot API answers ------------------------------------------------------------------


def channel(username: str | None = "pemkotplg", chat_id: int = CHANNEL_ID) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "title": "Pemerintah Kota Palembang", "type": "channel"}
    if username:
        chat["username"] = username
    return chat


def posted(message_id: int, chat: dict[str, Any] | None = None, **content: Any) -> dict[str, Any]:
    """A channel post as the Bot API returns it (`sender_chat` and `chat` are the channel)."""
    chat = chat or channel()
    return {"message_id": message_id, "sender_chat": chat, "chat": chat, "date": 1764126000, **content}


def photo_sizes() -> list[dict[str, Any]]:
    return [
        {"file_id": "AgACAgUAAx0CfQ7xAAIBKmdFzPhotoSmall", "file_unique_id": "AQADr7kxG0wAAQ", "file_size": 1170, "width": 90, "height": 67},
        {"file_id": "AgACAgUAAx0CfQ7xAAIBKmdFzPhotoLarge", "file_unique_id": "AQADr7kxG0wAAX", "file_size": 9834, "width": 320, "height": 240},
    ]


def video() -> dict[str, Any]:
    return {"duration": 1, "width": 320, "height": 240, "file_name": "clip.mp4", "mime_type": "video/mp4",
            "file_id": "BAACAgUAAx0CfQ7xAAIBK2dFzVideo", "file_unique_id": "AgADvQ8AAkwAAQ", "file_size": 2048}


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def failed(code: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def adapter(make_adapter: Callable[..., Any]) -> TelegramAdapter:
    return make_adapter(TelegramAdapter, bot_token=TOKEN, chat="@pemkotplg")


def expect(mocked: responses.RequestsMock, method: str, answer: Any, *match: Any, status: int = 200) -> None:
    """Register one Bot API call; `answer` is JSON, or a str for a non-JSON body (a proxy's 502)."""
    if isinstance(answer, str):
        mocked.post(f"{BASE}/{method}", body=answer, status=status, content_type="text/html", match=list(match))
    else:
        mocked.post(f"{BASE}/{method}", json=answer, status=status, match=list(match))


def text_body(text: str, **extra: Any) -> Any:
    return matchers.json_params_matcher(
        {"chat_id": "@pemkotplg", "text": text, "link_preview_options": {"is_disabled": False}, **extra}
    )


def every_text(error: BaseException) -> str:
    """Everything an exception can be turned into: str, repr, args, the chain, a full traceback
    with each frame's local variables (as structlog's rich tracebacks render them)."""
    seen: list[str] = []
    current: BaseException | None = error
    while current is not None:
        seen += [str(current), repr(current), *map(repr, current.args)]
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                seen += [str(linked), repr(linked)]
        current = current.__cause__ or current.__context__
    seen.append("".join(traceback.TracebackException.from_exception(error, capture_locals=True).format()))
    return "\n".join(seen)


def assert_token_absent(text: str) -> None:
    secret = TOKEN.split(":", 1)[1]
    assert TOKEN not in text
    assert secret not in text


# --- success, one case per kind of post --------------------------------------------------------

# (case id, message builder, the calls in order as (method, matcher builder, answer), receipt)
SUCCESS_CASES: list[tuple[str, Callable[..., Any], Callable[..., list[tuple[str, Any, Any]]], Receipt]] = [
    (
        "text",
        lambda media: message("Selamat Hari Guru Nasional!"),
        lambda media: [("sendMessage", text_body("Selamat Hari Guru Nasional!"), ok(posted(42, text="Selamat Hari Guru Nasional!")))],
        Receipt("42", "https://t.me/pemkotplg/42"),
    ),
    (
        "text-with-link",
        lambda media: message("Selamat Hari Guru!", link="https://example.go.id/hari-guru"),
        lambda media: [
            (
                "sendMessage",
                matchers.json_params_matcher(
                    {
                        "chat_id": "@pemkotplg",
                        "text": "Selamat Hari Guru!\n\nhttps://example.go.id/hari-guru",
                        "link_preview_options": {"is_disabled": False, "url": "https://example.go.id/hari-guru"},
                    }
                ),
                ok(posted(43, text="Selamat Hari Guru!\n\nhttps://example.go.id/hari-guru")),
            )
        ],
        Receipt("43", "https://t.me/pemkotplg/43"),
    ),
    (
        "one-photo",
        lambda media: message("Guru mengajar", media=(media("photo.jpg"),)),
        lambda media: [
            (
                "sendPhoto",
                matchers.multipart_matcher(
                    {"photo": ("photo.jpg", media("photo.jpg").read(), "image/jpeg")},
                    data={"chat_id": "@pemkotplg", "caption": "Guru mengajar"},
                ),
                ok(posted(44, photo=photo_sizes(), caption="Guru mengajar")),
            )
        ],
        Receipt("44", "https://t.me/pemkotplg/44"),
    ),
    (
        "one-video",
        lambda media: message("Upacara", media=(media("clip.mp4"),)),
        lambda media: [
            (
                "sendVideo",
                matchers.multipart_matcher(
                    {"video": ("clip.mp4", media("clip.mp4").read(), "video/mp4")},
                    data={"chat_id": "@pemkotplg", "caption": "Upacara"},
                ),
                ok(posted(45, video=video(), caption="Upacara")),
            )
        ],
        Receipt("45", "https://t.me/pemkotplg/45"),
    ),
    (
        "album",
        lambda media: message("Dokumentasi", media=(media("photo.jpg"), media("clip.mp4"))),
        lambda media: [
            (
                "sendMediaGroup",
                matchers.multipart_matcher(
                    {
                        "file0": ("photo.jpg", media("photo.jpg").read(), "image/jpeg"),
                        "file1": ("clip.mp4", media("clip.mp4").read(), "video/mp4"),
                    },
                    data={
                        "chat_id": "@pemkotplg",
                        "media": '[{"type":"photo","media":"attach://file0","caption":"Dokumentasi"},'
                        '{"type":"video","media":"attach://file1"}]',
                    },
                ),
                ok(
                    [
                        posted(46, media_group_id="13827712893432161", photo=photo_sizes(), caption="Dokumentasi"),
                        posted(47, media_group_id="13827712893432161", video=video()),
                    ]
                ),
            )
        ],
        Receipt("46,47", "https://t.me/pemkotplg/46"),
    ),
    (
        "photo-with-text-longer-than-a-caption",
        lambda media: message(LONG_TEXT, media=(media("photo.jpg"),)),
        lambda media: [
            (
                "sendPhoto",
                matchers.multipart_matcher(
                    {"photo": ("photo.jpg", media("photo.jpg").read(), "image/jpeg")}, data={"chat_id": "@pemkotplg"}
                ),
                ok(posted(48, photo=photo_sizes())),
            ),
            ("sendMessage", text_body(LONG_TEXT.strip()), ok(posted(49, text=LONG_TEXT.strip()))),
        ],
        Receipt("48,49", "https://t.me/pemkotplg/48"),
    ),
]


@pytest.mark.parametrize(("case", "build", "calls", "receipt"), SUCCESS_CASES, ids=[c[0] for c in SUCCESS_CASES])
def test_each_kind_of_post_is_sent_as_the_bot_api_expects_and_yields_its_permalink(
    adapter, job, make_media, mocked, case, build, calls, receipt
):
    for method, match, answer in calls(make_media):
        expect(mocked, method, answer, match)

    assert adapter.publish(build(make_media), job) == receipt
    assert len(mocked.calls) == len(calls(make_media))


def test_a_parse_mode_and_a_disabled_preview_are_passed_on(make_adapter, job, mocked):
    adapter = make_adapter(TelegramAdapter, bot_token=TOKEN, chat="@pemkotplg", parse_mode="HTML", disable_preview="true")
    expect(
        mocked,
        "sendMessage",
        ok(posted(50, text="Selamat")),
        matchers.json_params_matcher(
            {"chat_id": "@pemkotplg", "text": "<b>Selamat</b>", "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}
        ),
    )
    assert adapter.publish(message("<b>Selamat</b>"), job).platform_id == "50"


def test_every_request_goes_to_api_base_when_one_is_set(make_adapter, job, mocked):
    adapter = make_adapter(TelegramAdapter, bot_token=TOKEN, chat="@pemkotplg", api_base="http://127.0.0.1:8080")
    mocked.post(f"http://127.0.0.1:8080/bot{TOKEN}/sendMessage", json=ok(posted(51)), match=[text_body("Halo")])
    assert adapter.publish(message("Halo"), job).platform_id == "51"


# --- permalinks --------------------------------------------------------------------------------

PERMALINK_CASES = [
    ("public-by-name", "@pemkotplg", channel("pemkotplg"), "https://t.me/pemkotplg/42"),
    ("public-by-id", str(CHANNEL_ID), channel("pemkotplg"), "https://t.me/pemkotplg/42"),
    ("private", str(CHANNEL_ID), channel(None), "https://t.me/c/1234567890/42"),
]


@pytest.mark.parametrize(("case", "chat", "answer_chat", "url"), PERMALINK_CASES, ids=[c[0] for c in PERMALINK_CASES])
def test_permalinks_name_public_channels_and_use_the_c_form_for_private_ones(
    make_adapter, job, mocked, case, chat, answer_chat, url
):
    adapter = make_adapter(TelegramAdapter, bot_token=TOKEN, chat=chat)
    mocked.post(
        f"{BASE}/sendMessage",
        json=ok(posted(42, chat=answer_chat, text="Halo")),
        match=[matchers.json_params_matcher({"chat_id": chat, "text": "Halo", "link_preview_options": {"is_disabled": False}})],
    )
    assert adapter.publish(message("Halo"), job) == Receipt("42", url)


# --- errors ------------------------------------------------------------------------------------

PROXY_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"

# (case id, HTTP status, body, typed error)
ERROR_CASES = [
    ("too-long", 400, failed(400, "Bad Request: message is too long"), Rejected),
    ("empty-text", 400, failed(400, "Bad Request: message text is empty"), Rejected),
    ("chat-not-found", 400, failed(400, "Bad Request: chat not found"), AuthExpired),
    (
        "chat-migrated",
        400,
        failed(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=CHANNEL_ID),
        AuthExpired,
    ),
    ("token-revoked", 401, failed(401, "Unauthorized"), AuthExpired),
    ("token-unknown", 404, failed(404, "Not Found"), AuthExpired),
    ("bot-not-admin", 403, failed(403, "Forbidden: bot is not a member of the channel chat"), AuthExpired),
    ("bot-kicked", 403, failed(403, "Forbidden: bot was kicked from the channel chat"), AuthExpired),
    ("flood-wait", 429, failed(429, "Too Many Requests: retry after 35", retry_after=35), RateLimited),
    ("server-error", 500, failed(500, "Internal Server Error"), Transient),
    ("bad-gateway", 502, PROXY_502, Transient),
]


@pytest.mark.parametrize(("case", "status", "body", "error"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_bot_api_error_becomes_its_typed_error_without_the_token(adapter, job, mocked, case, status, body, error):
    expect(mocked, "sendMessage", body, text_body("Halo"), status=status)

    with pytest.raises(error) as info:
        adapter.publish(message("Halo"), job)

    assert type(info.value) is error
    assert info.value.http_status == status
    assert_token_absent(every_text(info.value))


def test_a_flood_wait_carries_telegrams_own_retry_after(adapter, job, mocked):
    expect(mocked, "sendMessage", failed(429, "Too Many Requests: retry after 35", retry_after=35), status=429)
    with pytest.raises(RateLimited) as info:
        adapter.publish(message("Halo"), job)
    assert info.value.retry_after == 35


def test_a_chat_that_moved_tells_the_operator_its_new_id(adapter, job, mocked):
    body = failed(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-1009876543210)
    expect(mocked, "sendMessage", body, status=400)
    with pytest.raises(AuthExpired, match="-1009876543210"):
        adapter.publish(message("Halo"), job)


def test_an_ok_answer_without_a_message_id_is_reported_as_maybe_sent_not_retried(adapter, job, mocked):
    expect(mocked, "sendMessage", ok(True))
    with pytest.raises(MaybeSent):
        adapter.publish(message("Halo"), job)


def test_a_malformed_token_is_refused_before_any_request(make_adapter, job, mocked):
    adapter = make_adapter(TelegramAdapter, bot_token="123:abc/../../evil", chat="@pemkotplg")
    with pytest.raises(AuthExpired) as info:
        adapter.publish(message("Halo"), job)
    text = every_text(info.value)  # before any assert: the rendering includes this frame's locals
    assert len(mocked.calls) == 0
    assert "evil" not in text


# --- transport failures and the token ----------------------------------------------------------


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_map_to_the_shared_typed_errors(
    adapter, job, mocked, case, raise_, expected
):
    mocked.post(f"{BASE}/sendMessage", body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(message("Halo"), job)
    assert_token_absent(every_text(info.value))


def requests_style_failures() -> list[tuple[str, Callable[[], Exception], type[Exception]]]:
    """Transport errors worded as `requests` words them: with the URL, hence the token, inside."""
    path = f"/bot{TOKEN}/sendMessage"
    prepared = requests.Request("POST", f"{BASE}/sendMessage").prepare()

    def refused() -> Exception:
        reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
        return requests.ConnectionError(MaxRetryError(None, path, reason=reason), request=prepared)  # type: ignore[arg-type]

    def read_timeout() -> Exception:
        return requests.ReadTimeout(
            f"HTTPSConnectionPool(host='api.telegram.org', port=443): Read timed out. (url: {path})", request=prepared
        )

    def connect_timeout() -> Exception:
        return requests.ConnectTimeout(
            f"HTTPSConnectionPool(host='api.telegram.org', port=443): Max retries exceeded with url: {path}", request=prepared
        )

    return [("refused", refused, Transient), ("read-timeout", read_timeout, MaybeSent), ("connect-timeout", connect_timeout, Transient)]


@pytest.mark.parametrize(
    ("case", "raise_", "expected"), requests_style_failures(), ids=[c[0] for c in requests_style_failures()]
)
def test_no_exception_text_or_chained_cause_holds_the_token_when_requests_quotes_the_url(
    adapter, job, mocked, case, raise_, expected
):
    # The premise: requests' own exception quotes the token (not kept in a local, which the
    # traceback-with-locals rendering below would show).
    assert TOKEN in str(raise_())

    mocked.post(f"{BASE}/sendMessage", body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(message("Halo"), job)

    assert_token_absent(every_text(info.value))
    # adapters.http raises its typed errors `from None`: the original, which quotes the URL, is
    # nowhere on the chain (a cause retold with the token masked would be acceptable too).
    cause = info.value.__cause__
    assert cause is None or (isinstance(cause, TransportFailure) and "/bot***/" in str(cause))
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_the_token_appears_in_no_receipt_and_no_repr_after_a_success(adapter, job, mocked):
    expect(mocked, "sendMessage", ok(posted(42, text="Halo")), text_body("Halo"))
    receipt = adapter.publish(message("Halo"), job)
    assert_token_absent(repr(receipt) + repr(adapter) + str(job.saved))


def test_the_token_appears_in_no_error_when_no_mock_answers_and_requests_names_the_url(adapter, job, mocked):
    # responses refuses unregistered calls with a ConnectionError that quotes the full URL.
    mocked.assert_all_requests_are_fired = False
    with pytest.raises((Transient, MaybeSent)) as info:
        adapter.publish(message("Halo"), job)
    assert_token_absent(every_text(info.value))


# --- the two-step post: media, then the text that did not fit a caption ------------------------


def long_post(make_media: Callable[..., Any], *files: str) -> Any:
    return message(LONG_TEXT, media=tuple(make_media(f) for f in files))


def photo_step(mocked: responses.RequestsMock, make_media: Callable[..., Any], answer: Any = None, status: int = 200) -> None:
    match = matchers.multipart_matcher(
        {"photo": ("photo.jpg", make_media("photo.jpg").read(), "image/jpeg")}, data={"chat_id": "@pemkotplg"}
    )
    expect(mocked, "sendPhoto", answer if answer is not None else ok(posted(60, photo=photo_sizes())), match, status=status)


def test_a_failed_media_step_saves_nothing_and_the_retry_sends_both_steps(adapter, job, make_media, mocked):
    photo_step(mocked, make_media, failed(500, "Internal Server Error"), status=500)
    with pytest.raises(Transient):
        adapter.publish(long_post(make_media, "photo.jpg"), job)
    assert job.saved == {}

    mocked.reset()
    photo_step(mocked, make_media)
    expect(mocked, "sendMessage", ok(posted(61, text=LONG_TEXT.strip())), text_body(LONG_TEXT.strip()))
    assert adapter.publish(long_post(make_media, "photo.jpg"), job) == Receipt("60,61", "https://t.me/pemkotplg/60")


@pytest.mark.parametrize(
    ("case", "second_step"),
    [
        ("rate-limited", lambda m: expect(m, "sendMessage", failed(429, "Too Many Requests: retry after 3", retry_after=3), status=429)),
        ("connection-refused", lambda m: m.post(f"{BASE}/sendMessage", body=TRANSPORT_CASES[1][1]())),
        ("bad-gateway", lambda m: expect(m, "sendMessage", PROXY_502, status=502)),
    ],
    ids=["rate-limited", "connection-refused", "bad-gateway"],
)
def test_a_retry_after_the_media_went_out_sends_only_the_text(adapter, job, make_media, mocked, case, second_step):
    photo_step(mocked, make_media)
    second_step(mocked)
    with pytest.raises(Transient):
        adapter.publish(long_post(make_media, "photo.jpg"), job)
    assert job.saved == {"media_messages": [60]}

    # Resumed with the same job: only sendMessage is registered, so a second photo would fail.
    mocked.reset()
    expect(mocked, "sendMessage", ok(posted(61, text=LONG_TEXT.strip())), text_body(LONG_TEXT.strip()))
    assert adapter.publish(long_post(make_media, "photo.jpg"), job) == Receipt("60,61", "https://t.me/pemkotplg/60")
    assert [call.request.url.rsplit("/", 1)[1] for call in mocked.calls] == ["sendMessage"]


def test_an_album_with_a_long_text_is_resumed_after_the_album_without_sending_it_again(adapter, job, make_media, mocked):
    album = matchers.multipart_matcher(
        {
            "file0": ("photo.jpg", make_media("photo.jpg").read(), "image/jpeg"),
            "file1": ("second.jpg", make_media("second.jpg").read(), "image/jpeg"),
        },
        data={"chat_id": "@pemkotplg", "media": '[{"type":"photo","media":"attach://file0"},{"type":"photo","media":"attach://file1"}]'},
    )
    group = "13827712893432170"
    expect(mocked, "sendMediaGroup", ok([posted(70, media_group_id=group, photo=photo_sizes()), posted(71, media_group_id=group, photo=photo_sizes())]), album)
    expect(mocked, "sendMessage", failed(429, "Too Many Requests: retry after 2", retry_after=2), status=429)
    with pytest.raises(RateLimited):
        adapter.publish(long_post(make_media, "photo.jpg", "second.jpg"), job)
    assert job.saved == {"media_messages": [70, 71]}

    mocked.reset()
    expect(mocked, "sendMessage", ok(posted(72, text=LONG_TEXT.strip())), text_body(LONG_TEXT.strip()))
    assert adapter.publish(long_post(make_media, "photo.jpg", "second.jpg"), job) == Receipt("70,71,72", "https://t.me/pemkotplg/70")


def test_a_lease_lost_while_saving_the_media_step_stops_before_the_text(adapter, make_media, mocked):
    def taken(_state: Any) -> None:
        raise LeaseLost("another worker holds the delivery")

    job = MemoryJob(key="k-lease", on_save=taken)
    photo_step(mocked, make_media)
    with pytest.raises(LeaseLost):
        adapter.publish(long_post(make_media, "photo.jpg"), job)
    assert [call.request.url.rsplit("/", 1)[1] for call in mocked.calls] == ["sendPhoto"]


def test_the_second_step_waits_a_second_so_the_chat_is_not_flooded(adapter, job, make_media, mocked):
    waits: list[float] = []
    adapter.sleep = waits.append
    photo_step(mocked, make_media)
    expect(mocked, "sendMessage", ok(posted(61, text=LONG_TEXT.strip())), text_body(LONG_TEXT.strip()))
    adapter.publish(long_post(make_media, "photo.jpg"), job)
    assert waits == [1.0]


# --- offline checks and whoami -----------------------------------------------------------------


def test_text_is_counted_in_utf16_units_as_telegram_counts_it(adapter):
    assert count_utf16("Halo 👋") == 7
    problems = adapter.check(message("👋" * 2049))  # 2,049 emoji = 4,098 units
    assert [p.field for p in problems] == ["text"]
    assert "4098" in problems[0].message


def test_a_text_too_long_for_a_caption_is_a_warning_that_says_it_will_follow_the_media(adapter, make_media):
    problems = adapter.check(message(LONG_TEXT, media=(make_media("photo.jpg"),)))
    assert [(p.field, p.severity) for p in problems] == [("text", "warning")]


def test_an_empty_post_and_a_gif_inside_an_album_are_errors(adapter, media_dir, make_media):
    assert [p.field for p in adapter.check(message("   "))] == ["text"]
    (media_dir / "anim.gif").write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    problems = adapter.check(message("Album", media=(make_media("photo.jpg"), make_media("anim.gif"))))
    assert [p.field for p in problems] == ["media[1]"]


def test_a_single_gif_goes_out_as_an_animation_so_it_keeps_moving(adapter, job, media_dir, make_media, mocked):
    data = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
    (media_dir / "anim.gif").write_bytes(data)
    expect(
        mocked,
        "sendAnimation",
        ok(posted(80, animation={"file_id": "CgACAgUAAx0CfQ7xAAIBLGdFzAnim", "file_unique_id": "AgADwQ8AAkwAAQ"})),
        matchers.multipart_matcher({"animation": ("anim.gif", data, "image/gif")}, data={"chat_id": "@pemkotplg", "caption": "Halo"}),
    )
    assert adapter.publish(message("Halo", media=(make_media("anim.gif"),)), job).platform_id == "80"


def test_whoami_names_the_bot_and_the_channel(adapter, mocked):
    me = {"id": 7012345678, "is_bot": True, "first_name": "Siar Pemkot", "username": "siar_pemkot_bot",
          "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
    expect(mocked, "getMe", ok(me))
    assert adapter.whoami() == "@siar_pemkot_bot → @pemkotplg"


def test_whoami_with_a_revoked_token_raises_auth_expired_without_the_token(adapter, mocked):
    expect(mocked, "getMe", failed(401, "Unauthorized"), status=401)
    with pytest.raises(AuthExpired) as info:
        adapter.whoami()
    assert_token_absent(every_text(info.value))


def test_a_text_over_the_message_limit_is_rejected_before_the_media_go_out(adapter, job, make_media, mocked):
    with pytest.raises(Rejected, match="4096"):
        adapter.publish(message("a" * 4097, media=(make_media("photo.jpg"),)), job)
    assert len(mocked.calls) == 0


def test_media_saved_by_an_earlier_attempt_are_not_resent_even_if_the_text_now_fits_a_caption(
    adapter, make_media, mocked
):
    job = MemoryJob(key="k-edited", attempt=2, state={"media_messages": [60]})
    expect(mocked, "sendMessage", ok(posted(61, text="Singkat")), text_body("Singkat"))
    assert adapter.publish(message("Singkat", media=(make_media("photo.jpg"),)), job) == Receipt(
        "60,61", "https://t.me/pemkotplg/60"
    )
