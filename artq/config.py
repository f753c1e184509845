"""Settings: one YAML file (``artq.yml``) plus environment overrides for every secret and URL.

Lookup order for the file: ``--config`` / ``ARTQ_CONFIG``, then ``./artq.yml``; with neither,
the embedded defaults apply (SQLite under ``ARTQ_HOME``, the built-in simulator, in-process
execution). Environment variables win over the file:

========================  ===============================
``ARTQ_DATABASE_URL``     ``database_url``
``ARTQ_BROKER_URL``       ``celery.broker_url``
``ARTQ_RESULT_BACKEND``   ``celery.result_backend``
``ARTQ_SOURCE_URL``       ``source.url``
``ARTQ_SOURCE_CLIENT_ID`` ``source.client_id``
``ARTQ_SOURCE_CLIENT_SECRET`` ``source.client_secret``
``ARTQ_SOURCE_USERNAME``  ``source.username``
``ARTQ_SOURCE_PASSWORD``  ``source.password``
========================  ===============================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml

from artq.catalog import DEFAULT_TIERS
from artq.errors import ConfigError
from artq.redaction import http_url_problem, install_log_redaction, mask_url

DEFAULT_CLIENT_ID = "artq@customer1"
DEFAULT_CLIENT_SECRET = "artq-local-secret"  # the simulator's local default; never a real secret


def artq_home() -> Path:
    """Where the embedded default keeps its database and models (``ARTQ_HOME``)."""
    return Path(os.environ.get("ARTQ_HOME", Path.home() / ".local" / "share" / "artq")).expanduser()


@dataclass
class ApplicationSettings:
    name: str
    tiers: list[str] = field(default_factory=lambda: list(DEFAULT_TIERS))
    metrics: list[str] | None = None  # catalog keys to fetch (art included); None: the whole catalog


# Plausible hourly values per metric: ART in ms (0..10 minutes), the others per minute. A value
# outside its bounds (or not finite) becomes a gap with the reason, never an observation.
DEFAULT_PLAUSIBLE: dict[str, tuple[float, float | None]] = {
    "art": (0.0, 600_000.0), "cpm": (0.0, 1e9), "epm": (0.0, 1e9), "exceptions": (0.0, 1e9),
    "slow": (0.0, 1e9), "very_slow": (0.0, 1e9),
}


def plausible_bounds(overrides: dict | None) -> dict[str, tuple[float, float | None]]:
    """``source.plausible`` (``{metric: {min: .., max: ..}}``, each key optional) over the defaults."""
    bounds = dict(DEFAULT_PLAUSIBLE)
    if overrides is None:
        return bounds
    if not isinstance(overrides, dict):
        raise ConfigError(f"`source.plausible` must map metrics to {{min, max}}. Got {overrides!r}.")
    for metric, limits in overrides.items():
        key = f"source.plausible.{metric}"
        if metric not in bounds:
            raise ConfigError(f"unknown metric `{key}`; known: {', '.join(DEFAULT_PLAUSIBLE)}.")
        if not isinstance(limits, dict) or set(limits) - {"min", "max"}:
            raise ConfigError(f"`{key}` must be a mapping with `min` and/or `max`. Got {limits!r}.")
        low, high = limits.get("min", bounds[metric][0]), limits.get("max", bounds[metric][1])
        for name, v in (("min", low), ("max", high)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ConfigError(f"`{key}.{name}` must be a finite number. Got {v!r}.")
        if high is not None and high <= low:
            raise ConfigError(f"`{key}.max` must be above its `min`. Got min {low}, max {high}.")
        bounds[metric] = (float(low), None if high is None else float(high))
    return bounds


@dataclass
class SourceSettings:
    url: str | None = None  # the controller, e.g. https://acme.saas.appdynamics.com (ARTQ_SOURCE_URL)
    simulate: bool = False  # no controller: serve the built-in simulator on loopback (ARTQ_SOURCE_SIMULATE)
    client_id: str | None = DEFAULT_CLIENT_ID
    client_secret: str | None = DEFAULT_CLIENT_SECRET
    username: str | None = None  # HTTP Basic alternative: "user@account"
    password: str | None = None
    timeout_s: float = 30.0
    retries: int = 3
    verify_tls: bool = True
    chunk_hours: int = 168  # backfill window per request: > 49 h gets hourly buckets
    ca_bundle: str | None = None  # PEM file of the CA(s) that signed the controller's certificate
    allow_insecure_http: bool = False  # credentials over http:// only when set (ARTQ_SOURCE_ALLOW_INSECURE_HTTP)
    plausible: dict | None = None  # {metric: {min, max}} over DEFAULT_PLAUSIBLE (see plausible_bounds)


@dataclass
class SimulatorSettings:
    seed: int = 42


@dataclass
class CelerySettings:
    broker_url: str | None = None  # None: run the canvas in-process
    result_backend: str | None = None


@dataclass
class ForecastSettings:
    horizons: int = 6
    training_days: int = 90
    min_training_hours: int = 24 * 14
    interval_coverage: float = 0.8
    tune_trials: int = 0  # 0: the default hyper-parameters; >0: time-ordered tuning budget
    seed: int = 0


ALERT_BANDS = ("p60", "p75", "p90", "p99")
ALERT_BAND_WINDOWS = ("7d", "30d", "hour_of_week")
ALERT_COMPARE = ("forecast", "upper")


@dataclass
class ApplicationAlertSettings:
    """Per-application override of ``alerts``: a key left out (None) inherits the global value."""

    application: str
    enabled: bool | None = None
    threshold_ms: float | None = None
    band: str | None = None
    band_window: str | None = None
    band_factor: float | None = None
    floor_ms: float | None = None
    compare: str | None = None
    clear_ratio: float | None = None
    clear_cycles: int | None = None

    def __post_init__(self) -> None:
        if not self.application.strip():
            raise ConfigError("`alerts.applications[].application` must name a configured application.")
        _check_alert_fields(self, f"alerts.applications[{self.application!r}]")


@dataclass
class AlertSettings:
    """Early-warning alerts on the forecasts (evaluated by the refresh step, see artq/dashboard/alerts.py).

    The threshold is ``threshold_ms`` when set (absolute), else ``band_factor`` x the ``band``
    percentile of actual ART over ``band_window`` (relative), never below ``floor_ms``. ``compare``
    picks what is compared: the point forecast or its interval's upper bound. Hysteresis: an open
    alert resolves only after ``clear_cycles`` consecutive cycles with every forecast and the
    latest actual below ``clear_ratio`` x threshold.
    """

    enabled: bool = True
    threshold_ms: float | None = None
    band: str = "p99"
    band_window: str = "30d"
    band_factor: float = 1.0
    floor_ms: float | None = None
    compare: str = "forecast"
    clear_ratio: float = 0.9
    clear_cycles: int = 2
    webhook_url: str | None = None  # may hold a token: never logged (also ARTQ_ALERTS_WEBHOOK_URL)
    webhook_timeout_s: float = 5.0  # total deadline of one attempt: connect, send, whole answer
    webhook_secret: str | None = None  # signs each POST (X-Artq-Signature); also ARTQ_ALERTS_WEBHOOK_SECRET
    webhook_retries: int = 3  # attempts per refresh, with exponential backoff
    webhook_backoff_s: float = 1.0
    applications: list[ApplicationAlertSettings] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_alert_fields(self, "alerts")
        if self.webhook_url is not None and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError("`alerts.webhook_url` must start with http:// or https://.")
        if self.webhook_timeout_s <= 0:
            raise ConfigError(f"`alerts.webhook_timeout_s` must be positive. Got {self.webhook_timeout_s}.")
        if self.webhook_retries < 1:
            raise ConfigError(f"`alerts.webhook_retries` must be at least 1. Got {self.webhook_retries}.")
        if self.webhook_backoff_s < 0:
            raise ConfigError(f"`alerts.webhook_backoff_s` must not be negative. Got {self.webhook_backoff_s}.")
        names = [a.application for a in self.applications]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"`alerts.applications` repeats {name!r}; give one override per application.")


def _check_alert_fields(obj: Any, where: str) -> None:
    """Shared checks of the global alert settings and the per-application overrides (None: inherited)."""
    if obj.threshold_ms is not None and obj.threshold_ms <= 0:
        raise ConfigError(f"`{where}.threshold_ms` must be a positive number of milliseconds. Got {obj.threshold_ms}.")
    if obj.band is not None and obj.band not in ALERT_BANDS:
        raise ConfigError(f"`{where}.band` must be one of {', '.join(ALERT_BANDS)}. Got {obj.band!r}.")
    if obj.band_window is not None and obj.band_window not in ALERT_BAND_WINDOWS:
        raise ConfigError(
            f"`{where}.band_window` must be one of {', '.join(ALERT_BAND_WINDOWS)}. Got {obj.band_window!r}."
        )
    if obj.band_factor is not None and obj.band_factor <= 0:
        raise ConfigError(f"`{where}.band_factor` must be positive (1.2 = 20 % above the band). Got {obj.band_factor}.")
    if obj.floor_ms is not None and obj.floor_ms < 0:
        raise ConfigError(f"`{where}.floor_ms` must not be negative. Got {obj.floor_ms}.")
    if obj.compare is not None and obj.compare not in ALERT_COMPARE:
        raise ConfigError(
            f"`{where}.compare` must be 'forecast' (the point forecast) or 'upper' (its upper bound). Got {obj.compare!r}."
        )
    if obj.clear_ratio is not None and not 0 < obj.clear_ratio <= 1:
        raise ConfigError(f"`{where}.clear_ratio` must be in (0, 1]. Got {obj.clear_ratio}.")
    if obj.clear_cycles is not None and obj.clear_cycles < 1:
        raise ConfigError(f"`{where}.clear_cycles` must be at least 1. Got {obj.clear_cycles}.")



@dataclass
class OperationsSettings:
    """How the cycle is run and watched in production (see workers/ and artq/pipeline/reconcile.py).

    - ``freshness_minute``: by this minute past the hour every application must have a completed
      cycle for the last complete hour, or a ``freshness`` alert opens.
    - ``stuck_after_s``: a run still ``running`` this long after it started is stuck (a chord
      that lost its callback, a worker that died): the reconciler completes or re-runs it.
    - ``max_attempts``: re-runs the reconciler may start; after that it closes the run with
      whatever forecasts exist and the reason.
    - ``cycle_lock_s``: lifetime of the per-(application, origin) lock that turns a second
      trigger of an in-flight cycle away (released when the cycle finishes).
    - ``visibility_timeout_s`` and ``lease_renew_s``: a worker renews the broker lease of every
      message it holds each ``lease_renew_s``; a message whose lease is older than
      ``visibility_timeout_s`` (its worker died) goes back to its queue. 0 turns renewal off;
      the visibility timeout must then exceed the longest task (training).
    - ``catch_up_missed``: after an outage, also forecast the origins that were missed (at most
      ``catch_up_max_hours``), not only the latest.
    - ``fleet_batch_size``: applications per batched cycle when a fleet is dispatched;
      ``fleet_fetch_threads``: concurrent controller requests of one batch's fetch.
    - ``retrain_budget_per_hour``: at most this many retrains are queued per hour (weekly slots
      and drifted applications; the rest wait an hour), so the train queue never outgrows its
      workers.
    - ``model_cache_size``: model bundles a worker process keeps loaded (least recently used
      dropped first); ~0.3 MB each, so the default caps a worker near 3.5 GB. Lower it on small
      machines: a batch whose bundles were dropped loads them again (~4 ms CPU each).
    """

    freshness_minute: int = 20
    stuck_after_s: int = 900
    max_attempts: int = 3
    reconcile_every_s: int = 300
    cycle_lock_s: int = 900
    visibility_timeout_s: int = 20
    lease_renew_s: int = 4
    catch_up_missed: bool = False
    catch_up_max_hours: int = 24
    fleet_batch_size: int = 100
    fleet_fetch_threads: int = 8
    retrain_budget_per_hour: int = 60  # retrains beat queues per hour at most (artq/pipeline/retraining.py)
    model_cache_size: int = 12_000  # bundles a worker keeps loaded: a 10,000-application fleet warm
    retention_days: int = 400  # observations/forecasts older than this are dropped (0: keep forever); storage/retention.py

    def __post_init__(self) -> None:
        if not 0 <= self.freshness_minute <= 59:
            raise ConfigError(f"`operations.freshness_minute` must be in 0..59. Got {self.freshness_minute}.")
        for name in ("stuck_after_s", "reconcile_every_s", "cycle_lock_s", "visibility_timeout_s", "max_attempts",
                     "catch_up_max_hours", "fleet_batch_size", "fleet_fetch_threads", "retrain_budget_per_hour",
                     "model_cache_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`operations.{name}` must be at least 1. Got {getattr(self, name)}.")
        if isinstance(self.retention_days, bool) or not isinstance(self.retention_days, int) or not (
                self.retention_days == 0 or 30 <= self.retention_days <= 36600):
            raise ConfigError("`operations.retention_days` must be 0 (keep forever) or a whole number of days in "
                              f"30..36600. Got {self.retention_days!r}.")
        if self.lease_renew_s < 0:
            raise ConfigError(f"`operations.lease_renew_s` must not be negative. Got {self.lease_renew_s}.")
        if self.lease_renew_s and self.visibility_timeout_s < 3 * self.lease_renew_s:
            raise ConfigError(
                "`operations.visibility_timeout_s` must be at least 3 x `operations.lease_renew_s`, or a live "
                f"worker's task could be delivered twice. Got {self.visibility_timeout_s} and {self.lease_renew_s}."
            )


@dataclass
class DashboardAuthSettings:
    """Optional login for ``artq dashboard`` / ``artq serve``: HTTP Basic, a bearer token, or both.

    Unset (the default), the dashboard is open to whoever reaches its port: keep it on loopback
    or behind a proxy that authenticates. ``/healthz`` stays open for load balancers.
    """

    username: str | None = None  # also ARTQ_DASHBOARD_USERNAME
    password: str | None = None  # never logged (also ARTQ_DASHBOARD_PASSWORD)
    token: str | None = None  # bearer token for API clients, never logged (also ARTQ_DASHBOARD_TOKEN)


@dataclass
class DashboardSettings:
    """The dashboard's HTTP server and ``artq serve``'s in-process hourly cycle."""

    auth: DashboardAuthSettings = field(default_factory=DashboardAuthSettings)
    read_timeout_s: float = 10.0  # a client must send its whole request within this (slow or half-open clients)
    max_connections: int = 64  # connections served at once; more are answered 503 at once
    cycle_minute: int = 5  # `artq serve` runs the hourly cycle this many minutes past each hour

    def validate(self) -> None:
        a = self.auth
        if bool(a.username) != bool(a.password):
            raise ConfigError("`dashboard.auth` needs both username and password (or ARTQ_DASHBOARD_USERNAME and "
                              "ARTQ_DASHBOARD_PASSWORD) for a login; set both or neither.")
        if a.token is not None and len(a.token) < 16:
            raise ConfigError("`dashboard.auth.token` must be at least 16 characters (e.g. `openssl rand -hex 24`).")
        if not 0 < self.read_timeout_s <= 600:
            raise ConfigError(f"`dashboard.read_timeout_s` must be in (0, 600] seconds. Got {self.read_timeout_s}.")
        if not 1 <= self.max_connections <= 10_000:
            raise ConfigError(f"`dashboard.max_connections` must be in 1..10000. Got {self.max_connections}.")
        if not 0 <= self.cycle_minute <= 59:
            raise ConfigError(f"`dashboard.cycle_minute` must be in 0..59. Got {self.cycle_minute}.")


@dataclass
class Settings:
    database_url: str = ""
    models_dir: str = ""
    applications: list[ApplicationSettings] = field(
        default_factory=lambda: [ApplicationSettings(name="ABP")]
    )
    source: SourceSettings = field(default_factory=SourceSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    celery: CelerySettings = field(default_factory=CelerySettings)
    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    operations: OperationsSettings = field(default_factory=OperationsSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    backfill_days: int = 30  # history `artq demo` and a first fetch pull
    config_path: str | None = None  # where these settings came from (None: defaults)

    def application(self, name: str) -> ApplicationSettings:
        for app in self.applications:
            if app.name == name:
                return app
        known = ", ".join(a.name for a in self.applications)
        raise ConfigError(
            f"unknown application {name!r}: `applications` in the config lists {known}. "
            "Add it there or pick one of those."
        )

    def require_source(self) -> None:
        """Fail in one line when no metric source is configured (never forecast a silent simulator)."""
        if not self.source.url and not self.source.simulate:
            raise ConfigError(
                "no controller configured: set `source.url` (or ARTQ_SOURCE_URL) to your AppDynamics "
                "controller, or `source.simulate: true` (ARTQ_SOURCE_SIMULATE=1) to use the built-in simulator."
            )

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the cycle runs in-process."""
        return not self.celery.broker_url


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "ARTQ_DATABASE_URL": ("database_url",),
    "ARTQ_MODELS_DIR": ("models_dir",),
    "ARTQ_BROKER_URL": ("celery", "broker_url"),
    "ARTQ_RESULT_BACKEND": ("celery", "result_backend"),
    "ARTQ_SOURCE_URL": ("source", "url"),
    "ARTQ_SOURCE_CLIENT_ID": ("source", "client_id"),
    "ARTQ_SOURCE_CLIENT_SECRET": ("source", "client_secret"),
    "ARTQ_SOURCE_USERNAME": ("source", "username"),
    "ARTQ_SOURCE_PASSWORD": ("source", "password"),
    "ARTQ_ALERTS_WEBHOOK_URL": ("alerts", "webhook_url"),
    "ARTQ_SOURCE_ALLOW_INSECURE_HTTP": ("source", "allow_insecure_http"),
    "ARTQ_ALERTS_WEBHOOK_SECRET": ("alerts", "webhook_secret"),
    "ARTQ_SOURCE_SIMULATE": ("source", "simulate"),
    "ARTQ_DASHBOARD_USERNAME": ("dashboard", "auth", "username"),
    "ARTQ_DASHBOARD_PASSWORD": ("dashboard", "auth", "password"),
    "ARTQ_DASHBOARD_TOKEN": ("dashboard", "auth", "token"),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_value(target: Any, key: str, var: str, value: str) -> Any:
    """An environment override as its setting's type (booleans are written 1/0, true/false, ...)."""
    if isinstance(getattr(target, key), bool):
        if value.strip().lower() not in _TRUE + _FALSE:
            raise ConfigError(f"`{var}` must be 1 or 0 (true/false). Got {value!r}.")
        return value.strip().lower() in _TRUE
    return value


