"""The AppDynamics Controller REST client: hourly values of the metrics in ``catalog.METRICS``.

Wire format: ``/work/shared/appdynamics-api.md``. Per application and request window, two
wildcard requests cover every series artq reads: ``Overall Application Performance|*``
(application level, the main server) and ``Overall Application Performance|*|*`` (tiers).

- Spans of 49 hours or more go out as ``BETWEEN_TIMES`` chunks of ``chunk_hours`` with
  ``rollup=false``: over 2940 minutes the controller answers in 60-minute buckets, so a week
  of six metrics on eight servers is two small responses. Shorter spans go out as one
  one-hour ``rollup=true`` window per hour (one point per metric), which avoids pulling
  1- or 10-minute buckets. Parsing copes with any resolution either way (``parse.py``).
- Retries with exponential backoff and jitter only for connection errors, timeouts and 5xx;
  a 4xx is a mistake a retry cannot fix, so it raises at once.
- OAuth client credentials (token cached until shortly before it expires, refreshed once on
  a 401), or HTTP Basic when no client id/secret is given. Secrets never reach exceptions,
  logs or reprs.
- Redirects are never followed (a 3xx is an error naming where it pointed): a redirect to
  another host must not receive the client secret or a token. Credentials go over plain
  ``http://`` only to a loopback address or with ``source.allow_insecure_http``; TLS is
  verified against the system CAs or ``source.ca_bundle``, and turning verification off is
  said once per process, loudly, instead of once per request.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import requests.auth
import urllib3

from artq.catalog import OVERALL
from artq.config import DEFAULT_CLIENT_SECRET, SourceSettings, plausible_bounds
from artq.redaction import mask_url, redact
from artq.errors import (
    AuthFailed,
    ConfigError,
    InvalidResponse,
    SourceError,
    SourceUnavailable,
    UnknownApplication,
)
from artq.sources.parse import (
    HOUR_MS,
    HourlyValue,
    Missing,
    Rejected,
    Series,
    Window,
    decode_json,
    check_plausible,
    expected_servers,
    hourly_values,
    parse_metric_data,
)
from artq.timeutil import HOUR, as_utc, floor_hour, from_ms, to_ms

log = logging.getLogger(__name__)

TOKEN_PATH = "/controller/api/oauth/access_token"
REST_PATH = "/controller/rest"
WILDCARD_PATHS = (f"{OVERALL}|*", f"{OVERALL}|*|*")  # app-level leaves, tier-level leaves
CHUNKED_FROM_HOURS = 49  # the controller gives 60-minute buckets for ranges over 2940 min
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
DEFAULT_TOKEN_TTL_S = 300.0  # the controller's default when `expires_in` is absent


@dataclass
class FetchResult:
    values: list[HourlyValue]  # plausible values only
    missing: list[Missing]  # (server, metric_key, hour) without a usable value: no data, or rejected
    requests: int  # HTTP calls made, token requests and retries included
    rejected: list[Rejected] = field(default_factory=list)  # (server, metric, hour, why) refused as implausible


@dataclass
class _Token:
    value: str = field(repr=False)
    refresh_at: float  # clock time after which a new token is fetched


class AppDynamicsClient:
    """Reads hourly metric values from an AppDynamics controller (or the simulator)."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        verify_tls: bool = True,
        chunk_hours: int = 168,
        ca_bundle: str | None = None,
        allow_insecure_http: bool = False,
        plausible: dict[str, tuple[float, float | None]] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client_id and client_secret:
            self._mode = "oauth"
        elif username and password:
            self._mode = "basic"
        else:
            raise ConfigError(
                "the AppDynamics client needs credentials: client_id and client_secret (OAuth), "
                "or username (user@account) and password (Basic). Set them under `source` in artq.yml."
            )
        if chunk_hours < 1:
            raise ValueError(f"`chunk_hours` must be at least 1. Got {chunk_hours}.")
        if retries < 0:
            raise ValueError(f"`retries` must be 0 or more. Got {retries}.")
        self.base_url = _strip_base(base_url)
        self.timeout_s = timeout_s
        self.retries = retries
        self.verify_tls = verify_tls
        self._verify: bool | str = _tls_verify(self.base_url, verify_tls, ca_bundle)
        _check_transport(self.base_url, allow_insecure_http)
        self.chunk_hours = chunk_hours
        self.plausible = plausible_bounds(None) if plausible is None else plausible  # None: the defaults
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._own_session = session is None
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._local = threading.local()  # HTTP calls per thread, for FetchResult.requests

    @classmethod
    def from_settings(cls, source_settings: SourceSettings, base_url: str | None = None) -> AppDynamicsClient:
        """A client for ``source_settings``; ``base_url`` overrides ``source.url`` (e.g. the simulator's)."""
        s = source_settings
        url = base_url or s.url
        if not url:
            raise ConfigError("`source.url` is not set: give the controller's URL, e.g. https://acme.saas.appdynamics.com.")
        # `client_secret` defaults to the simulator's local secret, so a config that sets only
        # username/password means Basic; an explicitly configured secret means OAuth.
        basic = bool(s.username and s.password) and s.client_secret in (None, DEFAULT_CLIENT_SECRET)
        return cls(
            url,
            client_id=None if basic else s.client_id,
            client_secret=None if basic else s.client_secret,
            username=s.username,
            password=s.password,
            timeout_s=s.timeout_s,
            retries=s.retries,
            verify_tls=s.verify_tls,
            chunk_hours=s.chunk_hours,
            ca_bundle=s.ca_bundle,
            allow_insecure_http=s.allow_insecure_http,
            plausible=plausible_bounds(s.plausible),
        )

    def __repr__(self) -> str:
        return f"AppDynamicsClient({self.base_url!r}, auth={self._mode!r})"

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def _calls(self) -> int:
        return getattr(self._local, "calls", 0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public calls -------------------------------------------------------------------

    def applications(self) -> list[dict]:
        """The controller's applications (``id``, ``name``, ...), as it lists them."""
        resp = self._get(f"{REST_PATH}/applications", {"output": "JSON"}, application=None)
        body = decode_json(resp.content, "applications response")
        if not isinstance(body, list) or not all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in body):
            raise InvalidResponse("applications response: expected a JSON array of objects with a string `name`.")
        return body

    def tiers(self, application: str) -> list[dict]:
        """The application's tiers (``name``, ``numberOfNodes``, ...), as the controller lists them."""
        return self._listing(f"{REST_PATH}/applications/{quote(application, safe='')}/tiers", application, "tiers")

    def nodes(self, application: str) -> list[dict]:
        """The application's nodes (``name``, ``tierName``, ...), as the controller lists them."""
        return self._listing(f"{REST_PATH}/applications/{quote(application, safe='')}/nodes", application, "nodes")

    def _listing(self, path: str, application: str, what: str) -> list[dict]:
        body = decode_json(self._get(path, {"output": "JSON"}, application=application).content, f"{what} response")
        if not isinstance(body, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in body):
            raise InvalidResponse(f"{what} response of {application!r}: expected a JSON array of objects with a string `name`.")
        return body

    def fetch_hours(self, application: str, tiers: Sequence[str], start: datetime, end: datetime,
                    metrics: Sequence[str] | None = None) -> FetchResult:
        """Hourly values of every metric (or of ``metrics``, catalog keys) on the main server and
        ``tiers``, complete hours in [start, end).

        All or nothing: every response is validated before anything is returned.
        """
        first = floor_hour(start)
        if first < as_utc(start):
            first += HOUR  # the hour containing `start` is not complete inside the range
        hours = []
        while first + HOUR <= as_utc(end):
            hours.append(first)
            first += HOUR
        servers = expected_servers(tiers)
        calls_before = self._calls()
        series: list[Series] = []
        for window in self._windows(hours):
            for path in WILDCARD_PATHS:
                body = self._metric_data(application, path, window)
                try:
                    series.extend(parse_metric_data(body, window, servers))
                except InvalidResponse as exc:  # say which request, when the body could not
                    if path in str(exc) or "|" in str(exc):
                        raise
                    raise InvalidResponse(f"{exc} (request for `{path}` of {application!r})") from None
        rejected: list[Rejected] = []
        values, missing = hourly_values(series, servers, hours, rejected)
        values, implausible = check_plausible(values, self.plausible)
        rejected += implausible
        missing += [(server, metric, hour) for server, metric, hour, _ in implausible]
        if metrics is not None:  # the two wildcard requests bring every leaf; keep the application's set
            keep = set(metrics)
            values = [v for v in values if v.metric in keep]
            missing = [m for m in missing if m[1] in keep]
            rejected = [r for r in rejected if r[1] in keep]
        return FetchResult(values, missing, self._calls() - calls_before, rejected)

    # ---- request planning ---------------------------------------------------------------

    def _windows(self, hours: list[datetime]) -> list[Window]:
        if not hours:
            return []
        if len(hours) < CHUNKED_FROM_HOURS:
            return [Window(to_ms(h), to_ms(h) + HOUR_MS, rollup=True) for h in hours]
        out, end_ms = [], to_ms(hours[-1]) + HOUR_MS
        for i in range(0, len(hours), self.chunk_hours):
            ws = to_ms(hours[i])
            out.append(Window(ws, min(ws + self.chunk_hours * HOUR_MS, end_ms), rollup=False))
        return out

    def _metric_data(self, application: str, metric_path: str, window: Window) -> bytes:
        path = f"{REST_PATH}/applications/{quote(application, safe='')}/metric-data"
        params = {
            "metric-path": metric_path,
            "time-range-type": "BETWEEN_TIMES",
            "start-time": str(window.start_ms),
            "end-time": str(window.end_ms),
            "rollup": "true" if window.rollup else "false",
            "output": "JSON",
        }
        log.debug("metric-data %s %s [%s, %s) rollup=%s", application, metric_path,
                  from_ms(window.start_ms).isoformat(), from_ms(window.end_ms).isoformat(), window.rollup)
        return self._get(path, params, application=application).content

    # ---- HTTP ---------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str], *, application: str | None) -> requests.Response:
        # Percent-encode ourselves: `|` → %7C, space → %20 (not `+`), `*` kept as real clients do.
        url = f"{self.base_url}{path}?" + "&".join(f"{k}={quote(v, safe='*')}" for k, v in params.items())
        auth = self._auth()
        resp = self._send("GET", url, path, auth=auth)
        if resp.status_code == 401 and isinstance(auth, _Bearer):
            with self._token_lock:  # revoked or expired early: one fresh token, then give up
                if self._token is not None and self._token.value == auth.token:
                    self._token = None  # (unless another thread has replaced it already)
            resp = self._send("GET", url, path, auth=self._auth())
        if resp.status_code in (401, 403):
            raise AuthFailed(self._auth_message(resp.status_code, path))
        if resp.status_code == 429:
            raise SourceUnavailable(f"AppDynamics at {path} is rate limiting (HTTP 429). Retry later.")
        if 400 <= resp.status_code < 500:
            detail = _snippet(resp)
            if application is not None:
                raise UnknownApplication(
                    f"the controller does not know application {application!r} (HTTP {resp.status_code}"
                    f"{detail}). Check `applications` in artq.yml against the names the controller "
                    f"lists at {REST_PATH}/applications."
                )
            raise SourceError(f"AppDynamics at {path} refused the request (HTTP {resp.status_code}{detail}).")
        if resp.status_code >= 300:
            raise SourceError(f"AppDynamics at {path} answered HTTP {resp.status_code}{_redirect_note(resp)}; "
                              "expected 200. Check that source.url is the controller's own address.")
        return resp

    def _auth(self) -> requests.auth.AuthBase:
        # An explicit auth object also stops requests from applying ~/.netrc over our header.
        if self._mode == "basic":
            return requests.auth.HTTPBasicAuth(self._username or "", self._password or "")
        return _Bearer(self._access_token())

    def _auth_message(self, status: int, path: str) -> str:
        if status == 403:
            return (
                f"AppDynamics refused access to {path} (HTTP 403): the credentials work but lack "
                "permission. Give the API client or user a role that can view the application's metrics."
            )
        if self._mode == "oauth":
            return (
                f"AppDynamics refused the API client's token for {path} (HTTP 401), even a fresh one. "
                "Check source.client_id (name@account) and source.client_secret in artq.yml, or "
                "ARTQ_SOURCE_CLIENT_ID / ARTQ_SOURCE_CLIENT_SECRET."
            )
        return (
            f"AppDynamics refused the username and password for {path} (HTTP 401). Check "
            "source.username (user@account) and source.password in artq.yml, or "
            "ARTQ_SOURCE_USERNAME / ARTQ_SOURCE_PASSWORD."
        )

    def _access_token(self) -> str:
        with self._token_lock:  # one token request at a time, even with threads sharing a client
            now = self._clock()
            if self._token is None or now >= self._token.refresh_at:
                self._token = self._new_token(now)
            return self._token.value

    def _new_token(self, now: float) -> _Token:
        resp = self._send(
            "POST",
            f"{self.base_url}{TOKEN_PATH}",
            TOKEN_PATH,
            auth=None,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id or "",
                "client_secret": self._client_secret or "",
            },
        )
        if resp.status_code in (400, 401, 403):
            raise AuthFailed(
                f"AppDynamics refused the API client credentials at {TOKEN_PATH} (HTTP {resp.status_code}). "
                "Check source.client_id (name@account) and source.client_secret in artq.yml, or "
                "ARTQ_SOURCE_CLIENT_ID / ARTQ_SOURCE_CLIENT_SECRET."
            )
        if 300 <= resp.status_code < 400:
            raise SourceError(
                f"AppDynamics answered HTTP {resp.status_code} at {TOKEN_PATH}{_redirect_note(resp)}; artq never "
                "sends the client secret to a redirect. Set source.url to the controller's own address."
            )
        if resp.status_code != 200:
            raise SourceError(
                f"AppDynamics answered HTTP {resp.status_code} at {TOKEN_PATH}; expected 200. "
                "Check that source.url is the controller's base URL."
            )
        body = decode_json(resp.content, "token response")
        token = body.get("access_token") if isinstance(body, dict) else None
        ttl = body.get("expires_in", DEFAULT_TOKEN_TTL_S) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise InvalidResponse("token response: no string `access_token` in the body.")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise InvalidResponse(f"token response: `expires_in` must be a positive number of seconds. Got {ttl!r}.")
        # Refresh a little early so a token never expires between check and use.
        return _Token(token, now + ttl - min(30.0, ttl / 10))

    def _send(self, method: str, url: str, path: str, *, auth: requests.auth.AuthBase | None,
              **kwargs: Any) -> requests.Response:
        """One request with retries on connection errors, timeouts and 5xx; other answers return."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
                self._sleep(delay + self._random.uniform(0, delay / 2))
            self._local.calls = getattr(self._local, "calls", 0) + 1
            try:
                resp = self._session.request(  # never follow a redirect: it could take the secret elsewhere
                    method, url, auth=auth, timeout=self.timeout_s, verify=self._verify, allow_redirects=False, **kwargs
                )
            except requests.exceptions.SSLError:
                raise SourceError(
                    f"TLS verification failed for {self.base_url}. Point source.ca_bundle at the PEM file "
                    "of the CA that signed the controller's certificate (or install it system-wide); "
                    "source.verify_tls: false is only for a trusted test controller."
                ) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                problem = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                log.warning("AppDynamics %s %s: %s (attempt %d)", method, path, problem, attempt + 1)
                continue
            except requests.RequestException as exc:
                raise SourceError(
                    f"cannot send a request to {self.base_url}{path} ({type(exc).__name__}). "
                    "Check source.url in artq.yml."
                ) from None
            if resp.status_code < 500:
                return resp
            problem = f"HTTP {resp.status_code}"
            log.warning("AppDynamics %s %s: %s (attempt %d)", method, path, problem, attempt + 1)
        raise SourceUnavailable(
            f"AppDynamics at {path} is unavailable: {problem} after {self.retries + 1} attempts. "
            "Check that the controller is reachable at source.url, or retry later."
        )


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r

    def __repr__(self) -> str:
        return "_Bearer(<token>)"


def _strip_base(url: str) -> str:
    """The base URL without credentials, query or a trailing ``/controller`` (paths add it)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"`source.url` must be an http(s) URL such as https://acme.saas.appdynamics.com. Got scheme {parts.scheme!r}.")
    try:
        port = parts.port
    except ValueError:  # not a number, or outside 0..65535
        raise ConfigError(f"`source.url` must have a numeric port in 1..65535. Got {mask_url(url)!r}.") from None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    path = path.removesuffix("/controller")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str) -> None:
    """One warning line per process and subject, however many clients and requests follow."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message)


def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_transport(base_url: str, allow_insecure_http: bool) -> None:
    """Credentials over plain http only to loopback (the simulator) or when explicitly allowed."""
    if not base_url.startswith("http://") or _is_loopback(base_url):
        return
    if not allow_insecure_http:
        raise ConfigError(
            f"`source.url` ({base_url}) is plain http://: the client secret or password would cross the network "
            "unencrypted. Use https://, or set source.allow_insecure_http: true "
            "(ARTQ_SOURCE_ALLOW_INSECURE_HTTP=1) for a controller on a trusted network."
        )
    _warn_once(f"http:{base_url}", f"INSECURE: AppDynamics credentials are sent unencrypted over http:// to "
               f"{base_url} (source.allow_insecure_http is true)")


def _tls_verify(base_url: str, verify_tls: bool, ca_bundle: str | None) -> bool | str:
    """What requests' ``verify`` gets: the CA bundle, True (system CAs) or False (said once, loudly)."""
    if not verify_tls:
        if base_url.startswith("https://"):
            _warn_once(f"tls:{base_url}", f"INSECURE: TLS certificate verification is OFF for {base_url} "
                       "(source.verify_tls: false); anyone on the path can read the credentials")
        # said once above; urllib3 would repeat it on every request
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        return False
    if ca_bundle:
        from pathlib import Path

        if not Path(ca_bundle).expanduser().is_file():
            raise ConfigError(f"`source.ca_bundle` {ca_bundle!r} is not a file. Give the path of a PEM CA bundle.")
        return str(Path(ca_bundle).expanduser())
    return True


def _redirect_note(resp: requests.Response) -> str:
    location = resp.headers.get("Location")
    if not location:
        return ""
    host = urlsplit(location).hostname or "the same host"
    return f" (a redirect to {host}, not followed)"


def _snippet(resp: requests.Response) -> str:
    text = redact(" ".join(resp.text.split())[:160])
    return f": {text}" if text else ""


__all__ = ["TOKEN_PATH", "WILDCARD_PATHS", "AppDynamicsClient", "FetchResult", "HourlyValue"]
