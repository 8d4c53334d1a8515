"""Loading siar.toml and .env: defaults, ${VAR} secrets, and every problem named with its line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from adapters import registry
from publisher.problems import ConfigInvalid
from publisher.redact import REDACTOR
from publisher.settings import find_config_dir, load_settings
from tests.unit.data import HOOK_SECRET, SETTINGS, make_config

KNOWN_PLATFORMS = ", ".join(registry.known())
DAEMON_KEYS = (
    "concurrency, database, http_timeout, lease, log_level, max_lateness, media, media_url, metrics, "
    "posts, require_approval, shutdown_grace, state, sync_every, timezone"
)


def problems_of(config: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        load_settings(config, {} if environ is None else environ)
    return [str(problem) for problem in caught.value.problems]


# --- the good configuration ----------------------------------------------------------------


def test_a_minimal_configuration_gets_every_default(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings='[accounts.latihan]\nplatform = "outbox"\n')
    settings = load_settings(config, {})
    assert settings.config_dir == config
    assert settings.config_file == config / "siar.toml"
    assert settings.database == f"sqlite:///{config}/state/siar.db"
    assert settings.database.startswith("sqlite:////")
    assert settings.posts_dir == config / "posts"
    assert settings.media_dir == config / "media"
    assert settings.media_url is None
    assert settings.state_dir == config / "state"
    assert settings.timezone.key == "Asia/Jakarta"
    assert settings.concurrency == 16
    assert settings.max_lateness == timedelta(hours=1)
    assert settings.sync_every == timedelta(seconds=10)
    assert settings.lease == timedelta(minutes=2)
    assert settings.http_timeout == timedelta(seconds=30)
    assert settings.shutdown_grace == timedelta(seconds=30)
    assert settings.log_level == "info"
    assert (settings.retry.attempts, settings.retry.first_delay, settings.retry.max_delay) == (
        8,
        timedelta(seconds=30),
        timedelta(minutes=10),
    )
    assert settings.warnings == ()
    latihan = settings.accounts["latihan"]
    assert (latihan.platform, latihan.values, latihan.min_interval, latihan.max_per_day) == ("outbox", {}, None, None)
    assert latihan.line == 1


def test_every_daemon_and_retry_key_is_read(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        settings="""\
[daemon]
database = "postgresql+psycopg://siar@db.example.go.id/siar"
posts = "/srv/siar/posts"
media = "../shared-media"
media_url = "https://cdn.example.go.id/siar/"
state = "var"
timezone = "Asia/Makassar"
concurrency = 4
max_lateness = "30m"
sync_every = 5
lease = "5m"
http_timeout = "1m"
shutdown_grace = "0s"
log_level = "debug"