def load_settings(path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the config file (if any), apply environment overrides, fill embedded defaults."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("ARTQ_CONFIG") or ("artq.yml" if Path("artq.yml").is_file() else None)
    raw: dict[str, Any] = {}
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist. Create it or unset ARTQ_CONFIG.")
        try:
            raw = yaml.safe_load(_read_utf8(p)) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}.") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of settings at the top level.")
    settings = _build(Settings, raw, "")
    for var, keys in ENV_OVERRIDES.items():
        if env.get(var):
            target = settings
            for k in keys[:-1]:
                target = getattr(target, k)
            setattr(target, keys[-1], _env_value(target, keys[-1], var, env[var]))
    settings.config_path = str(path) if path else None
    home = artq_home() if "ARTQ_HOME" not in env else Path(env["ARTQ_HOME"]).expanduser()
    if not settings.database_url:
        settings.database_url = f"sqlite:///{home / 'artq.db'}"
    if not settings.models_dir:
        settings.models_dir = str(home / "models")
    _validate(settings)
    settings.dashboard.validate()
    _validate_security(settings, env)
    # from here on every log record of this process (CLI, worker, beat, flower) hides these values
    install_log_redaction(secret_values(settings, env))
    return settings


# (key, lowest, highest): numbers that feed timeouts, retries and time spans. The upper limits
# keep a typo (a few zeros too many) from overflowing a date or stalling a worker.
NUMBER_RANGES: tuple[tuple[str, float, float], ...] = (
    ("source.timeout_s", 0.001, 3600), ("source.retries", 0, 20), ("source.chunk_hours", 1, 24 * 366),
    ("backfill_days", 1, 3660), ("forecast.training_days", 1, 3660), ("forecast.min_training_hours", 1, 24 * 3660),
    ("forecast.tune_trials", 0, 100_000), ("alerts.webhook_timeout_s", 0.001, 300), ("alerts.webhook_retries", 1, 20),
    ("alerts.webhook_backoff_s", 0, 3600),
)


