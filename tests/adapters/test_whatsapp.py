"""WhatsApp adapter: the fan-out to a recipients list, its checkpoint, error mapping and checks.

Mocked answers follow the Cloud API's wire format: `{"messaging_product","contacts","messages"}`
on success and the Graph error envelope with `error_data.details` on failure.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import responses
from responses import matchers

from adapters.base import (
    AuthExpired,
    ConfigError,
    MaybeSent,
    MemoryJob,
    RateLimited,
    Rejected,
    Transient,
)
from adapters.whatsapp import WhatsAppAdapter, mask, read_recipients, scrub
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES, refused, reset_mid_answer
from tests.support import media as media_files

VERSION = "v21.0"
PHONE_ID = "106540352242922"
GRAPH = f"https://graph.facebook.com/{VERSION}/{PHONE_ID}"
TOKEN = "EAAGm0PX4ZCpsBAWhatsAppS3cr3tT0ken"
A, B, C, D, E = (f"+62812345678{n:02d}" for n in range(1, 6))
TEXT = "Selamat Hari Guru Nasional!"
TEMPLATE = {"name": "siar_broadcast", "language": "id"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = {"messaging_product": "whatsapp", "recipient_type": "individual"}
TEXT_PAYLOAD = {**BASE, "type": "text", "text": {"preview_url": False, "body": TEXT}}


def wamid(number: str) -> str:
    return f"wamid.HBgNNjI4MTIzNDU2Nzg{number[-2:]}FQIAERgSQUFBQkNERUZHSElKS0xNTk8A"


def accepted(number: str) -> dict:
    """The Cloud API's answer to an accepted send."""
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": number, "wa_id": number.lstrip("+")}],
        "messages": [{"id": wamid(number)}],
    }


