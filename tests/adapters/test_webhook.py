"""The webhook adapter: a signed JSON POST, and every kind of answer mapped to a typed error."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import responses
from responses import matchers

from adapters.base import AuthExpired, RateLimited, Receipt, Rejected, Transient
from adapters.webhook import WebhookAdapter
from tests.adapters.conftest import message

URL = "https://hooks.example.go.id/siar"
SECRET = "hook-secret-0123456789"


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def adapter(make_adapter):
    return make_adapter(WebhookAdapter, url=URL, secret=SECRET)


def test_a_post_is_sent_as_signed_json_with_the_idempotency_key(adapter, job, make_media):
    msg = message(text="Selamat pagi", link="https://example.go.id/a", media=(make_media("photo.jpg", alt="Foto"),))
    expected = {
        "event": "publish", "key": job.key, "attempt": 1, "account": "test-webhook", "post_id": "hari-guru-2026",
        "text": "Selamat pagi", "link": "https://example.go.id/a", "title": None,
        "media": [{"file": "photo.jpg", "alt": "Foto", "url": "https://cdn.example.go.id/siar/photo.jpg",
                   "type": "image/jpeg"}],
    }
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(URL, json={"id": "hook-1", "url": "https://portal.example.go.id/p/1"}, status=201,
                  match=[matchers.json_params_matcher(expected),
                         matchers.header_matcher({"Idempotency-Key": job.key, "X-Siar-Event": "publish",
                                                  "Content-Type": "application/json"})])
        receipt = adapter.publish(msg, job)
        sent = mock.calls[0].request
    assert receipt == Receipt("hook-1", "https://portal.example.go.id/p/1")
    assert sent.headers["X-Siar-Signature"] == signature(sent.body)


def test_an_answer_without_a_body_gives_a_receipt_named_by_the_key(adapter, job):
    with responses.RequestsMock() as mock:
        mock.post(URL, status=204)
        assert adapter.publish(message(), job) == Receipt(job.key, None)


@pytest.mark.parametrize(("status", "headers", "expected", "wait"), [
    (429, {"Retry-After": "7"}, RateLimited, 7.0),
    (429, {}, RateLimited, None),
    (500, {}, Transient, None),
    (502, {}, Transient, None),
    (503, {"Retry-After": "30"}, Transient, 30.0),
    (504, {}, Transient, None),
    (408, {}, Transient, None),
    (401, {}, AuthExpired, None),
    (403, {}, AuthExpired, None),
    (400, {}, Rejected, None),
    (404, {}, Rejected, None),
    (413, {}, Rejected, None),
    (422, {}, Rejected, None),
])
def test_each_http_answer_maps_to_its_typed_error(adapter, job, status, headers, expected, wait):
    with responses.RequestsMock() as mock:
        mock.post(URL, status=status, headers=headers, json={"error": "nope"})
        with pytest.raises(expected) as info:
            adapter.publish(message(), job)
    assert type(info.value) is expected
    assert info.value.http_status == status
    if wait is not None:
        assert info.value.retry_after == wait
    assert SECRET not in str(info.value)


def test_retry_after_as_an_http_date_is_understood(adapter, job):
    with responses.RequestsMock() as mock:
        mock.post(URL, status=429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
        with pytest.raises(RateLimited) as info:
            adapter.publish(message(), job)
    assert info.value.retry_after > 3600


def test_whoami_pings_the_url_with_a_signed_ping_event(adapter):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(URL, status=200, match=[matchers.header_matcher({"X-Siar-Event": "ping"}),
                                          matchers.json_params_matcher({"event": "ping", "account": "test-webhook"})])
        assert adapter.whoami() == "webhook hooks.example.go.id (HTTP 200)"
        request = mock.calls[0].request
    assert request.headers["X-Siar-Signature"] == signature(request.body)


def test_api_base_redirects_the_request_to_a_test_server(make_adapter, job):
    adapter = make_adapter(WebhookAdapter, url=URL, api_base="http://127.0.0.1:9999")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post("http://127.0.0.1:9999/siar", json={})
        adapter.publish(message(), job)
        request = mock.calls[0].request
    assert "X-Siar-Signature" not in request.headers  # no secret configured: unsigned


def test_missing_url_is_an_account_problem():
    problems = WebhookAdapter.account_problems({"platform": "webhook", "colour": "red"})
    assert [(p.field, p.message.split(" (")[0]) for p in problems] == [
        ("url", "is required for platform 'webhook'"),
        ("colour", "unknown key for platform 'webhook'"),
    ]


def test_the_body_is_exactly_what_is_signed(adapter, job):
    with responses.RequestsMock() as mock:
        mock.post(URL, json={})
        adapter.publish(message(text="Ünïcödé ✓"), job)
        request = mock.calls[0].request
    assert json.loads(request.body)["text"] == "Ünïcödé ✓"
    assert request.headers["X-Siar-Signature"] == signature(request.body)