def _validate_numbers(s: Settings) -> None:
    for key, low, high in NUMBER_RANGES:
        value: Any = s
        for part in key.split("."):
            value = getattr(value, part)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
            rule = f"in {low:g}..{high:g}" if low else f"between 0 and {high:g}"
            raise ConfigError(f"`{key}` must be a finite number {rule}. Got {value!r}.")


def _validate_security(s: Settings, env: dict[str, str]) -> None:
    """Checks of values that may come from the environment (set after the dataclasses checked theirs)."""
    _validate_numbers(s)
    for key, url in (("celery.broker_url", s.celery.broker_url), ("celery.result_backend", s.celery.result_backend)):
        if url and not _looks_like_url(url):  # kombu would read a one-slash typo as a module name
            raise ConfigError(
                f"`{key}` must be a URL such as redis://:PASSWORD@HOST:6379/0. Got {mask_url(url)!r}."
            )
    if s.source.url:
        try:
            parts = urlsplit(s.source.url)
            _ = parts.port  # raises ValueError for a port that is not a number in 0..65535
        except ValueError:
            raise ConfigError(
                f"`source.url` must have a numeric port in 1..65535, e.g. https://acme.saas.appdynamics.com:8181. "
                f"Got {mask_url(s.source.url)!r}."
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"`source.url` must be an http(s) URL such as https://acme.saas.appdynamics.com. Got {mask_url(s.source.url)!r}."
            )
    if s.alerts.webhook_url:
        where = "ARTQ_ALERTS_WEBHOOK_URL" if env.get("ARTQ_ALERTS_WEBHOOK_URL") else "alerts.webhook_url"
        problem = http_url_problem(s.alerts.webhook_url, where)
        if problem:
            raise ConfigError(problem)
    plausible_bounds(s.source.plausible)
    if s.source.ca_bundle and not Path(s.source.ca_bundle).expanduser().is_file():
        raise ConfigError(f"`source.ca_bundle` {s.source.ca_bundle!r} is not a file. Give the path of a PEM CA bundle.")