def graph_error(code: int, title: str, details: str | None = None, **extra) -> dict:
    """The Graph error envelope the Cloud API sends (v16+: no subcode unless the code has one)."""
    error: dict = {"message": f"(#{code}) {title}", "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error.update(extra)
    error["fbtrace_id"] = "AjXb3kq9mZ2-LkV1PfQeR8s"
    return {"error": error}


EXPIRED_TOKEN = {
    "error": {
        "message": "Error validating access token: Session has expired on Tuesday, 24-Nov-26 09:00:00 PST. "
        "The current time is Wednesday, 25-Nov-26 01:00:01 PST.",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 463,
        "fbtrace_id": "A1b2C3d4E5f6G7h8I9j0",
    }
}
SERVICE_DOWN = {
    "error": {
        "message": "An unexpected error has occurred. Please retry your request later.",
        "type": "OAuthException",
        "is_transient": True,
        "code": 2,
        "fbtrace_id": "AqZ9x8Y7w6V5u4T3s2R1",
    }
}
UNKNOWN_ERROR = graph_error(131000, "Something went wrong", "Message failed to send due to an unknown error.")
THROUGHPUT = graph_error(
    130429, "Rate limit hit", "Cloud API message throughput has been reached.", error_subcode=2494055
)


def write_recipients(folder: Path, *lines: str) -> Path:
    path = folder / "recipients.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def recipients(tmp_path: Path) -> Path:
    return write_recipients(tmp_path, "# opted in at the Pemkot service desk", A, "", f"{B}  # Budi", C)


@pytest.fixture
def whatsapp(make_adapter, recipients):
    def build(**extra) -> WhatsAppAdapter:
        account = {"phone_number_id": PHONE_ID, "token": TOKEN, "recipients": str(recipients), **extra}
        return make_adapter(WhatsAppAdapter, **account)

    return build


def mock_send(number: str, payload: dict, *, status: int = 200, body: dict | None = None, base: str = GRAPH) -> None:
    responses.post(
        f"{base}/messages",
        status=status,
        json=body if body is not None else accepted(number),
        match=[matchers.json_params_matcher({**payload, "to": number}), matchers.header_matcher(AUTH)],
    )


def assert_private(error: BaseException) -> None:
    text = str(error)
    assert TOKEN not in text
    for number in (A, B, C, D, E):
        assert number not in text and number.lstrip("+") not in text


def sends_to(number: str) -> int:
    return sum(1 for call in responses.calls if json.loads(call.request.body).get("to") == number)


# --- success for each kind of post ---------------------------------------------------------------


@responses.activate(assert_all_requests_are_fired=True)
def test_a_text_post_goes_to_every_recipient_in_file_order(whatsapp, job):
    for number in (A, B, C):
        mock_send(number, TEXT_PAYLOAD)

    receipt = whatsapp().publish(message(TEXT), job)

    assert receipt.platform_id == f"{wamid(A)} (+2 more)"
    assert receipt.url is None
    assert job.saved["sent"] == {A: wamid(A), B: wamid(B), C: wamid(C)}


@responses.activate(assert_all_requests_are_fired=True)
def test_a_link_is_added_to_the_text_with_a_preview(whatsapp, job):
    payload = {
        **BASE,
        "type": "text",
        "text": {"preview_url": True, "body": f"{TEXT}\n\nhttps://example.go.id/hari-guru"},
    }
    for number in (A, B, C):
        mock_send(number, payload)
    whatsapp().publish(message(TEXT, link="https://example.go.id/hari-guru"), job)


@responses.activate(assert_all_requests_are_fired=True)
def test_an_image_with_a_public_url_is_sent_by_link_with_its_caption(whatsapp, make_media, job):
    payload = {**BASE, "type": "image", "image": {"link": "https://cdn.example.go.id/siar/photo.jpg", "caption": TEXT}}
    for number in (A, B, C):
        mock_send(number, payload)
    whatsapp().publish(message(TEXT, media=(make_media("photo.jpg"),)), job)


@responses.activate(assert_all_requests_are_fired=True)
def test_a_video_with_a_public_url_is_sent_by_link(whatsapp, make_media, job):
    payload = {**BASE, "type": "video", "video": {"link": "https://cdn.example.go.id/siar/clip.mp4", "caption": TEXT}}
    for number in (A, B, C):
        mock_send(number, payload)
    whatsapp().publish(message(TEXT, media=(make_media("clip.mp4"),)), job)


@responses.activate(assert_all_requests_are_fired=True)
def test_an_image_without_a_url_is_uploaded_once_and_sent_by_media_id(whatsapp, make_media, job):
    photo = make_media("photo.png", url_base=None)
    responses.post(
        f"{GRAPH}/media",
        json={"id": "1037543291543636"},
        match=[
            matchers.multipart_matcher(
                files={"file": ("photo.png", photo.read(), "image/png")},
                data={"messaging_product": "whatsapp", "type": "image/png"},
            ),
            matchers.header_matcher(AUTH),
        ],
    )
    payload = {**BASE, "type": "image", "image": {"id": "1037543291543636", "caption": TEXT}}
    mock_send(A, payload)
    pair_rate = graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit")
    mock_send(B, payload, status=400, body=pair_rate)

    with pytest.raises(RateLimited):
        whatsapp().publish(message(TEXT, media=(photo,)), job)
    assert job.saved["media_id"] == "1037543291543636"

    # The retry reuses the uploaded media: no second upload.
    mock_send(B, payload)
    mock_send(C, payload)
    whatsapp().publish(message(TEXT, media=(photo,)), job)
    assert sum(1 for call in responses.calls if call.request.url.endswith("/media")) == 1


@responses.activate(assert_all_requests_are_fired=True)
def test_with_a_template_the_post_text_is_its_body_variable_on_one_line(whatsapp, job):
    payload = {
        **BASE,
        "type": "template",
        "template": {
            "name": "siar_broadcast",
            "language": {"code": "id"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": f"{TEXT} Terima kasih, para guru."}]}
            ],
        },
    }
    for number in (A, B, C):
        mock_send(number, payload)
    whatsapp(template=TEMPLATE).publish(message(f"{TEXT}\n\nTerima kasih,\tpara guru."), job)


@responses.activate(assert_all_requests_are_fired=True)
def test_a_template_with_a_media_header_carries_the_posts_image(whatsapp, make_media, job):
    payload = {
        **BASE,
        "type": "template",
        "template": {
            "name": "siar_broadcast",
            "language": {"code": "id"},
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": "https://cdn.example.go.id/siar/photo.jpg"}}],
                },
                {"type": "body", "parameters": [{"type": "text", "text": TEXT}]},
            ],
        },
    }
    for number in (A, B, C):
        mock_send(number, payload)
    whatsapp(template={**TEMPLATE, "media": True}).publish(message(TEXT, media=(make_media("photo.jpg"),)), job)


