"""Settings: `siar.toml` and the `.env` beside it, validated with every problem reported at once.

The shape is checked by plain pydantic models, accounts by their adapter's own key lists, then
the rules that tie fields together; each problem names the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from adapters import registry
from publisher.durations import format_duration, parse_duration
from publisher.problems import (
    ConfigInvalid,
    FileProblem,
    describe,
    field_name,
    nul_paths,
    sort_problems,
    too_deep,
    validation_problems,
)
from publisher.redact import REDACTOR
from publisher.retry import RetryPolicy
from publisher.tomlpos import KeyPath, line_of, parse_error_line, parse_error_message

CONFIG_FILE = "siar.toml"
NESTED_TOO_DEEP = "is nested too deeply: tables or lists more than 32 levels inside one another"
NUL_MESSAGE = "contains a NUL character (\\u0000), which no platform, database or file name accepts"
ENV_FILE = ".env"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DATABASE_SCHEME = re.compile(r"(sqlite|postgresql)(\+\w+)?://")
_SQLITE_URL = re.compile(r"(sqlite(?:\+\w+)?):///(.*)", re.DOTALL)
M = TypeVar("M", bound=BaseModel)
# Keys siar itself puts in an adapter's account mapping; an operator setting them would be
# silently overwritten, so they are refused instead.
_RESERVED_ACCOUNT_KEYS = ("name", "state_dir")


# --- value types -------------------------------------------------------------------------------


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace."""
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[::1": an unclosed IPv6 host
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not re.search(r"\s", value)


# Longer than any schedule needs, and short enough that adding it to a time never overflows.
DURATION_MAX = timedelta(days=36500)
# Room left at the ends of the calendar (year 1, year 9999) for time zones, retries and lateness.
CALENDAR_MARGIN = timedelta(days=2)
# A settings or post file larger than this is not one an operator wrote (nor one to read at once).
FILE_MAX = 10_000_000


def _duration(value: Any) -> timedelta:
    """A duration as operators write them; huge or non-finite ones are their error, not a crash."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a duration like '30s' or '2h', got {value}")
    try:
        delta = parse_duration(value)
    except OverflowError:
        delta = DURATION_MAX * 2
    if delta > DURATION_MAX:
        raise ValueError(f"is too long: at most {DURATION_MAX.days} days")
    return delta


def schedulable(moment: datetime, lateness: timedelta = timedelta(0)) -> bool:
    """Whether a time leaves room in the calendar for the arithmetic scheduling does on it."""
    try:
        moment - CALENDAR_MARGIN
        moment + CALENDAR_MARGIN + lateness
    except OverflowError:
        return False
    return True


def regular_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an operator's file (a FIFO would block, a device never end),
    or None."""
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            return "cannot be read: it is a symbolic link to nothing"
        return "is not a regular file" if path.exists() else None
    size = path.stat().st_size
    if size > FILE_MAX:
        return f"is {size} bytes long; an operator's file may be at most {FILE_MAX // 1_000_000} MB"
    return None


def _positive(delta: timedelta) -> timedelta:
    if delta <= timedelta(0):
        raise ValueError("must be longer than zero")
    return delta


def _listen_address(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as '127.0.0.1:9464', got {value!r}")
    return value


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like 'Asia/Jakarta' or 'Asia/Makassar'"
        ) from None
    return name


def _path_value(value: str) -> str:
    if not fits_file_system(value):
        raise ValueError("has a folder or file name longer than 255 bytes, which no file system takes")
    return value


def fits_file_system(path: str) -> bool:
    """Whether every name in `path` fits the 255 bytes file systems allow."""
    return all(len(part.encode("utf-8", "surrogateescape")) <= 255 for part in Path(path).parts)


def _media_url(value: str) -> str:
    if not is_http_url(value) or not value.endswith("/"):
        raise ValueError(f"expected an http(s) URL ending with '/', got {describe(value)}")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
AtLeastOne = Annotated[StrictInt, Field(ge=1)]


class StrictModel(BaseModel):
    """Operator tables: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _DaemonTable(StrictModel):
    database: StrictStr | None = None
    posts: Annotated[StrictStr, AfterValidator(_path_value)] = "posts"
    media: Annotated[StrictStr, AfterValidator(_path_value)] = "media"
    media_url: Annotated[StrictStr, AfterValidator(_media_url)] | None = None
    state: Annotated[StrictStr, AfterValidator(_path_value)] = "state"
    timezone: Annotated[StrictStr, AfterValidator(_zone)] = "Asia/Jakarta"
    concurrency: Annotated[StrictInt, Field(ge=1, le=1000)] = 16
    max_lateness: PositiveDuration = timedelta(hours=1)
    sync_every: PositiveDuration = timedelta(seconds=10)
    lease: PositiveDuration = timedelta(minutes=2)
    http_timeout: PositiveDuration = timedelta(seconds=30)
    shutdown_grace: Duration = timedelta(seconds=30)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    metrics: Annotated[StrictStr, AfterValidator(_listen_address)] | None = None
    require_approval: bool = False


class _RetryTable(StrictModel):
    attempts: Annotated[StrictInt, Field(ge=1, le=100)] = 8
    first_delay: PositiveDuration = timedelta(seconds=30)
    max_delay: PositiveDuration = timedelta(minutes=10)


class _BlackoutTable(StrictModel):
    start: datetime
    end: datetime
    reason: StrictStr
    accounts: list[StrictStr] = []
    action: Literal["hold", "cancel"] = "hold"


class _TeamTable(StrictModel):
    folder: StrictStr
    accounts: list[StrictStr]


class _SettingsFile(StrictModel):
    # Each table is validated on its own below, so that one broken table does not keep the
    # rules of the others from running. Account keys depend on the platform: each account
    # table is checked against its adapter's key lists.
    daemon: dict[str, Any] = {}
    retry: dict[str, Any] = {}
    accounts: dict[str, dict[str, Any]] = {}
    blackout: list[dict[str, Any]] = []
    teams: dict[str, dict[str, Any]] = {}


# --- the result --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Blackout:
    """A window (an election's quiet period, a day of mourning) when nothing goes out."""

    start: datetime  # UTC
    end: datetime  # UTC
    reason: str
    accounts: frozenset[str] = frozenset()  # empty: every account
    action: str = "hold"  # or "cancel"

    def covers(self, account: str, when: datetime) -> bool:
        return self.start <= when < self.end and (not self.accounts or account in self.accounts)


@dataclass(frozen=True, kw_only=True)
class Team:
    """A regional team: post files under `folder` may only target `accounts`."""

    name: str
    folder: Path
    accounts: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class AccountSettings:
    """One `[accounts.NAME]` table, resolved; `values` is what the adapter receives."""

    name: str
    platform: str
    values: dict[str, Any]  # secrets included; without platform, min_interval, max_per_day
    secret_keys: frozenset[str]
    min_interval: timedelta | None
    max_per_day: int | None
    line: int | None

    def adapter_config(self, state_dir: Path, timeout: float) -> dict[str, Any]:
        """The mapping an adapter is built with: the account's values, its name, its private
        state folder, and the daemon's HTTP timeout unless the account sets its own."""
        config = dict(self.values)
        config["name"] = self.name
        config["state_dir"] = str(state_dir / "accounts" / self.name)
        config.setdefault("timeout", timeout)
        return config

    def public(self) -> dict[str, Any]:
        """The values with every secret shown as `***`, for listings and logs."""
        return {key: "***" if key in self.secret_keys else value for key, value in self.values.items()}


@dataclass(frozen=True, kw_only=True)
class Settings:
    config_dir: Path
    config_file: Path
    database: str
    posts_dir: Path
    media_dir: Path
    media_url: str | None
    state_dir: Path
    timezone: ZoneInfo
    concurrency: int
    max_lateness: timedelta
    sync_every: timedelta
    lease: timedelta
    http_timeout: timedelta
    shutdown_grace: timedelta
    log_level: str
    metrics: str | None = None  # HOST:PORT for the Prometheus endpoint; off when None
    require_approval: bool = False
    blackouts: tuple[Blackout, ...] = ()
    teams: dict[str, Team] = field(default_factory=dict)
    retry: RetryPolicy
    accounts: dict[str, AccountSettings]
    warnings: tuple[FileProblem, ...] = ()  # worth telling, not worth refusing


# --- finding and loading -----------------------------------------------------------------------


def find_config_dir(cli_value: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """`--config`, else `$SIAR_CONFIG`, else `./config` when it exists, else `/etc/siar`."""
    if cli_value:
        return Path(cli_value)
    if environ.get("SIAR_CONFIG"):
        return Path(environ["SIAR_CONFIG"])
    if Path("config").is_dir():
        return Path("config")
    return Path("/etc/siar")


def load_settings(config_dir: Path, environ: MutableMapping[str, str] | None = None) -> Settings:
    """Read `siar.toml` (and `.env` into `environ`); raise ConfigInvalid listing every problem."""
    environ = os.environ if environ is None else environ
    config_dir = Path(os.path.abspath(config_dir))
    config_file = config_dir / CONFIG_FILE
    loader = _Loader(config_dir, config_file, environ)
    settings = loader.load()
    problems = sort_problems(loader.problems)
    if settings is None or any(problem.is_error for problem in problems):
        raise ConfigInvalid(problems)
    return settings


class _Loader:
    """One loading of the settings; collects problems instead of stopping at the first."""

    def __init__(self, config_dir: Path, config_file: Path, environ: MutableMapping[str, str]) -> None:
        self.config_dir = config_dir
        self.config_file = config_file
        self.environ = environ
        self.source = ""
        self.problems: list[FileProblem] = []
        self.from_env: set[KeyPath] = set()  # values that came from ${VAR}: secret by nature
        self.unresolved: set[KeyPath] = set()  # already reported; later checks stay quiet there

    def problem(self, path: KeyPath, message: str, severity: str = "error") -> None:
        self.problems.append(
            FileProblem(
                self.config_file, line_of(self.source, path), field_name(path) or None, message, severity
            )
        )

    def load(self) -> Settings | None:
        self._load_env_file()
        try:
            unusable = regular_file_problem(self.config_file)
            if unusable is not None:
                self.problems.append(FileProblem(self.config_file, None, None, unusable))
                return None
            self.source = self.config_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.problems.append(
                FileProblem(self.config_file, None, None, "not found (`siar init DIR` writes a working one)")
            )
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(FileProblem(self.config_file, None, None, f"cannot be read: {exc}"))
            return None
        try:
            raw = tomllib.loads(self.source)
        except tomllib.TOMLDecodeError as exc:
            line = parse_error_line(exc, self.source)
            self.problems.append(FileProblem(self.config_file, line, None, parse_error_message(exc)))
            return None
        except RecursionError:
            self.problems.append(FileProblem(self.config_file, None, None, NESTED_TOO_DEEP))
            return None
        deep = too_deep(raw)
        if deep is not None:
            self.problem(deep, NESTED_TOO_DEEP)
            return None
        nul = list(nul_paths(raw))
        for where in nul:
            self.problem(where, NUL_MESSAGE)
        if nul:
            return None

        data = self._resolve(raw, ())
        top = self._validate(_SettingsFile, data, ())
        daemon = self._validate(_DaemonTable, data.get("daemon", {}), ("daemon",))
        retry = self._validate(_RetryTable, data.get("retry", {}), ("retry",))
        accounts = self._accounts(data.get("accounts"))
        if daemon is not None:
            self._daemon_rules(daemon)
        if retry is not None:
            self._retry_rules(retry)
        if top is None or daemon is None or retry is None:
            return None
        blackouts = self._blackouts(data.get("blackout"), ZoneInfo(daemon.timezone), accounts)
        teams = self._teams(data.get("teams"), accounts)
        settings = self._settings(daemon, retry, accounts)
        return dataclasses.replace(settings, blackouts=blackouts, teams=teams)

    def _blackouts(self, tables: Any, tz: ZoneInfo, accounts: dict[str, Any]) -> tuple[Blackout, ...]:
        found: list[Blackout] = []
        for index, table in enumerate(tables if isinstance(tables, list) else []):
            here: KeyPath = ("blackout", index)
            checked = self._validate(_BlackoutTable, table, here)
            if checked is None:
                continue
            # A time written without an offset is in the daemon's zone, as in post files.
            start, end = (t if t.tzinfo else t.replace(tzinfo=tz) for t in (checked.start, checked.end))
            if not schedulable(start):
                self.problem(here + ("start",), "is too close to the ends of the calendar (year 1, year 9999)")
                continue
            if not schedulable(end, DURATION_MAX):
                self.problem(here + ("end",), "is too far in the future (a blackout ends before year 9899)")
                continue
            if end <= start:
                self.problem(here + ("end",), "must be after start")
                continue
            for position, name in enumerate(checked.accounts):
                if name not in accounts:
                    self.problem(here + ("accounts", position), f"unknown account {name!r}")
            found.append(Blackout(start=start.astimezone(timezone.utc), end=end.astimezone(timezone.utc),
                                  reason=checked.reason, accounts=frozenset(checked.accounts),
                                  action=checked.action))
        return tuple(found)

    def _teams(self, tables: Any, accounts: dict[str, Any]) -> dict[str, Team]:
        teams: dict[str, Team] = {}
        for name, table in (tables.items() if isinstance(tables, dict) else []):
            here: KeyPath = ("teams", name)
            checked = self._validate(_TeamTable, table, here)
            if checked is None:
                continue
            for position, account in enumerate(checked.accounts):
                if account not in accounts:
                    self.problem(here + ("accounts", position), f"unknown account {account!r}")
            teams[name] = Team(name=name, folder=self._path(checked.folder), accounts=frozenset(checked.accounts))
        return teams

    def _validate(self, model: type[M], data: Any, prefix: KeyPath) -> M | None:
        if not isinstance(data, dict) and prefix:
            return None  # not a table: reported by the check of the whole file
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for problem in validation_problems(self.config_file, self.source, exc, model, prefix):
                # A missing ${VAR} was reported already; its unresolved text would only add noise.
                if not any(problem.field == field_name(path) for path in self.unresolved):
                    self.problems.append(problem)
            return None

    def _load_env_file(self) -> None:
        env_file = self.config_dir / ENV_FILE
        if not env_file.is_file():
            return
        try:
            mode = env_file.stat().st_mode
            with env_file.open(encoding="utf-8") as handle:
                values = dotenv_values(stream=handle)
        except PermissionError:
            # Under systemd the file is root's and read by the service manager (EnvironmentFile=),
            # which has already put its variables in our environment: nothing is missing.
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(FileProblem(env_file, None, None, f"cannot be read: {exc}"))
            return
        if mode & stat.S_IROTH:
            self.problems.append(
                FileProblem(env_file, None, None, "holds secrets but every user can read it: chmod 600", "warning")
            )
        for key, value in values.items():
            # What the service manager or the shell already set wins over the file.
            if value is not None and key not in self.environ:
                self.environ[key] = value

    def _resolve(self, value: Any, path: KeyPath) -> Any:
        """Replace every `${VAR}` in string values from the environment."""
        if isinstance(value, dict):
            return {key: self._resolve(item, path + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [self._resolve(item, path + (index,)) for index, item in enumerate(value)]
        if not isinstance(value, str) or not _ENV_REFERENCE.search(value):
            return value
        self.from_env.add(path)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            resolved = self.environ.get(name)
            if resolved is None:
                resolved = self._credential(name)
            if resolved is None:
                self.unresolved.add(path)
                self.problem(path, f"${{{name}}} is not set in the environment, in {ENV_FILE} "
                                   "or as a systemd credential")
                return match.group()
            REDACTOR.add(resolved)
            return resolved

        return _ENV_REFERENCE.sub(substitute, value)

    def _credential(self, name: str) -> str | None:
        """systemd's LoadCredential=NAME:… puts the secret in $CREDENTIALS_DIRECTORY/NAME."""
        folder = self.environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            return None
        try:
            return (Path(folder) / name).read_text().rstrip("\n")
        except OSError:
            return None

    def _accounts(self, tables: Any) -> dict[str, AccountSettings]:
        accounts: dict[str, AccountSettings] = {}
        if not isinstance(tables, dict):
            return accounts  # absent, or reported by the shape check
        for name, table in tables.items():
            if isinstance(table, dict):
                account = self._account(name, table)
                if account is not None:
                    accounts[name] = account
        return accounts

    def _account(self, name: str, table: dict[str, Any]) -> AccountSettings | None:
        here: KeyPath = ("accounts", name)
        before = len(self.problems)
        if not _ACCOUNT_NAME.fullmatch(name):
            self.problem(here, "account names use only letters, digits, '-' and '_'")
        platform = table.get("platform")
        if not isinstance(platform, str) or not platform:
            known = ", ".join(registry.known())
            if platform is None:
                self.problem(here + ("platform",), f"is required (known platforms: {known})")
            else:
                self.problem(here + ("platform",), f"expected a platform name (known platforms: {known})")
            return None
        try:
            cls = registry.adapter_class(platform)
        except registry.UnknownPlatform as exc:
            self.problem(here + ("platform",), str(exc))
            return None
        except Exception as exc:  # a broken adapter package must not hide the other problems
            self.problem(here + ("platform",), f"the adapter for {platform!r} cannot be loaded: {exc}")
            return None

        for key in _RESERVED_ACCOUNT_KEYS:
            if key in table:
                self.problem(here + (key,), "is set by siar itself; remove it")
        checked = {key: value for key, value in table.items() if key not in _RESERVED_ACCOUNT_KEYS}
        for found in cls.account_problems(checked):
            if here + (found.field,) not in self.unresolved:
                self.problem(here + (found.field,), found.message, found.severity)

        values = {k: v for k, v in checked.items() if k not in ("platform", "min_interval", "max_per_day")}
        for key in cls.paths:  # files an account names (WhatsApp recipients) live beside siar.toml
            if isinstance(values.get(key), str) and values[key]:
                values[key] = str(self._path(values[key]))
        min_interval = self._account_duration(here, table, "min_interval")
        timeout = self._account_duration(here, table, "timeout")
        if timeout is not None:
            values["timeout"] = timeout.total_seconds()  # adapters take seconds
        max_per_day = table.get("max_per_day")
        if max_per_day is not None and (
            isinstance(max_per_day, bool) or not isinstance(max_per_day, int) or max_per_day < 1
        ):
            self.problem(here + ("max_per_day",), f"expected a whole number of 1 or more, got {describe(max_per_day)}")
        api_base = table.get("api_base")
        if api_base is not None and not (isinstance(api_base, str) and is_http_url(api_base)):
            self.problem(here + ("api_base",), f"expected an http(s) URL, got {describe(api_base)}")

        env_keys = {str(path[2]) for path in self.from_env if len(path) >= 3 and path[:2] == here}
        for key in cls.secrets:
            if table.get(key) not in (None, "") and key not in env_keys:
                self.problem(
                    here + (key,),
                    f"is written in {CONFIG_FILE}; put secrets in {ENV_FILE} as ${{VAR}}",
                    "warning",
                )
        if any(problem.is_error for problem in self.problems[before:]):
            return None
        return AccountSettings(
            name=name,
            platform=platform,
            values=values,
            secret_keys=frozenset(cls.secrets) | env_keys,
            min_interval=min_interval,
            max_per_day=max_per_day,
            line=line_of(self.source, here),
        )

    def _account_duration(self, here: KeyPath, table: dict[str, Any], key: str) -> timedelta | None:
        if table.get(key) is None:
            return None
        try:
            return _positive(_duration(table[key]))
        except ValueError as exc:
            self.problem(here + (key,), str(exc))
            return None

    def _daemon_rules(self, daemon: _DaemonTable) -> None:
        if daemon.lease <= 2 * daemon.http_timeout:
            self.problem(
                ("daemon", "lease"),
                f"is {format_duration(daemon.lease)}; it must be longer than twice http_timeout "
                f"({format_duration(daemon.http_timeout)}) so that a claim outlives a request that times out",
            )

    def _retry_rules(self, retry: _RetryTable) -> None:
        if retry.max_delay < retry.first_delay:
            self.problem(
                ("retry", "max_delay"),
                f"is {format_duration(retry.max_delay)}; it must not be shorter than "
                f"first_delay ({format_duration(retry.first_delay)})",
            )

    def _settings(
        self, daemon: _DaemonTable, retry: _RetryTable, accounts: dict[str, AccountSettings]
    ) -> Settings:
        state_dir = self._path(self.environ.get("SIAR_STATE") or daemon.state)
        database = self._database(daemon.database, state_dir)
        return Settings(
            config_dir=self.config_dir,
            config_file=self.config_file,
            database=database,
            posts_dir=self._path(daemon.posts),
            media_dir=self._path(daemon.media),
            media_url=daemon.media_url,
            state_dir=state_dir,
            timezone=ZoneInfo(daemon.timezone),
            concurrency=daemon.concurrency,
            max_lateness=daemon.max_lateness,
            sync_every=daemon.sync_every,
            lease=daemon.lease,
            http_timeout=daemon.http_timeout,
            shutdown_grace=daemon.shutdown_grace,
            log_level=daemon.log_level,
            metrics=daemon.metrics,
            require_approval=daemon.require_approval,
            retry=RetryPolicy(
                attempts=retry.attempts, first_delay=retry.first_delay, max_delay=retry.max_delay
            ),
            accounts=accounts,
            warnings=tuple(sort_problems(p for p in self.problems if not p.is_error)),
        )

    def _path(self, value: str) -> Path:
        """Relative paths in the settings are relative to the configuration folder."""
        return Path(os.path.abspath(self.config_dir / value))

    def _database(self, configured: str | None, state_dir: Path) -> str:
        from_environment = self.environ.get("SIAR_DATABASE")
        url = from_environment or configured or f"sqlite:///{state_dir / 'siar.db'}"
        if not _DATABASE_SCHEME.match(url):
            message = "expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            if from_environment:
                self.problems.append(FileProblem(self.config_file, None, "$SIAR_DATABASE", message))
            else:
                self.problem(("daemon", "database"), message)
            return url
        try:
            password = urlsplit(url).password
        except ValueError as exc:  # "postgresql://[::1": an unclosed IPv6 host
            self.problem(("daemon", "database"), f"is not a valid URL: {exc}")
            return url
        if password:
            REDACTOR.add(password)
        match = _SQLITE_URL.fullmatch(url)
        if match is None:
            return url
        scheme, rest = match.groups()
        file_part, separator, query = rest.partition("?")
        if not fits_file_system(file_part):
            self.problem(("daemon", "database"), "has a folder or file name longer than 255 bytes, which no file "
                                                 "system takes")
            return url
        if file_part in ("", ":memory:") or file_part.startswith(("/", "file:")):
            return url
        return f"{scheme}:///{self._path(file_part)}{separator}{query}"
