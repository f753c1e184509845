"""Early-warning alerts: open when a forecast crosses the threshold within the next six hours.

The rule per application comes from ``alerts`` in the settings (global values, then a
per-application override). The decision itself is a pure function (:func:`decide`) so the
refresh step, the tests and ``bench/alerts`` all run exactly the same logic; :func:`evaluate_alerts`
is the thin database layer around it.

Lead time. A cycle with origin ``t0`` runs just after hour ``t0`` completes, i.e. at
``t0 + 1 h``; the forecast for horizon ``h`` is the mean ART of the hour starting at
``t0 + h``. The warning therefore reaches an analyst ``h - 1`` hours before the breaching hour
begins: that is ``lead_hours`` (horizon 1 = "the hour now in progress", lead 0).

Hysteresis. An alert opens when the compared value (point forecast or upper bound) reaches the
threshold. Once open it stays open until ``clear_cycles`` consecutive cycles see every forecast
*and* the latest actual below ``clear_ratio`` x threshold, so a forecast wobbling around the
threshold keeps one alert open instead of opening and resolving it every hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from artq.config import AlertSettings, Settings
from artq.dashboard.bands import Band
from artq.errors import ConfigError
from artq.storage import repository as repo
from artq.storage.models import Alert
from artq.timeutil import HOUR, as_utc

KIND = "forecast_breach"


@dataclass(frozen=True)
class AlertRule:
    """The effective alert rule of one application (global settings with its override applied)."""

    application: str
    enabled: bool = True
    threshold_ms: float | None = None
    band: str = "p99"
    band_window: str = "30d"
    band_factor: float = 1.0
    floor_ms: float | None = None
    compare: str = "forecast"
    clear_ratio: float = 0.9
    clear_cycles: int = 2

    def threshold(self, bands: Mapping[str, Band] | None) -> float | None:
        """Absolute ``threshold_ms``, else ``band_factor`` x the band percentile; never below ``floor_ms``.

        None when the rule is relative and the band has no history yet (no alert can open then).
        """
        if self.threshold_ms is not None:
            value: float | None = self.threshold_ms
        else:
            band = (bands or {}).get(self.band_window)
            base = band.get(self.band) if band is not None else None
            value = None if base is None else base * self.band_factor
        if value is None:
            return self.floor_ms
        return max(value, self.floor_ms) if self.floor_ms is not None else value

    def describe(self) -> str:
        if self.threshold_ms is not None:
            base = f"{self.threshold_ms:g} ms"
        else:
            factor = "" if self.band_factor == 1 else f"{self.band_factor:g} x "
            base = f"{factor}{self.band} of actual ART ({self.band_window})"
        floor = f", at least {self.floor_ms:g} ms" if self.floor_ms is not None else ""
        return f"{'upper bound' if self.compare == 'upper' else 'forecast'} >= {base}{floor}"


def rule_for(settings: Settings, application: str) -> AlertRule:
    """The rule of ``application``; an override naming an unconfigured application is an error."""
    cfg: AlertSettings = settings.alerts
    known = {a.name for a in settings.applications}
    for override in cfg.applications:
        if override.application not in known:
            raise ConfigError(
                f"`alerts.applications` has an override for {override.application!r}, which is not in "
                f"`applications` ({', '.join(sorted(known))}). Fix the name or remove the override."
            )
    values: dict[str, Any] = {
        k: getattr(cfg, k)
        for k in ("enabled", "threshold_ms", "band", "band_window", "band_factor", "floor_ms", "compare", "clear_ratio", "clear_cycles")
    }
    for override in cfg.applications:
        if override.application == application:
            values.update({k: v for k, v in vars(override).items() if k in values and v is not None})
    return AlertRule(application=application, **values)


@dataclass(frozen=True)
class Point:
    """One horizon of the latest forecast, with the threshold that applies to its target hour."""

    horizon: int
    target_hour: datetime
    value: float
    upper: float | None
    threshold: float | None
    drivers: Sequence[Sequence[Any]] = ()

    def compared(self, on: str) -> float:
        # an interval can be missing (older model): fall back to the point forecast
        return self.upper if on == "upper" and self.upper is not None else self.value

    def crosses(self, on: str) -> bool:
        return self.threshold is not None and self.compared(on) >= self.threshold


@dataclass(frozen=True)
class OpenState:
    """What :func:`decide` needs to remember about an open alert between cycles."""

    last_origin: datetime
    clear_since: datetime | None = None


@dataclass(frozen=True)
class Decision:
    action: Literal["none", "open", "update", "resolve", "stale"]
    first: Point | None = None  # earliest horizon that crosses (the one an alert opens on)
    peak: Point | None = None  # largest compared value among the crossings
    clear_since: datetime | None = None
    crossings: tuple[Point, ...] = field(default_factory=tuple)


def decide(
    rule: AlertRule,
    origin: datetime,
    points: Sequence[Point],
    actual: float | None,
    actual_threshold: float | None,
    state: OpenState | None,
) -> Decision:
    """What the cycle at ``origin`` does to the application's forecast-breach alert."""
    crossing = tuple(sorted((p for p in points if p.crosses(rule.compare)), key=lambda p: p.horizon))
    first = crossing[0] if crossing else None
    peak = max(crossing, key=lambda p: p.compared(rule.compare)) if crossing else None
    if state is None:
        return Decision("open", first, peak, None, crossing) if first else Decision("none")
    if origin < state.last_origin:
        return Decision("stale")  # a late re-run of an older cycle must not rewind the state
    clear = bool(points) and all(
        p.threshold is None or p.compared(rule.compare) < rule.clear_ratio * p.threshold for p in points
    ) and (actual is None or actual_threshold is None or actual < rule.clear_ratio * actual_threshold)
    if not clear:
        return Decision("update", first, peak, None, crossing)
    since = state.clear_since or origin
    cycles_clear = int((origin - since) / HOUR) + 1
    if cycles_clear >= rule.clear_cycles:
        return Decision("resolve", first, peak, since, crossing)
    return Decision("update", first, peak, since, crossing)