@responses.activate(assert_all_requests_are_fired=True)
def test_every_request_is_rebased_onto_api_base(whatsapp, job):
    base = f"http://127.0.0.1:8080/{VERSION}/{PHONE_ID}"
    for number in (A, B, C):
        mock_send(number, TEXT_PAYLOAD, base=base)
    whatsapp(api_base="http://127.0.0.1:8080").publish(message(TEXT), job)


@responses.activate(assert_all_requests_are_fired=True)
def test_the_graph_version_is_configurable(whatsapp, job):
    for number in (A, B, C):
        mock_send(number, TEXT_PAYLOAD, base=f"https://graph.facebook.com/v22.0/{PHONE_ID}")
    whatsapp(graph_version="v22.0").publish(message(TEXT), job)


# --- errors --------------------------------------------------------------------------------------

# (case, HTTP status, body): refused for this recipient only; recorded, never retried.
RECIPIENT_REFUSALS = [
    ("undeliverable", 400, graph_error(131026, "Message Undeliverable.", "Message Undeliverable.")),
    (
        "outside-the-24-hour-window",
        400,
        graph_error(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied "
            "to this number.",
        ),
    ),
    ("invalid-parameter", 400, graph_error(100, "Invalid parameter", "Invalid parameter")),
    ("missing-parameter", 400, graph_error(131008, "Required parameter is missing", "The parameter to is required.")),
]


@pytest.mark.parametrize(("case", "status", "body"), RECIPIENT_REFUSALS, ids=[c[0] for c in RECIPIENT_REFUSALS])
@responses.activate(assert_all_requests_are_fired=True)
def test_a_recipients_permanent_refusal_is_recorded_and_the_others_still_receive_it(whatsapp, job, case, status, body):
    mock_send(A, TEXT_PAYLOAD)
    mock_send(B, TEXT_PAYLOAD, status=status, body=body)
    mock_send(C, TEXT_PAYLOAD)

    receipt = whatsapp().publish(message(TEXT), job)

    assert receipt.platform_id == f"{wamid(A)} (+1 more, 1 failed)"
    assert job.saved["failed"] == {B: body["error"]["code"]}
    # A retry of the same delivery asks nothing more: B is settled, not owed.
    assert whatsapp().publish(message(TEXT), job) == receipt
    assert len(responses.calls) == 3


# (case, HTTP status, body, typed error, retry_after): stop the run; the retry goes on from there.
STOPPING_ERRORS = [
    ("throughput", 429, THROUGHPUT, RateLimited, None),
    (
        "pair-rate",
        400,
        graph_error(
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same "
            "phone number in a short period of time.",
        ),
        RateLimited,
        6.0,
    ),
    (
        "spam-rate",
        400,
        graph_error(
            131048,
            "Spam rate limit hit",
            "Message failed to send because there are restrictions on how many messages can be sent from this phone "
            "number. This may be because too many previous messages were blocked or flagged as spam.",
        ),
        RateLimited,
        None,
    ),
    ("unknown-error", 500, UNKNOWN_ERROR, Transient, None),
    ("service-down", 503, SERVICE_DOWN, Transient, None),
    ("expired-token", 401, EXPIRED_TOKEN, AuthExpired, None),
    (
        "template-missing",
        404,
        graph_error(132001, "Template name does not exist in the translation",
                    "template name (siar_broadcast) does not exist in id"),
        Rejected,
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "status", "body", "expected", "wait"), STOPPING_ERRORS, ids=[c[0] for c in STOPPING_ERRORS]
)
@responses.activate(assert_all_requests_are_fired=True)
def test_a_stopping_error_keeps_who_was_sent_and_the_retry_sends_only_to_the_rest(
    whatsapp, job, case, status, body, expected, wait
):
    mock_send(A, TEXT_PAYLOAD)
    mock_send(B, TEXT_PAYLOAD, status=status, body=body)

    with pytest.raises(expected) as info:
        whatsapp().publish(message(TEXT), job)

    assert type(info.value) is expected
    assert info.value.http_status == status
    if expected is RateLimited:
        assert info.value.retry_after == wait
    assert_private(info.value)
    assert job.saved["sent"] == {A: wamid(A)}
    assert "sending" not in job.saved and job.saved["failed"] == {}

    mock_send(B, TEXT_PAYLOAD)
    mock_send(C, TEXT_PAYLOAD)
    receipt = whatsapp().publish(message(TEXT), job)

    assert receipt.platform_id == f"{wamid(A)} (+2 more)"
    assert (sends_to(A), sends_to(B), sends_to(C)) == (1, 2, 1)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