[retry]
attempts = 3
first_delay = "10s"
max_delay = "1h"
""",
    )
    settings = load_settings(config, {})
    assert settings.database == "postgresql+psycopg://siar@db.example.go.id/siar"
    assert settings.posts_dir == Path("/srv/siar/posts")
    assert settings.media_dir == tmp_path / "shared-media"
    assert settings.media_url == "https://cdn.example.go.id/siar/"
    assert settings.state_dir == config / "var"
    assert settings.timezone.key == "Asia/Makassar"
    assert settings.concurrency == 4
    assert settings.max_lateness == timedelta(minutes=30)
    assert settings.sync_every == timedelta(seconds=5)
    assert settings.lease == timedelta(minutes=5)
    assert settings.http_timeout == timedelta(minutes=1)
    assert settings.shutdown_grace == timedelta(0)
    assert settings.log_level == "debug"
    assert settings.retry.attempts == 3
    assert settings.retry.first_delay == timedelta(seconds=10)
    assert settings.retry.max_delay == timedelta(hours=1)
    assert settings.accounts == {}


def test_a_relative_sqlite_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings='[daemon]\ndatabase = "sqlite:///data/siar.db?timeout=5"\n')
    assert load_settings(config, {}).database == f"sqlite:///{config}/data/siar.db?timeout=5"


def test_siar_database_and_siar_state_in_the_environment_override_the_file(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings='[daemon]\ndatabase = "sqlite:///a.db"\nstate = "here"\n')
    settings = load_settings(config, {"SIAR_DATABASE": "sqlite:////var/lib/siar/siar.db", "SIAR_STATE": "/var/lib/siar"})
    assert settings.database == "sqlite:////var/lib/siar/siar.db"
    assert settings.state_dir == Path("/var/lib/siar")


def test_siar_state_moves_the_default_database_with_it(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings="")
    assert load_settings(config, {"SIAR_STATE": "/var/lib/siar"}).database == "sqlite:////var/lib/siar/siar.db"


def test_a_database_password_is_registered_with_the_redactor(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings="")
    load_settings(config, {"SIAR_DATABASE": "postgresql+psycopg://siar:pw-db-91x2@db/siar"})
    assert REDACTOR("connecting with pw-db-91x2") == "connecting with ***"


# --- .env and ${VAR} ---------------------------------------------------------------------------


def test_dot_env_is_loaded_into_the_environment_without_overriding_what_is_set(tmp_path: Path) -> None:
    config = make_config(tmp_path, env="HOOK_SECRET=from-the-file-123\nOTHER=from-file\n")
    environ = {"HOOK_SECRET": HOOK_SECRET}
    settings = load_settings(config, environ)
    assert environ == {"HOOK_SECRET": HOOK_SECRET, "OTHER": "from-file"}
    assert settings.accounts["hook"].values["secret"] == HOOK_SECRET


def test_var_references_are_resolved_anywhere_in_a_string_and_registered_with_the_redactor(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        settings=SETTINGS.replace(
            'url = "https://hooks.example.go.id/siar"', 'url = "https://hooks.example.go.id/${HOOK_PATH}/in"'
        ),
        env=f"HOOK_SECRET={HOOK_SECRET}\nHOOK_PATH=path-token-5521\n",
    )
    hook = load_settings(config, {}).accounts["hook"]
    assert hook.values["url"] == "https://hooks.example.go.id/path-token-5521/in"
    assert REDACTOR(f"sent with {HOOK_SECRET} to path-token-5521") == "sent with *** to ***"
    assert hook.secret_keys == frozenset({"secret", "url"})  # a value from ${VAR} is kept out of sight
    assert hook.public()["url"] == "***"


def test_account_values_keep_secrets_for_the_adapter_and_hide_them_in_public(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        settings=SETTINGS
        + 'min_interval = "5m"\nmax_per_day = 20\ntimeout = "45s"\napi_base = "http://127.0.0.1:8080"\n',
    )
    hook = load_settings(config, {}).accounts["hook"]
    assert hook.values == {
        "url": "https://hooks.example.go.id/siar",
        "secret": HOOK_SECRET,
        "timeout": 45.0,
        "api_base": "http://127.0.0.1:8080",
    }
    assert (hook.min_interval, hook.max_per_day, hook.line) == (timedelta(minutes=5), 20, 8)
    assert hook.secret_keys == frozenset({"secret"})
    assert hook.public()["secret"] == "***"
    assert hook.public()["url"] == "https://hooks.example.go.id/siar"


def test_adapter_config_adds_name_state_folder_and_the_daemon_timeout_unless_the_account_has_one(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, settings=SETTINGS.replace('platform = "outbox"', 'platform = "outbox"\ntimeout = 5'))
    settings = load_settings(config, {})
    state = tmp_path / "state"
    assert settings.accounts["hook"].adapter_config(state, 30.0) == {
        "url": "https://hooks.example.go.id/siar",
        "secret": HOOK_SECRET,
        "name": "hook",
        "state_dir": str(state / "accounts" / "hook"),
        "timeout": 30.0,
    }
    assert settings.accounts["latihan"].adapter_config(state, 30.0)["timeout"] == 5.0


def test_a_secret_written_literally_is_a_warning_not_an_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings=SETTINGS.replace('"${HOOK_SECRET}"', '"written-in-the-file"'))
    settings = load_settings(config, {})
    assert [str(w) for w in settings.warnings] == [
        f"{config}/siar.toml:11: warning: accounts.hook.secret: is written in siar.toml; put secrets in .env as ${{VAR}}"
    ]
    assert settings.accounts["hook"].secret_keys == frozenset({"secret"})


def test_a_dot_env_that_everyone_can_read_is_a_warning(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (config / ".env").chmod(0o644)
    settings = load_settings(config, {})
    assert [str(w) for w in settings.warnings] == [
        f"{config}/.env: warning: holds secrets but every user can read it: chmod 600"
    ]


# --- broken files ------------------------------------------------------------------------------

BROKEN = [
    pytest.param(
        '[daemon]\ntimezone = "Asia/Jakarta\n[accounts.latihan]\n',
        ["{file}:2: error: Illegal character '\\n'"],
        id="bad TOML is one problem at the parse error's line",
    ),
    pytest.param(
        '[daemon]\nconcurrency = 4\ntimezon = "Asia/Jakarta"\n\n[retrys]\nattempts = 2\n',
        [
            f"{{file}}:3: error: daemon.timezon: unknown key; did you mean 'timezone'? (known: {DAEMON_KEYS})",
            "{file}:5: error: retrys: unknown key; did you mean 'retry'? (known: accounts, blackout, daemon, retry, teams)",
        ],
        id="unknown keys are named with the known ones",
    ),
    pytest.param(
        '[accounts.pemkot-fb]\nplatform = "facebok"\npage_id = "1"\n',
        [f"{{file}}:2: error: accounts.pemkot-fb.platform: unknown platform 'facebok'; known platforms: {KNOWN_PLATFORMS}"],
        id="an unknown platform lists the known ones",
    ),
    pytest.param(
        '[daemon]\ntimezone = "Asia/Jakrta"\n',
        [
            "{file}:2: error: daemon.timezone: unknown time zone 'Asia/Jakrta'; "
            "use an IANA name like 'Asia/Jakarta' or 'Asia/Makassar'"
        ],
        id="an invalid time zone",
    ),
    pytest.param(
        '[accounts.hook]\nplatform = "webhook"\nurl = "https://h.example.go.id/${HOOK_PATH}"\nsecret = "${MISSING_SECRET}"\n',
        [
            "{file}:3: error: accounts.hook.url: ${{HOOK_PATH}} is not set in the environment, in .env or as a systemd credential",
            "{file}:4: error: accounts.hook.secret: ${{MISSING_SECRET}} is not set in the environment, in .env or as a systemd credential",
        ],
        id="a missing VAR names the key and the variable",
    ),
    pytest.param(
        '[daemon]\nsync_every = "10 seconds"\nmax_lateness = "0s"\n',
        [
            "{file}:2: error: daemon.sync_every: expected a duration like '30s', '10m', '2h' or '1d', got '10 seconds'",
            "{file}:3: error: daemon.max_lateness: must be longer than zero",
        ],
        id="bad durations",
    ),
    pytest.param(
        '[daemon]\nhttp_timeout = "1m"\nlease = "2m"\n',
        [
            "{file}:3: error: daemon.lease: is 2m; it must be longer than twice http_timeout (1m) "
            "so that a claim outlives a request that times out"
        ],
        id="a lease not longer than twice the HTTP timeout",
    ),
    pytest.param(
        '[daemon]\nhttp_timeout = "90s"\n',
        [
            "{file}:1: error: daemon.lease: is 2m; it must be longer than twice http_timeout (90s) "
            "so that a claim outlives a request that times out"
        ],
        id="the default lease against a long HTTP timeout points at the daemon table",
    ),
    pytest.param(
        '[retry]\nattempts = 0\n',
        [
            "{file}:2: error: retry.attempts: should be greater than or equal to 1, got 0",
        ],
        id="retry attempts below one",
    ),
    pytest.param(
        '[retry]\nfirst_delay = "5m"\nmax_delay = "1m"\n',
        ["{file}:3: error: retry.max_delay: is 1m; it must not be shorter than first_delay (5m)"],
        id="a max_delay shorter than first_delay",
    ),
    pytest.param(
        '[daemon]\nconcurrency = "16"\nlog_level = "verbose"\nmedia_url = "https://cdn.example.go.id/siar"\n',
        [
            '{file}:2: error: daemon.concurrency: expected a whole number, got "16"',
            "{file}:3: error: daemon.log_level: should be 'debug', 'info', 'warning', 'error' or 'critical', "
            'got "verbose"',
            "{file}:4: error: daemon.media_url: expected an http(s) URL ending with '/', "
            'got "https://cdn.example.go.id/siar"',
        ],
        id="wrong types and values in the daemon table",
    ),
    pytest.param(
        '[daemon]\ndatabase = "mysql://db/siar"\n',
        ["{file}:2: error: daemon.database: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"],
        id="an unsupported database",
    ),
    pytest.param(
        """\
