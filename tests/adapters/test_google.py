"""Google OAuth refresh: the token endpoint's real answers, the 0600 cache, and secret masking."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import requests
import responses
from responses import matchers

import adapters.base
from adapters.base import AuthExpired, RateLimited, Transient
from adapters.google import GoogleAuth
from tests.adapters.harness import TRANSPORT_CASES

TOKEN_URL = "https://oauth2.googleapis.com/token"
CLIENT_ID = "1234567890-siartest.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-client-s3cr3t-value"
REFRESH_TOKEN = "1//0gRefresh-s3cr3t-token-value"
ACCESS = "ya29.a0AfB_byFirstAccessTokenValue"
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, ACCESS)

REFRESH_FORM = {
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "refresh_token": REFRESH_TOKEN,
    "grant_type": "refresh_token",
}


def token_answer(access: str = ACCESS, expires_in: int = 3599) -> dict:
    """What Google's token endpoint answers to a refresh_token grant."""
    return {
        "access_token": access,
        "expires_in": expires_in,
        "scope": "https://www.googleapis.com/auth/youtube.upload",
        "token_type": "Bearer",
    }


@pytest.fixture
def secrets_seen():
    seen: list[str] = []
    adapters.base.on_secret(seen.append)
    yield seen
    adapters.base._secret_sinks.remove(seen.append)


def make_auth(state_dir: Path | None, refresh_token: str = REFRESH_TOKEN) -> GoogleAuth:
    return GoogleAuth(
        http=requests.Session(),
        token_url=TOKEN_URL,
        timeout=5,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
        state_dir=state_dir,
    )


@responses.activate(assert_all_requests_are_fired=True)
def test_refresh_posts_the_refresh_grant_and_persists_the_token_with_mode_0600(tmp_path, secrets_seen):
    responses.post(TOKEN_URL, json=token_answer(), match=[matchers.urlencoded_params_matcher(REFRESH_FORM)])
    auth = make_auth(tmp_path / "acct")
    auth.clock = lambda: 1_000_000.0

    assert auth.token() == ACCESS

    stored = tmp_path / "acct" / "google-token.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert ACCESS in stored.read_text()
    assert ACCESS in secrets_seen


@responses.activate(assert_all_requests_are_fired=True)
def test_a_cached_token_is_reused_until_shortly_before_it_expires(tmp_path):
    responses.post(TOKEN_URL, json=token_answer(), match=[matchers.urlencoded_params_matcher(REFRESH_FORM)])
    responses.post(
        TOKEN_URL, json=token_answer("ya29.second"), match=[matchers.urlencoded_params_matcher(REFRESH_FORM)]
    )
    now = [1_000_000.0]
    auth = make_auth(tmp_path)
    auth.clock = lambda: now[0]
    assert auth.token() == ACCESS

    # A new instance (a daemon restart) reads the cache instead of spending a refresh.
    again = make_auth(tmp_path)
    again.clock = lambda: now[0] + 3000
    assert again.token() == ACCESS
    assert len(responses.calls) == 1

    again.clock = lambda: now[0] + 3599 - 60  # inside the safety margin: refreshed
    assert again.token() == "ya29.second"
    assert len(responses.calls) == 2


@responses.activate(assert_all_requests_are_fired=True)
def test_a_cached_token_from_other_credentials_is_not_used(tmp_path):
    responses.post(TOKEN_URL, json=token_answer(), match=[matchers.urlencoded_params_matcher(REFRESH_FORM)])
    other_form = {**REFRESH_FORM, "refresh_token": "1//0gAnother-refresh"}
    responses.post(
        TOKEN_URL, json=token_answer("ya29.other"), match=[matchers.urlencoded_params_matcher(other_form)]
    )
    assert make_auth(tmp_path).token() == ACCESS
    assert make_auth(tmp_path, refresh_token="1//0gAnother-refresh").token() == "ya29.other"


@responses.activate(assert_all_requests_are_fired=True)
def test_without_a_state_folder_the_token_is_kept_in_memory(tmp_path):
    responses.post(TOKEN_URL, json=token_answer())
    auth = make_auth(None)
    assert auth.token() == ACCESS
    assert auth.token() == ACCESS
    assert len(responses.calls) == 1
    assert not list(tmp_path.iterdir())


# (case, HTTP status, Google's body, typed error)
TOKEN_ERRORS = [
    (
        "invalid-grant",
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        AuthExpired,
    ),
    (
        "unknown-client",
        401,
        {"error": "invalid_client", "error_description": "The OAuth client was not found."},
        AuthExpired,
    ),
    ("wrong-secret", 401, {"error": "invalid_client", "error_description": "Unauthorized"}, AuthExpired),
    ("unauthorized-client", 400, {"error": "unauthorized_client", "error_description": "Unauthorized"}, AuthExpired),
    ("rate-limited", 429, {"error": "rate_limit_exceeded", "error_description": "Rate limit exceeded"}, RateLimited),
    ("server-error", 500, {"error": "internal_failure", "error_description": "Backend Error"}, Transient),
    ("unavailable", 503, {"error": "temporarily_unavailable"}, Transient),
]


@pytest.mark.parametrize(("case", "status", "body", "expected"), TOKEN_ERRORS, ids=[c[0] for c in TOKEN_ERRORS])
@responses.activate(assert_all_requests_are_fired=True)
def test_token_endpoint_errors_map_to_typed_errors_without_showing_secrets(tmp_path, case, status, body, expected):
    responses.post(TOKEN_URL, status=status, json=body, match=[matchers.urlencoded_params_matcher(REFRESH_FORM)])
    with pytest.raises(expected) as info:
        make_auth(tmp_path).token()
    assert type(info.value) is expected
    assert info.value.http_status == status
    for secret in SECRETS:
        assert secret not in str(info.value)
    if case == "invalid-grant":
        assert "invalid_grant" in str(info.value)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
@responses.activate
def test_token_endpoint_transport_failures_map_to_typed_errors(tmp_path, case, raise_, expected):
    responses.post(TOKEN_URL, body=raise_())
    with pytest.raises(expected) as info:
        make_auth(tmp_path).token()
    assert type(info.value) is expected
    for secret in SECRETS:
        assert secret not in str(info.value)