@responses.activate
def test_transport_failures_on_the_first_request_map_to_typed_errors(whatsapp, job, case, raise_, expected):
    responses.post(f"{GRAPH}/messages", body=raise_())
    with pytest.raises(expected) as info:
        whatsapp().publish(message(TEXT), job)
    assert type(info.value) is expected
    assert_private(info.value)
    # Surely not sent: owed again. Maybe sent: marked, so it is never sent a second time.
    assert job.saved.get("sending") == (A if expected is MaybeSent else None)


@responses.activate(assert_all_requests_are_fired=True)
def test_a_recipient_whose_send_may_have_gone_out_is_counted_unknown_and_not_resent(whatsapp, job):
    responses.post(f"{GRAPH}/messages", body=reset_mid_answer())
    with pytest.raises(MaybeSent):
        whatsapp().publish(message(TEXT), job)

    # The dispatcher reconciles: lookup says the fan-out is not finished, so it goes on.
    assert whatsapp().lookup(message(TEXT), job) is None
    mock_send(B, TEXT_PAYLOAD)
    mock_send(C, TEXT_PAYLOAD)
    receipt = whatsapp().publish(message(TEXT), job)

    assert receipt.platform_id == f"{wamid(B)} (+1 more, 1 unknown)"
    assert job.saved["unknown"] == [A]
    assert sends_to(A) == 1
    assert whatsapp().lookup(message(TEXT), job) == receipt


@responses.activate(assert_all_requests_are_fired=True)
def test_when_every_recipient_refuses_the_post_is_rejected_with_counts_and_no_numbers(whatsapp, job):
    undeliverable = graph_error(131026, "Message Undeliverable.", "Message Undeliverable.")
    outside = graph_error(131047, "Re-engagement message", "More than 24 hours have passed.")
    mock_send(A, TEXT_PAYLOAD, status=400, body=undeliverable)
    mock_send(B, TEXT_PAYLOAD, status=400, body=outside)
    mock_send(C, TEXT_PAYLOAD, status=400, body=undeliverable)

    with pytest.raises(Rejected) as info:
        whatsapp().publish(message(TEXT), job)

    assert "3 recipients" in str(info.value)
    assert "2 × code 131026" in str(info.value) and "1 × code 131047" in str(info.value)
    assert_private(info.value)
    assert whatsapp().lookup(message(TEXT), job) is None


@responses.activate(assert_all_requests_are_fired=True)
def test_the_same_parameter_error_on_the_first_three_recipients_stops_the_broadcast(whatsapp, job, tmp_path):
    write_recipients(tmp_path, A, B, C, D, E)
    invalid = graph_error(
        100, "Invalid parameter", "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
    )
    for number in (A, B, C):
        mock_send(number, TEXT_PAYLOAD, status=400, body=invalid)

    with pytest.raises(Rejected) as info:
        whatsapp().publish(message(TEXT), job)

    assert "message itself" in str(info.value)
    assert_private(info.value)
    assert job.saved["failed"] == {}  # not the recipients' fault: a corrected post may reach them
    assert sends_to(D) == sends_to(E) == 0


