"""The dispatcher's session prepares requests, and merges the environment's settings into them,
exactly as requests' own Session would."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from publisher.dispatch import _ENVIRON_PROXIES, _NETRC_AUTH, _PREPARED_URLS, CountingSession

CASES = [
    requests.Request("POST", "https://api.example.org/v1/posts?x=1", json={"text": "Selamat pagi", "n": 1},
                     headers={"Authorization": "Bearer abc", "User-Agent": None}),
    requests.Request("post", "https://api.example.org/upload", data={"a": "1", "b": ["2", "3"]},
                     params={"q": "banjir", "page": 2}),
    requests.Request("PUT", "https://api.example.org/media/1", data=b"\x00\x01binary",
                     headers={"Content-Type": "application/octet-stream"}, auth=("user", "pass")),
    requests.Request("GET", "https://api.example.org/me", cookies={"session": "s1"}),  # requests' own path
]


def _view(prepared: requests.PreparedRequest) -> tuple:
    return (prepared.method, prepared.url, dict(prepared.headers), prepared.body, prepared.hooks)


@pytest.mark.parametrize("request_", CASES, ids=["json-headers", "form-params", "bytes-auth", "cookies"])
def test_prepared_as_requests_prepares_it(request_: requests.Request, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("NETRC", str(tmp_path / "absent-netrc"))
    _NETRC_AUTH.clear()
    ours = CountingSession()
    theirs = requests.Session()
    theirs.headers.update(ours.headers)
    assert _view(ours.prepare_request(request_)) == _view(theirs.prepare_request(request_))
    assert _view(ours.prepare_request(request_)) == _view(theirs.prepare_request(request_))  # URL kept


def test_a_bad_url_fails_every_time_not_only_the_first() -> None:
    _PREPARED_URLS.clear()
    session = CountingSession()
    for _ in range(2):
        with pytest.raises(requests.exceptions.MissingSchema):
            session.prepare_request(requests.Request("POST", "api.example.org/v1/posts", json={}))
    assert _PREPARED_URLS == {}


def test_a_url_with_an_idn_a_space_and_non_ascii_is_prepared_as_requests_does_it_from_the_cache_too() -> None:
    _PREPARED_URLS.clear()
    request_ = requests.Request("POST", "https://kabar.bücher.example/api/kabar dinas?x=ä", json={"a": 1})
    theirs = requests.Session().prepare_request(request_).url
    session = CountingSession()
    assert [session.prepare_request(request_).url for _ in range(2)] == [theirs, theirs]
    assert list(_PREPARED_URLS.values()) == [theirs]


def test_netrc_credentials_are_still_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine hooks.example.org login siar password rahasia-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    _NETRC_AUTH.clear()
    request = requests.Request("POST", "https://hooks.example.org/in", json={"a": 1})
    ours = CountingSession().prepare_request(request)
    assert ours.headers["Authorization"] == requests.Session().prepare_request(request).headers["Authorization"]
    assert ours.headers["Authorization"].startswith("Basic ")
    _NETRC_AUTH.clear()


@pytest.mark.parametrize("env, request_proxies, session_proxies", [
    ({}, {}, {}),
    ({"HTTPS_PROXY": "http://proxy.example:3128"}, {}, {}),
    ({"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "api.example.org"}, {}, {}),
    ({"HTTPS_PROXY": "http://proxy.example:3128"}, {"https": "http://other.example:8080"},
     {"https": "http://s:1", "http": "http://s:1"}),
    ({}, {"https": None}, {"https": "http://session.example:3128", "http": "http://s:1"}),
], ids=["none", "from-env", "no-proxy-host", "request-wins", "none-removes"])
def test_environment_settings_are_merged_as_requests_merges_them(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], request_proxies: dict[str, str | None],
        session_proxies: dict[str, str]) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _ENVIRON_PROXIES.clear()
    ours, theirs = CountingSession(), requests.Session()
    ours.proxies.update(session_proxies)
    theirs.proxies.update(session_proxies)
    url = "https://api.example.org/v1/posts"
    for _ in range(2):  # the second from the per-host cache
        got = ours.merge_environment_settings(url, dict(request_proxies), None, None, None)
        want = theirs.merge_environment_settings(url, dict(request_proxies), None, None, None)
        assert {**got, "proxies": dict(got["proxies"])} == {**want, "proxies": dict(want["proxies"])}
    _ENVIRON_PROXIES.clear()