def lead_hours(horizon: int) -> int:
    """Hours between the cycle that sees the breach coming and the start of the breaching hour."""
    return horizon - 1


def alert_key(application: str, origin: datetime) -> str:
    # one key per (application, opening cycle): a re-run of that cycle finds it instead of duplicating
    return f"{KIND}:{application}:{as_utc(origin):%Y-%m-%dT%H:00Z}"


def open_alert(session: Session, application: str) -> Alert | None:
    return session.scalar(
        select(Alert)
        .where(Alert.application == application, Alert.kind == KIND, Alert.status == "open")
        .order_by(Alert.opened_at.desc(), Alert.id.desc())
        .limit(1)
    )


def _message(application: str, rule: AlertRule, p: Point) -> str:
    start = as_utc(p.target_hour)
    what = "upper bound" if rule.compare == "upper" and p.upper is not None else "forecast"
    lead = lead_hours(p.horizon)
    when = "the hour in progress" if lead == 0 else f"in {lead} h"
    return (
        f"{application}: ART {what} {p.compared(rule.compare):.0f} ms >= threshold {p.threshold:.0f} ms "
        f"for {start:%Y-%m-%d %H:00}-{(start + HOUR):%H:00} UTC ({when}; horizon {p.horizon})"
    )


def _point_dict(p: Point, on: str) -> dict[str, Any]:
    return {"horizon": p.horizon, "target_hour": as_utc(p.target_hour).isoformat(), "value": round(p.value, 3),
            "upper": None if p.upper is None else round(p.upper, 3), "compared": round(p.compared(on), 3),
            "threshold": None if p.threshold is None else round(p.threshold, 3)}


def evaluate_alerts(
    session: Session,
    settings: Settings,
    application: str,
    origin: datetime,
    points: Sequence[Point],
    actual: float | None,
    actual_threshold: float | None,
    now: datetime,
) -> dict[str, Any]:
    """Apply :func:`decide` to the stored alert of ``application``; returns what happened."""
    rule = rule_for(settings, application)
    if not rule.enabled:
        return {"enabled": False, "action": "none"}
    current = open_alert(session, application)
    state = None
    if current is not None:
        d = current.details or {}
        state = OpenState(
            last_origin=as_utc(datetime.fromisoformat(d["last_origin"])) if d.get("last_origin") else as_utc(current.origin or origin),
            clear_since=as_utc(datetime.fromisoformat(d["clear_since"])) if d.get("clear_since") else None,
        )
    decision = decide(rule, origin, points, actual, actual_threshold, state)
    latest = {
        "origin": origin.isoformat(), "actual": actual, "actual_threshold": actual_threshold,
        "crossings": [_point_dict(p, rule.compare) for p in decision.crossings],
        "peak": _point_dict(decision.peak, rule.compare) if decision.peak else None,
    }
    if decision.action == "open":
        assert decision.first is not None
        key = alert_key(application, origin)
        p = decision.first
        opened = repo.record_alert(session, dict(
            key=key, application=application, kind=KIND, opened_at=now,
            origin=origin, horizon=p.horizon, target_hour=as_utc(p.target_hour), predicted=round(p.compared(rule.compare), 3),
            threshold=round(p.threshold or 0.0, 3), lead_hours=lead_hours(p.horizon), message=_message(application, rule, p),
            details={"rule": rule.describe(), "compare": rule.compare, "last_origin": origin.isoformat(), "clear_since": None,
                     "drivers": [list(d) for d in p.drivers][:5], "latest": latest, "peak": latest["peak"]},
        ))
        if not opened:
            return {"enabled": True, "action": "none", "key": key}  # this cycle's alert exists (resolved since)
        return {"enabled": True, "action": "open", "key": key, "horizon": p.horizon, "lead_hours": lead_hours(p.horizon)}
    if current is None or decision.action in ("none", "stale"):
        return {"enabled": True, "action": decision.action}
    details = dict(current.details or {})
    details.update(last_origin=origin.isoformat(), clear_since=decision.clear_since.isoformat() if decision.clear_since else None,
                   latest=latest)
    if decision.peak is not None:
        old_peak = (details.get("peak") or {}).get("compared")
        if old_peak is None or decision.peak.compared(rule.compare) > old_peak:
            details["peak"] = _point_dict(decision.peak, rule.compare)
    current.details = details  # a new dict, so the JSON column is seen as changed
    if decision.action == "resolve":
        current.status, current.resolved_at = "resolved", now
    return {"enabled": True, "action": decision.action, "key": current.key}