@responses.activate(assert_all_requests_are_fired=True)
def test_parameter_errors_after_someone_received_the_post_are_the_recipients_own(whatsapp, job, tmp_path):
    write_recipients(tmp_path, A, B, C, D, E)
    invalid = graph_error(100, "Invalid parameter", "Invalid parameter")
    mock_send(A, TEXT_PAYLOAD)
    for number in (B, C, D):
        mock_send(number, TEXT_PAYLOAD, status=400, body=invalid)
    mock_send(E, TEXT_PAYLOAD)

    receipt = whatsapp().publish(message(TEXT), job)
    assert receipt.platform_id == f"{wamid(A)} (+1 more, 3 failed)"


@responses.activate(assert_all_requests_are_fired=True)
def test_a_recipient_removed_from_the_file_before_the_retry_is_not_sent_to(whatsapp, job, recipients):
    mock_send(A, TEXT_PAYLOAD)
    mock_send(B, TEXT_PAYLOAD, status=429, body=THROUGHPUT)
    with pytest.raises(RateLimited):
        whatsapp().publish(message(TEXT), job)

    write_recipients(recipients.parent, A, B)  # C opted out in the meantime
    mock_send(B, TEXT_PAYLOAD)
    assert whatsapp().publish(message(TEXT), job).platform_id == f"{wamid(A)} (+1 more)"
    assert sends_to(C) == 0


@responses.activate(assert_all_requests_are_fired=True)
def test_an_upload_refused_for_an_expired_token_pauses_the_account(whatsapp, make_media, job):
    responses.post(f"{GRAPH}/media", status=401, json=EXPIRED_TOKEN, match=[matchers.header_matcher(AUTH)])
    with pytest.raises(AuthExpired) as info:
        whatsapp().publish(message(TEXT, media=(make_media("photo.jpg", url_base=None),)), job)
    assert_private(info.value)


# --- interrupted after every step, then resumed with the same job --------------------------------


class Crash(Exception):
    """The process dying: nothing in the adapter may catch it."""


class FakeCloudAPI:
    """A stand-in for the messages endpoint that counts what it accepted, per recipient."""

    def __init__(self, rsps: responses.RequestsMock, fail_at: int | None, how: str | None) -> None:
        self.accepted: Counter[str] = Counter()
        self.step = 0
        self.fail_at, self.how = fail_at, how
        rsps.add_callback(responses.POST, f"{GRAPH}/messages", callback=self.send)

    def send(self, request):
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        payload = json.loads(request.body)
        number = payload.pop("to")
        assert payload == TEXT_PAYLOAD

        def process():
            self.accepted[number] += 1
            return 200, {}, json.dumps(accepted(number))

        self.step += 1
        if self.step == self.fail_at:
            if self.how == "refused":
                return refused()
            if self.how == "server-error":
                return 500, {}, json.dumps(UNKNOWN_ERROR)
            process()  # "lost-answer": WhatsApp accepted it, the answer never arrived
            return reset_mid_answer()
        return process()


def settle(adapter: WhatsAppAdapter, job: MemoryJob, errors: list[BaseException]):
    """What the dispatcher does: retry on Transient, reconcile with lookup on MaybeSent or a crash."""
    for attempt in range(1, 10):
        job.attempt = attempt
        try:
            return adapter.publish(message(TEXT), job)
        except (MaybeSent, Crash) as exc:
            errors.append(exc)
            found = adapter.lookup(message(TEXT), job)
            if found is not None:
                return found
        except Transient as exc:
            errors.append(exc)
    raise AssertionError("never settled")


INTERRUPTIONS = [(step, how) for step in (1, 2, 3) for how in ("refused", "server-error", "lost-answer")]


@pytest.mark.parametrize(("step", "how"), INTERRUPTIONS, ids=[f"send{s}-{h}" for s, h in INTERRUPTIONS])
def test_a_broadcast_interrupted_at_any_send_reaches_each_recipient_at_most_once(whatsapp, step, how):
    job = MemoryJob(key="k-broadcast")
    errors: list[BaseException] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeCloudAPI(rsps, fail_at=step, how=how)
        receipt = settle(whatsapp(), job, errors)

    assert errors
    for error in errors:
        assert_private(error)
    assert fake.accepted == Counter({A: 1, B: 1, C: 1})
    interrupted = (A, B, C)[step - 1]
    if how == "lost-answer":
        assert job.saved["unknown"] == [interrupted]  # it did arrive, but we could not know
        assert "1 unknown" in receipt.platform_id
    else:
        assert job.saved["unknown"] == [] and "unknown" not in receipt.platform_id