def _looks_like_url(url: str) -> bool:
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not (scheme[0].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)):
        return False
    try:
        _ = urlsplit(url).port  # raises ValueError for a port that is not a number
    except ValueError:
        return False
    return True


def secret_values(settings: Settings, env: dict[str, str] | None = None) -> list[str]:
    """The secret values these settings hold (URLs count by their password and token parts)."""
    from urllib.parse import parse_qsl, urlsplit

    env = dict(os.environ if env is None else env)
    s = settings
    values = [s.database_url, s.celery.broker_url, s.celery.result_backend, s.source.url, s.source.password,
              getattr(s.alerts, "webhook_secret", None), s.dashboard.auth.password, s.dashboard.auth.token]
    if s.source.client_secret != DEFAULT_CLIENT_SECRET:
        values.append(s.source.client_secret)
    flower = env.get("FLOWER_BASIC_AUTH", "")
    values += [pair.partition(":")[2] for pair in flower.split(",") if ":" in pair]
    hook = s.alerts.webhook_url or env.get("ARTQ_ALERTS_WEBHOOK_URL")
    if hook:  # a webhook's token hides in its path (Slack) or query
        parts = urlsplit(hook)
        values.append(hook if "@" in parts.netloc else None)
        values += [seg for seg in parts.path.split("/") if len(seg) >= 16]
        values += [v for k, v in parse_qsl(parts.query)
                   if len(v) >= 16 or any(w in k.lower() for w in ("token", "secret", "key", "sig", "auth", "pass"))]
    return [v for v in values if v]