[accounts."pemkot fb"]
platform = "outbox"

[accounts.hook]
platform = "webhook"
secret = "${HOOK_SECRET}"
token = "x"
name = "other"
min_interval = "soon"
max_per_day = 0
api_base = "ftp://proxy"
timeout = "forever"

[accounts.noplatform]
url = "https://example.go.id"

[accounts.empty]
""",
        [
            "{file}:1: error: accounts.\"pemkot fb\": account names use only letters, digits, '-' and '_'",
            "{file}:4: error: accounts.hook.url: is required for platform 'webhook'",
            "{file}:7: error: accounts.hook.token: unknown key for platform 'webhook' (known: api_base, "
            "max_per_day, min_interval, platform, secret, state_dir, timeout, url)",
            "{file}:8: error: accounts.hook.name: is set by siar itself; remove it",
            "{file}:9: error: accounts.hook.min_interval: expected a duration like '30s', '10m', '2h' or '1d', got 'soon'",
            "{file}:10: error: accounts.hook.max_per_day: expected a whole number of 1 or more, got 0",
            '{file}:11: error: accounts.hook.api_base: expected an http(s) URL, got "ftp://proxy"',
            "{file}:12: error: accounts.hook.timeout: expected a duration like '30s', '10m', '2h' or '1d', got 'forever'",
            f"{{file}}:14: error: accounts.noplatform.platform: is required (known platforms: {KNOWN_PLATFORMS})",
            f"{{file}}:17: error: accounts.empty.platform: is required (known platforms: {KNOWN_PLATFORMS})",
        ],
        id="every problem of every account at once",
    ),
    pytest.param(
        'daemon = 5\n[accounts]\nlatihan = "outbox"\n',
        [
            "{file}:1: error: daemon: expected a table, got 5",
            '{file}:3: error: accounts.latihan: expected a table, got "outbox"',
        ],
        id="tables written as values",
    ),
]


@pytest.mark.parametrize(("settings", "expected"), BROKEN)
def test_a_broken_settings_file_reports_exactly_its_problems(
    tmp_path: Path, settings: str, expected: list[str]
) -> None:
    config = make_config(tmp_path, settings=settings)
    file = config / "siar.toml"
    assert problems_of(config) == [line.format(file=file) for line in expected]


def test_all_problems_of_the_settings_file_are_reported_at_once(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        settings="""\
[daemon]
timezone = "Mars/Olympus"
lease = "10s"

