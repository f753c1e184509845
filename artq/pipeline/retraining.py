"""When each application is retrained: staggered across the week, sooner when it drifted, within a budget.

Beat asks every hour (``artq.model.plan``). Each application has a fixed hour of the week for
its weekly retrain and a fixed hour of the day for its drift check, both from a stable hash of
its name, so a fleet's retraining spreads evenly and no hour's cycle waits behind a wave of
training. An application whose drift check found drift (an open ``drift`` alert on its current
champion) is retrained at the next plan, unless it was retrained after the alert opened. At most
``operations.retrain_budget_per_hour`` retrains are queued per hour (drifted first, oldest alert
first, then the weekly retrains whose hour passed longest ago); the rest wait for the next hour,
so the train queue never grows without bound. A weekly retrain stays due until a version is
registered after its hour, for at most ``OVERDUE_HOURS``; after that it waits for next week's
hour (a drift check still asks for one sooner).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from artq.pipeline.runtime import Runtime, retry_safe
from artq.storage.models import Alert, Champion, ModelVersion
from artq.timeutil import as_utc, floor_hour, utcnow

HOURS_PER_WEEK = 168
OVERDUE_HOURS = 24  # a weekly retrain deferred by the budget is carried over this long


def _slot(name: str, period: int) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % period


def weekly_slot(name: str) -> int:
    """The application's hour of the week (0 = Monday 00:00 UTC) for its weekly retrain."""
    return _slot(name, HOURS_PER_WEEK)


def daily_slot(name: str) -> int:
    """The application's hour of the day (UTC) for its drift check."""
    return _slot("drift:" + name, 24)


@retry_safe
def plan(rt: Runtime, now: datetime | None = None) -> dict[str, Any]:
    """This hour's work: ``{"drift": [...], "train": [...], "deferred": [...]}`` (application names)."""
    hour = floor_hour(now or utcnow())
    hour_of_week = hour.weekday() * 24 + hour.hour
    names = list(rt.applications())
    drift = [n for n in names if daily_slot(n) == hour.hour]
    with rt.db.session() as s:
        champions = dict(s.execute(select(Champion.application, Champion.version)).all())
        latest = dict(s.execute(select(ModelVersion.application, func.max(ModelVersion.created_at))
                                .group_by(ModelVersion.application)).all())
        alerts = s.execute(select(Alert.application, Alert.opened_at, Alert.key).where(
            Alert.kind == "drift", Alert.status == "open").order_by(Alert.opened_at)).all()
    weekly = []  # (its hour this week, name): due until a version is registered after that hour
    for n in names:
        slot = hour - timedelta(hours=(hour_of_week - weekly_slot(n)) % HOURS_PER_WEEK)
        if hour - slot < timedelta(hours=OVERDUE_HOURS) and (n not in latest or as_utc(latest[n]) < slot):
            weekly.append((slot, n))
    weekly = [n for _, n in sorted(weekly)]
    drifted = []
    for application, opened_at, key in alerts:
        if application not in names or key != f"drift:{application}:{champions.get(application)}":
            continue  # an alert on a version that no longer serves
        if application in latest and as_utc(latest[application]) > as_utc(opened_at):
            continue  # retrained since (kept or promoted): wait for the next drift check
        drifted.append(application)
    wanted = list(dict.fromkeys(drifted + weekly))
    budget = rt.settings.operations.retrain_budget_per_hour
    return {"hour": hour.isoformat(), "drift": drift, "train": wanted[:budget], "deferred": wanted[budget:]}