def _read_utf8(p: Path) -> str:
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}). "
            "Save it as UTF-8."
        ) from None


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"`{prefix.rstrip('.') or 'config'}` must be a mapping. Got {raw!r}.")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls) if f.name != "config_path"}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key `{prefix}{unknown[0]}` in the config; known keys here: {', '.join(sorted(names))}."
        )
    kwargs = {k: _coerce(hints[k], v, f"{prefix}{k}") for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        missing = str(exc).split("argument")[-1].strip(": '")
        raise ConfigError(f"missing key `{prefix}{missing}` in the config.") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    args = [a for a in get_args(hint) if a is not type(None)]
    if value is None and type(None) in get_args(hint):
        return None
    if is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"`{key}` must be a list. Got {value!r}.")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    target = args[0] if args else hint
    if target is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{key}` must be true or false. Got {value!r}.")
        return value
    if target in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (target is int and not isinstance(value, int)):
            raise ConfigError(f"`{key}` must be a {'whole number' if target is int else 'number'}. Got {value!r}.")
        if not math.isfinite(value):  # YAML's .nan and .inf are floats
            raise ConfigError(f"`{key}` must be a finite number. Got {value!r}.")
        return target(value)
    if target is str:
        if not isinstance(value, str):
            raise ConfigError(f"`{key}` must be a string. Got {value!r}.")
        return value
    return value


def _validate(s: Settings) -> None:
    if not s.applications:
        raise ConfigError("`applications` must list at least one application.")
    seen: set[str] = set()
    for i, app in enumerate(s.applications):
        if not app.name.strip():
            raise ConfigError(f"`applications[{i}].name` must not be empty.")
        if app.name in seen:
            raise ConfigError(f"`applications[{i}].name` repeats {app.name!r}; names must be unique.")
        seen.add(app.name)
        if not app.tiers:
            raise ConfigError(f"`applications[{i}].tiers` must list the sub-servers (at least one).")
        if app.metrics is not None:
            from artq.catalog import METRICS_BY_KEY, TARGET_METRIC

            wrong = [m for m in app.metrics if m not in METRICS_BY_KEY]
            if wrong or TARGET_METRIC not in app.metrics:
                raise ConfigError(f"`applications[{i}].metrics` must name metrics of {', '.join(METRICS_BY_KEY)} and "
                                  f"include {TARGET_METRIC!r}. Got {app.metrics!r}.")
    if s.forecast.horizons != 6:
        raise ConfigError(f"`forecast.horizons` must be 6 (one model per hour ahead). Got {s.forecast.horizons}.")
    if not 0.5 <= s.forecast.interval_coverage < 1:
        raise ConfigError(
            f"`forecast.interval_coverage` must be in [0.5, 1). Got {s.forecast.interval_coverage}."
        )
    if s.source.timeout_s <= 0:
        raise ConfigError(f"`source.timeout_s` must be positive. Got {s.source.timeout_s}.")
    if s.source.chunk_hours < 1:
        raise ConfigError(f"`source.chunk_hours` must be at least 1. Got {s.source.chunk_hours}.")
    if s.backfill_days < 1:
        raise ConfigError(f"`backfill_days` must be at least 1. Got {s.backfill_days}.")
    if s.operations.retention_days and s.operations.retention_days < s.forecast.training_days + 14:
        raise ConfigError(f"`operations.retention_days` ({s.operations.retention_days}) must exceed "
                          f"`forecast.training_days` ({s.forecast.training_days}) by 14 days or more, or retraining "
                          "would lose its history. Raise it, or set 0 to keep everything.")
    if s.database_url.split(":", 1)[0] not in {"sqlite", "mysql+mysqldb", "mysql", "mariadb+mysqldb", "postgresql", "postgresql+psycopg"}:
        raise ConfigError(
            f"`database_url` must be a SQLAlchemy URL such as sqlite:///artq.db or "
            f"mysql+mysqldb://user:pass@host/artq. Got scheme {s.database_url.split(':', 1)[0]!r}."
        )
    has_token = bool(s.source.client_id and s.source.client_secret)
    has_basic = bool(s.source.username and s.source.password)
    if s.source.url and not (has_token or has_basic):
        raise ConfigError(
            "`source` needs credentials: client_id and client_secret (OAuth), or username and password "
            "(Basic). Set them in the config or ARTQ_SOURCE_CLIENT_ID / ARTQ_SOURCE_CLIENT_SECRET."
        )
