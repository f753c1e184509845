"""The tables artq owns. Schema changes go through Alembic migrations only.

Unique keys make duplicates impossible: a re-run of the same (application, origin) replaces
its own rows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from artq.storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only

APP_LEN = 128
SERVER_LEN = 128
METRIC_LEN = 32
VERSION_LEN = 64


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Observation(Base):
    """One hourly value of one metric on one server (``main`` or a tier)."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("application", "server", "metric", "hour", name="uq_observations_key"),
        Index("ix_observations_app_hour", "application", "hour"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    server: Mapped[str] = mapped_column(String(SERVER_LEN))
    metric: Mapped[str] = mapped_column(String(METRIC_LEN))
    # in the primary key because MariaDB partitions by it (migration 0006, storage/retention.py);
    # SQLite keeps its INTEGER PRIMARY KEY (id) so that it still autoincrements
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    value: Mapped[float] = mapped_column(Double)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SourceGap(Base):
    """An hour the source had no data for; fetched again later in case it arrives late."""

    __tablename__ = "source_gaps"
    __table_args__ = (
        UniqueConstraint("application", "server", "metric", "hour", name="uq_source_gaps_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    server: Mapped[str] = mapped_column(String(SERVER_LEN))
    metric: Mapped[str] = mapped_column(String(METRIC_LEN))
    hour: Mapped[datetime] = mapped_column(UTCDateTime())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_checked: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class Forecast(Base):
    """The forecast of hour ``origin + horizon`` made at ``origin`` (one row per horizon)."""

    __tablename__ = "forecasts"
    __table_args__ = (
        UniqueConstraint("application", "origin", "horizon", name="uq_forecasts_key"),
        Index("ix_forecasts_app_target", "application", "target_hour"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    origin: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)  # MariaDB partition key (0006)
    horizon: Mapped[int] = mapped_column(Integer)
    target_hour: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Double)
    lower: Mapped[float | None] = mapped_column(Double, nullable=True)
    upper: Mapped[float | None] = mapped_column(Double, nullable=True)
    coverage: Mapped[float | None] = mapped_column(Double, nullable=True)
    model_version: Mapped[str] = mapped_column(String(VERSION_LEN))
    drivers: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelVersion(Base):
    """A registered set of six horizon models (artifacts live in the models directory)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("application", "version", name="uq_model_versions_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    version: Mapped[str] = mapped_column(String(VERSION_LEN))
    # promoted | kept: the outcome of registration; which version serves is the `champions` row
    status: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    training_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    training_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    metrics: Mapped[Any] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # sha256 of every file of the version (metadata.json included): the integrity anchor lives
    # here, outside the files it protects
    sha256: Mapped[Any] = mapped_column(JSON, nullable=True)
    # sha256 of the training data and settings: a retrain on the same inputs registers nothing
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Champion(Base):
    """The one version that serves each application's forecasts; one row per application."""

    __tablename__ = "champions"

    application: Mapped[str] = mapped_column(String(APP_LEN), primary_key=True)
    version: Mapped[str] = mapped_column(String(VERSION_LEN))
    previous: Mapped[str | None] = mapped_column(String(VERSION_LEN), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    promoted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Application(Base):
    """An application artq forecasts: the list every worker reads at each step (no restart needed).

    Seeded from ``applications`` in artq.yml; managed with ``artq apps`` and ``artq discover``.
    """

    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("name", name="uq_applications_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(APP_LEN))
    tiers: Mapped[Any] = mapped_column(JSON)  # the sub-servers, as the controller names its tiers
    metrics: Mapped[Any] = mapped_column(JSON, nullable=True)  # catalog keys; None: the whole catalog
    status: Mapped[str] = mapped_column(String(16))  # active | paused
    added_by: Mapped[str] = mapped_column(String(16))  # config | cli | discover
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunStatus(StrEnum):
    """``pipeline_runs.status``: the one vocabulary of a cycle's outcome."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # some horizons stored, some failed
    FAILED = "failed"


DONE = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)  # a completed cycle: forecasts were stored


class PipelineRun(Base):
    """One hourly cycle of one application: status, step timings, task ids, error."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (
        UniqueConstraint("application", "origin", name="uq_pipeline_runs_key"),
        Index("ix_pipeline_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    origin: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))  # RunStatus
    trigger: Mapped[str] = mapped_column(String(32))  # beat | cli | demo | reconciler | ...
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    fetch_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    predict_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    refresh_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(VERSION_LEN), nullable=True)
    task_ids: Mapped[Any] = mapped_column(JSON, nullable=True)
    details: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DashboardLatestForecast(Base):
    """The latest six-hour forecast per application (one row per horizon)."""

    __tablename__ = "dashboard_latest_forecast"
    __table_args__ = (UniqueConstraint("application", "horizon", name="uq_dashboard_latest_forecast_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    horizon: Mapped[int] = mapped_column(Integer)
    origin: Mapped[datetime] = mapped_column(UTCDateTime())
    target_hour: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Double)
    lower: Mapped[float | None] = mapped_column(Double, nullable=True)
    upper: Mapped[float | None] = mapped_column(Double, nullable=True)
    model_version: Mapped[str] = mapped_column(String(VERSION_LEN))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DashboardForecastActual(Base):
    """Forecast against actual, per origin and horizon, filled as actuals arrive."""

    __tablename__ = "dashboard_forecast_actual"
    __table_args__ = (
        UniqueConstraint("application", "origin", "horizon", name="uq_dashboard_forecast_actual_key"),
        Index("ix_dashboard_forecast_actual_app_target", "application", "target_hour"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    origin: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)  # MariaDB partition key (0006)
    horizon: Mapped[int] = mapped_column(Integer)
    target_hour: Mapped[datetime] = mapped_column(UTCDateTime())
    forecast: Mapped[float] = mapped_column(Double)
    lower: Mapped[float | None] = mapped_column(Double, nullable=True)
    upper: Mapped[float | None] = mapped_column(Double, nullable=True)
    actual: Mapped[float | None] = mapped_column(Double, nullable=True)
    abs_error: Mapped[float | None] = mapped_column(Double, nullable=True)
    inside_interval: Mapped[bool | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Alert(Base):
    """An early-warning or operational alert: opened once per ``key``, resolved when it clears.

    ``kind`` says what raised it: ``forecast_breach`` (a forecast crosses the threshold),
    ``freshness`` (no completed cycle this hour), ``drift`` (the model needs retraining), ...
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("key", name="uq_alerts_key"),
        Index("ix_alerts_app_status", "application", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255))  # dedup: one open alert per key, never two
    application: Mapped[str] = mapped_column(String(APP_LEN))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # open | resolved
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    origin: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    horizon: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_hour: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    predicted: Mapped[float | None] = mapped_column(Double, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    lead_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[Any] = mapped_column(JSON, nullable=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0)
    notify_error: Mapped[str | None] = mapped_column(Text, nullable=True)


# -- dashboard tables of issue 6 (refreshed by artq/dashboard/refresh.py; see docs/dashboard-tables.md)

PERIOD_LEN = 16


class DashboardAccuracy(Base):
    """Rolling accuracy per horizon over the last ``period`` (24h | 7d) of hours with an actual."""

    __tablename__ = "dashboard_accuracy"
    __table_args__ = (UniqueConstraint("application", "period", "horizon", name="uq_dashboard_accuracy_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    period: Mapped[str] = mapped_column(String(PERIOD_LEN))
    horizon: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    n: Mapped[int] = mapped_column(Integer)
    mae: Mapped[float | None] = mapped_column(Double, nullable=True)
    mape: Mapped[float | None] = mapped_column(Double, nullable=True)
    bias: Mapped[float | None] = mapped_column(Double, nullable=True)
    n_interval: Mapped[int] = mapped_column(Integer)
    coverage: Mapped[float | None] = mapped_column(Double, nullable=True)
    nominal_coverage: Mapped[float | None] = mapped_column(Double, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DashboardPercentileBand(Base):
    """The "bullet chart": percentiles of actual ART over a window, joined with each of the next six forecasts."""

    __tablename__ = "dashboard_percentile_bands"
    __table_args__ = (
        UniqueConstraint("application", "horizon", "period", name="uq_dashboard_percentile_bands_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    horizon: Mapped[int] = mapped_column(Integer)
    period: Mapped[str] = mapped_column(String(PERIOD_LEN))
    origin: Mapped[datetime] = mapped_column(UTCDateTime())
    target_hour: Mapped[datetime] = mapped_column(UTCDateTime())
    forecast: Mapped[float | None] = mapped_column(Double, nullable=True)
    lower: Mapped[float | None] = mapped_column(Double, nullable=True)
    upper: Mapped[float | None] = mapped_column(Double, nullable=True)
    n_hours: Mapped[int] = mapped_column(Integer)
    p60: Mapped[float | None] = mapped_column(Double, nullable=True)
    p75: Mapped[float | None] = mapped_column(Double, nullable=True)
    p90: Mapped[float | None] = mapped_column(Double, nullable=True)
    p99: Mapped[float | None] = mapped_column(Double, nullable=True)
    band_position: Mapped[str | None] = mapped_column(String(PERIOD_LEN), nullable=True)
    alert_threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DashboardForecastDriver(Base):
    """The top contributors of each of the latest six forecasts, ranked (1 = largest magnitude)."""

    __tablename__ = "dashboard_forecast_drivers"
    __table_args__ = (
        UniqueConstraint("application", "horizon", "driver_rank", name="uq_dashboard_forecast_drivers_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(APP_LEN))
    horizon: Mapped[int] = mapped_column(Integer)
    driver_rank: Mapped[int] = mapped_column(Integer)
    origin: Mapped[datetime] = mapped_column(UTCDateTime())
    target_hour: Mapped[datetime] = mapped_column(UTCDateTime())
    driver: Mapped[str] = mapped_column(String(255))
    contribution: Mapped[float] = mapped_column(Double)
    direction: Mapped[str] = mapped_column(String(8))  # up | down
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DashboardActiveAlert(Base):
    """A snapshot of the open alerts of each application (rows of resolved alerts are removed)."""

    __tablename__ = "dashboard_active_alerts"
    __table_args__ = (
        UniqueConstraint("alert_key", name="uq_dashboard_active_alerts_alert_key"),
        Index("ix_dashboard_active_alerts_app", "application"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_key: Mapped[str] = mapped_column(String(255))
    application: Mapped[str] = mapped_column(String(APP_LEN))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    origin: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    horizon: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_hour: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lead_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)
    predicted: Mapped[float | None] = mapped_column(Double, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    latest_peak: Mapped[float | None] = mapped_column(Double, nullable=True)
    message: Mapped[str] = mapped_column(Text)
    notified: Mapped[bool] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
