"""The applications artq forecasts: one table every worker reads at each step.

``applications`` in artq.yml is the seed: each process writes the applications its config
declares into the table (their tiers and metrics as configured) before it first reads it.
``artq apps add|pause|resume|remove`` and ``artq discover`` manage the rest. A change takes effect
at the next cycle on every worker, with no restart: nothing caches the list.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from artq.catalog import METRICS_BY_KEY, TARGET_METRIC
from artq.config import ApplicationSettings, Settings
from artq.errors import ConfigError
from artq.storage.models import Application
from artq.timeutil import utcnow


class AppStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


def settings_of(row: Application) -> ApplicationSettings:
    return ApplicationSettings(name=row.name, tiers=list(row.tiers or []), metrics=row.metrics)


def seed(session: Session, settings: Settings) -> None:
    """Write the config's applications into the table (the config wins for what it declares)."""
    rows = {r.name: r for r in session.scalars(select(Application).where(
        Application.name.in_([a.name for a in settings.applications])))}
    now = utcnow()
    for app in settings.applications:
        row = rows.get(app.name)
        if row is None:
            session.add(Application(name=app.name, tiers=list(app.tiers), metrics=app.metrics, status=AppStatus.ACTIVE,
                                    added_by="config", added_at=now, updated_at=now))
        elif (list(row.tiers or []), row.metrics) != (list(app.tiers), app.metrics):
            row.tiers, row.metrics, row.updated_at = list(app.tiers), app.metrics, now
    session.flush()


def listed(session: Session, *, include_paused: bool = False) -> list[Application]:
    q = select(Application).order_by(Application.name)
    if not include_paused:
        q = q.where(Application.status == AppStatus.ACTIVE)
    return list(session.scalars(q))


def get(session: Session, name: str) -> Application:
    """The row of ``name``, or a one-line ConfigError naming the closest known application."""
    row = session.scalar(select(Application).where(Application.name == name))
    if row is None:
        known = list(session.scalars(select(Application.name)))
        raise ConfigError(f"unknown application {name!r}{did_you_mean(name, known)}; see `artq apps list`, add it with "
                          f"`artq apps add {name} --tiers T1,T2` or pick one from `artq discover`.")
    return row


def add(session: Session, name: str, tiers: Sequence[str], metrics: Sequence[str] | None = None,
        added_by: str = "cli") -> Application:
    check_metrics(metrics)
    if not tiers:
        raise ConfigError(f"application {name!r} needs at least one tier (its sub-servers): give `--tiers T1,T2`.")
    if session.scalar(select(Application.id).where(Application.name == name)) is not None:
        raise ConfigError(f"application {name!r} is listed already; see `artq apps list`.")
    now = utcnow()
    row = Application(name=name, tiers=list(tiers), metrics=list(metrics) if metrics else None, status=AppStatus.ACTIVE,
                      added_by=added_by, added_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def set_status(session: Session, name: str, status: AppStatus) -> Application:
    row = get(session, name)
    row.status, row.updated_at = status, utcnow()
    return row


def remove(session: Session, settings: Settings, name: str) -> None:
    """Stop forecasting ``name`` (its stored history stays). A config-declared one must leave the config."""
    row = get(session, name)
    if any(a.name == name for a in settings.applications):
        raise ConfigError(f"application {name!r} is declared in the config ({settings.config_path or 'the defaults'}); "
                          f"remove it there, or pause it with `artq apps pause {name}`.")
    session.delete(row)


def check_metrics(metrics: Iterable[str] | None) -> None:
    if metrics is None:
        return
    metrics = list(metrics)
    for key in metrics:
        if key not in METRICS_BY_KEY:
            raise ConfigError(f"unknown metric {key!r}{did_you_mean(key, list(METRICS_BY_KEY))}; known metrics: "
                              f"{', '.join(METRICS_BY_KEY)}.")
    if TARGET_METRIC not in metrics:
        raise ConfigError(f"the metrics must include {TARGET_METRIC!r}, the response time artq forecasts.")


def check_tiers(application: str, configured: Sequence[str], on_controller: Sequence[str]) -> None:
    """Every configured tier exists on the controller; a typo is one line naming the closest tier."""
    known = set(on_controller)
    for tier in configured:
        if tier not in known:
            raise ConfigError(f"application {application!r}: the controller has no tier {tier!r}"
                              f"{did_you_mean(tier, sorted(known))}; its tiers: {', '.join(sorted(known)) or 'none'}.")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