@pytest.mark.parametrize("crash_at_save", range(1, 7))
def test_a_crash_right_after_any_checkpoint_never_sends_to_anyone_twice(whatsapp, crash_at_save):
    saves = [0]

    def die_after_commit(_state) -> None:
        saves[0] += 1
        if saves[0] == crash_at_save:
            raise Crash("killed right after the checkpoint was committed")

    job = MemoryJob(key="k-crash", on_save=die_after_commit)
    errors: list[BaseException] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeCloudAPI(rsps, fail_at=None, how=None)
        settle(whatsapp(), job, errors)

    assert [type(e) for e in errors] == [Crash]
    assert all(count == 1 for count in fake.accepted.values())
    # Saves alternate "about to send X" / "X accepted". A crash after the first kind leaves X
    # unknown (never sent: a miss is better than a duplicate); after the second, nobody is lost.
    missed = {A, B, C} - set(fake.accepted)
    if crash_at_save % 2 == 1:
        assert missed == {(A, B, C)[crash_at_save // 2]}
        assert job.saved["unknown"] == sorted(missed)
    else:
        assert missed == set() and job.saved["unknown"] == []


def test_a_long_broadcast_renews_its_lease_as_it_goes(whatsapp, tmp_path):
    numbers = [f"+6281300000{n:03d}" for n in range(12)]
    write_recipients(tmp_path, *numbers)
    adapter = whatsapp()
    now = [0.0]

    def tick() -> float:
        now[0] += 3.0  # every send seems to take three seconds
        return now[0]

    adapter.monotonic = tick
    beats: list[int] = []
    job = MemoryJob(key="k-long")
    job.heartbeat = lambda: beats.append(1)  # type: ignore[method-assign]
    with responses.RequestsMock() as rsps:
        rsps.add_callback(
            responses.POST,
            f"{GRAPH}/messages",
            callback=lambda request: (200, {}, json.dumps(accepted(json.loads(request.body)["to"]))),
        )
        adapter.publish(message(TEXT), job)
    assert 3 <= len(beats) <= 6


# --- recipients file, masking, whoami ------------------------------------------------------------


def test_the_recipients_file_allows_comments_blank_lines_separators_and_drops_duplicates(tmp_path):
    path = write_recipients(tmp_path, "# daftar", "", "+62 812-3456-7801", "+62 (812) 3456.7802  # Budi", A, "  ")
    assert read_recipients(path) == [A, B]


@pytest.mark.parametrize("bad", ["081234567801", "+0812345678", "+62 812 3456 78x1", "+1234"])
def test_an_invalid_number_is_a_configuration_error_naming_the_line_with_the_number_masked(make_adapter, tmp_path, bad):
    path = write_recipients(tmp_path, A, "# komentar", bad)
    with pytest.raises(ConfigError) as info:
        make_adapter(WhatsAppAdapter, phone_number_id=PHONE_ID, token=TOKEN, recipients=str(path))
    assert "line 3" in str(info.value)
    assert bad not in str(info.value)


def test_a_missing_recipients_file_is_a_configuration_error(make_adapter, tmp_path):
    with pytest.raises(ConfigError, match="recipients"):
        make_adapter(WhatsAppAdapter, phone_number_id=PHONE_ID, token=TOKEN, recipients=str(tmp_path / "nope.txt"))


def test_an_empty_recipients_list_rejects_the_post_without_any_request(whatsapp, job, recipients):
    recipients.write_text("# nobody yet\n")
    with responses.RequestsMock() as rsps:
        with pytest.raises(Rejected, match="no numbers"):
            whatsapp().publish(message(TEXT), job)
        assert not rsps.calls


def test_phone_numbers_are_masked_to_their_last_three_digits():
    assert mask(A) == "+**********801"
    assert scrub(f"Recipient {A} and 62812345678 02 refused") == "Recipient +**********801 and **********802 refused"
    assert scrub("(#131026) Message Undeliverable.") == "(#131026) Message Undeliverable."


@responses.activate(assert_all_requests_are_fired=True)
def test_whoami_names_the_business_number(whatsapp):
    responses.get(
        GRAPH,
        json={"display_phone_number": "+62 711 555 0100", "verified_name": "Pemkot Palembang", "id": PHONE_ID},
        match=[
            matchers.query_param_matcher({"fields": "display_phone_number,verified_name"}),
            matchers.header_matcher(AUTH),
        ],
    )
    assert whatsapp().whoami() == "WhatsApp +62 711 555 0100 (Pemkot Palembang)"


@responses.activate(assert_all_requests_are_fired=True)
def test_whoami_with_an_expired_token_pauses_the_account(whatsapp):
    responses.get(GRAPH, status=401, json=EXPIRED_TOKEN)
    with pytest.raises(AuthExpired) as info:
        whatsapp().whoami()
    assert TOKEN not in str(info.value)


# --- offline checks and settings -----------------------------------------------------------------


def test_check_accepts_text_and_an_image(whatsapp, make_media):
    adapter = whatsapp()
    assert adapter.check(message(TEXT)) == []
    assert adapter.check(message(TEXT, media=(make_media("photo.jpg"),))) == []


@pytest.mark.parametrize(
    ("case", "build", "field", "template"),
    [
        ("text-too-long", lambda m, d: message("a" * 4097), "text", None),
        ("caption-too-long", lambda m, d: message("a" * 1025, media=(m("photo.jpg"),)), "text", None),
        ("two-images", lambda m, d: message(TEXT, media=(m("photo.jpg"), m("second.jpg"))), "media", None),
        ("a-gif", lambda m, d: message(TEXT, media=(gif(m, d),)), "media[0]", None),
        ("image-over-5-mb", lambda m, d: message(TEXT, media=(big_jpeg(m, d),)), "media[0]", None),
        ("video-over-16-mb", lambda m, d: message(TEXT, media=(big_mp4(m, d),)), "media[0]", None),
        ("nothing-to-send", lambda m, d: message(""), "text", None),
        ("template-text-too-long", lambda m, d: message("a" * 1025), "text", TEMPLATE),
        ("template-text-empty", lambda m, d: message("", media=(m("photo.jpg"),)), "text", TEMPLATE),
        ("template-header-without-media", lambda m, d: message(TEXT), "media", {**TEMPLATE, "media": True}),
    ],
)
def test_check_reports_what_whatsapp_would_refuse(whatsapp, make_media, media_dir, case, build, field, template):
    adapter = whatsapp(template=template) if template else whatsapp()
    problems = adapter.check(build(make_media, media_dir))
    assert (field, "error") in [(p.field, p.severity) for p in problems], problems


def gif(make_media, media_dir):
    media_files.write(media_dir, "anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    return make_media("anim.gif")


def big_jpeg(make_media, media_dir):
    media_files.write(media_dir, "big.jpg", media_files.jpeg_bytes(pad_to=5 * 1024 * 1024 + 1))
    return make_media("big.jpg")


def big_mp4(make_media, media_dir):
    media_files.write(media_dir, "big.mp4", media_files.mp4_bytes(16 * 1024 * 1024 + 1))
    return make_media("big.mp4")


def test_check_warns_when_a_template_changes_or_drops_part_of_the_post(whatsapp, make_media):
    problems = whatsapp(template=TEMPLATE).check(message(f"{TEXT}\nBaris dua", media=(make_media("photo.jpg"),)))
    assert {(p.field, p.severity) for p in problems} == {("text", "warning"), ("media", "warning")}


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ("siar_broadcast:id", "template"),
        ({"name": "siar_broadcast"}, "template.language"),
        ({"name": "Siar Broadcast", "language": "id"}, "template.name"),
        ({**TEMPLATE, "header": "image"}, "template.header"),
    ],
)
def test_a_malformed_template_setting_is_a_configuration_error(whatsapp, template, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        whatsapp(template=template)


def test_an_account_without_a_template_gets_a_warning_about_the_24_hour_window(recipients):
    problems = WhatsAppAdapter.account_problems(
        {"phone_number_id": PHONE_ID, "token": TOKEN, "recipients": str(recipients)}
    )
    assert [(p.field, p.severity) for p in problems] == [("template", "warning")]