[retry]
first_delay = "1h"
max_delay = "1m"

[accounts.latihan]
platform = "outbox"
colour = "blue"

[accounts.x]
platform = "twitter"
""",
    )
    file = config / "siar.toml"
    assert problems_of(config) == [
        f"{file}:2: error: daemon.timezone: unknown time zone 'Mars/Olympus'; use an IANA name like 'Asia/Jakarta' or 'Asia/Makassar'",
        f"{file}:7: error: retry.max_delay: is 1m; it must not be shorter than first_delay (1h)",
        f"{file}:11: error: accounts.latihan.colour: unknown key for platform 'outbox' (known: api_base, folder, "
        "max_per_day, min_interval, platform, state_dir, timeout)",
        f"{file}:14: error: accounts.x.platform: unknown platform 'twitter'; known platforms: {KNOWN_PLATFORMS}",
    ]


def test_a_missing_settings_file_says_how_to_make_one(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == [f"{tmp_path}/siar.toml: error: not found (`siar init DIR` writes a working one)"]


def test_a_bad_siar_database_in_the_environment_is_named(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings="")
    assert problems_of(config, {"SIAR_DATABASE": "db.sqlite"}) == [
        f"{config}/siar.toml: error: $SIAR_DATABASE: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    ]


def test_the_good_configuration_beside_the_broken_ones_still_loads(tmp_path: Path) -> None:
    broken = make_config(tmp_path / "broken", settings='[daemon]\ntimezone = "Nowhere/Else"\n')
    good = make_config(tmp_path / "good")
    problems_of(broken)
    assert set(load_settings(good, {}).accounts) == {"latihan", "hook"}


# --- finding the folder ------------------------------------------------------------------------


def test_find_config_dir_prefers_the_option_then_siar_config_then_dot_config_then_etc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_dir("/opt/siar", {"SIAR_CONFIG": "/srv/siar"}) == Path("/opt/siar")
    assert find_config_dir(None, {"SIAR_CONFIG": "/srv/siar"}) == Path("/srv/siar")
    assert find_config_dir(None, {}) == Path("/etc/siar")
    (tmp_path / "config").mkdir()
    assert find_config_dir(None, {}) == Path("config")


def test_an_account_file_path_is_resolved_against_the_config_folder(tmp_path):
    from publisher.settings import load_settings

    (tmp_path / "siar.toml").write_text('[accounts.arsip]\nplatform = "outbox"\nfolder = "kiriman/arsip"\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.accounts["arsip"].values["folder"] == str(tmp_path / "kiriman" / "arsip")


def test_a_variable_missing_from_the_environment_is_read_from_a_systemd_credential(tmp_path):
    from publisher.redact import REDACTOR
    from publisher.settings import load_settings

    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "HOOK_SECRET").write_text("from-a-credential-file\n")
    (tmp_path / "siar.toml").write_text(
        '[accounts.hook]\nplatform = "webhook"\nurl = "https://h.example.go.id"\nsecret = "${HOOK_SECRET}"\n'
    )
    settings = load_settings(tmp_path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.accounts["hook"].values["secret"] == "from-a-credential-file"
    assert REDACTOR("x from-a-credential-file y") == "x *** y"
