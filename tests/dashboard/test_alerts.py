from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from artq.config import ApplicationAlertSettings, load_settings
from artq.dashboard.alerts import AlertRule, OpenState, Point, decide, rule_for
from artq.dashboard.bands import Band
from artq.errors import ConfigError
from artq.storage.models import Alert, DashboardActiveAlert
from tests.dashboard.conftest import HOUR, T0, put_forecasts, refresh, seed_actuals

QUIET = [300, 310, 320, 330, 320, 310]


def alerts(db) -> list[Alert]:
    with db.session() as s:
        return list(s.scalars(select(Alert).order_by(Alert.id)))


@pytest.fixture
def setup(sqlite_settings, db):
    sqlite_settings.alerts.threshold_ms = 500.0
    sqlite_settings.alerts.webhook_backoff_s = 0.0
    seed_actuals(db, "ABP", T0 - 10 * 24 * HOUR, T0, 300.0)
    return sqlite_settings, db


def cycle(settings, db, origin, values, actual=300.0, **kw):
    seed_actuals(db, "ABP", origin, origin, actual)
    put_forecasts(db, "ABP", origin, values, **kw)
    return refresh(db, settings, "ABP", origin)


def test_alert_opens_on_predicted_breach_with_lead_time_horizon_and_value(setup):
    settings, db = setup
    out = cycle(settings, db, T0, [300, 320, 350, 520, 560, 300])
    assert out["alert"]["action"] == "open"
    [a] = alerts(db)
    assert (a.status, a.kind, a.horizon, a.lead_hours) == ("open", "forecast_breach", 4, 3)
    assert a.origin == T0 and a.target_hour == T0 + 4 * HOUR
    assert (a.predicted, a.threshold) == (520.0, 500.0)
    assert "520 ms >= threshold 500 ms" in a.message and "UTC" in a.message
    assert a.details["peak"]["horizon"] == 5 and a.details["drivers"][0][0] == "ABPServer3 load"
    with db.session() as s:
        [row] = s.scalars(select(DashboardActiveAlert)).all()
    assert row.alert_key == a.key and row.lead_hours == 3 and row.notified is False


def test_no_alert_while_forecasts_stay_below_threshold(setup):
    settings, db = setup
    for i in range(3):
        cycle(settings, db, T0 + i * HOUR, [490, 495, 499, 480, 470, 460])
    assert alerts(db) == []


def test_alert_does_not_flap_when_forecast_wobbles_around_threshold(setup):
    settings, db = setup
    wobble = [[510] + QUIET[1:], [495] * 6, [505] * 6, [470] * 6, [440] + [510] + QUIET[2:], [480] * 6]
    for i, values in enumerate(wobble):
        cycle(settings, db, T0 + i * HOUR, values)
    [a] = alerts(db)
    assert a.status == "open"  # between 450 (clear level) and 500 it stays open; one clear hour is not enough


def test_alert_resolves_after_clear_cycles_and_a_rerun_is_idempotent(setup):
    settings, db = setup
    cycle(settings, db, T0, [520] + QUIET[1:])
    cycle(settings, db, T0 + HOUR, QUIET)
    assert alerts(db)[0].status == "open"
    cycle(settings, db, T0 + HOUR, QUIET)  # re-run of the same cycle: still one clear cycle, not two
    assert alerts(db)[0].status == "open"
    out = cycle(settings, db, T0 + 2 * HOUR, QUIET)
    assert out["alert"]["action"] == "resolve"
    [a] = alerts(db)
    assert a.status == "resolved" and a.resolved_at is not None
    with db.session() as s:
        assert s.scalars(select(DashboardActiveAlert)).all() == []
    out = cycle(settings, db, T0 + 3 * HOUR, [530] * 6)  # a new breach later is a new alert
    assert out["alert"]["action"] == "open" and len(alerts(db)) == 2


def test_alert_stays_open_while_actual_is_still_high(setup):
    settings, db = setup
    cycle(settings, db, T0, [520] + QUIET[1:])
    for i in (1, 2, 3):
        cycle(settings, db, T0 + i * HOUR, QUIET, actual=620.0)
    assert alerts(db)[0].status == "open"
    cycle(settings, db, T0 + 4 * HOUR, QUIET)
    cycle(settings, db, T0 + 5 * HOUR, QUIET)
    assert alerts(db)[0].status == "resolved"


def test_alert_on_upper_bound_opens_when_only_the_interval_crosses(setup):
    settings, db = setup
    cycle(settings, db, T0, [470] * 6, width=40)
    assert alerts(db) == []
    settings.alerts.applications = [ApplicationAlertSettings(application="ABP", compare="upper")]
    cycle(settings, db, T0 + HOUR, [470] * 6, width=40)
    [a] = alerts(db)
    assert (a.horizon, a.predicted) == (1, 510.0)


def test_relative_threshold_follows_the_percentile_band(setup):
    settings, db = setup
    settings.alerts.threshold_ms = None
    settings.alerts.applications = [ApplicationAlertSettings(application="ABP", band="p90", band_window="7d", band_factor=1.5)]
    cycle(settings, db, T0, [440] * 6)  # p90 of a flat 300 ms week is 300: threshold 450
    assert alerts(db) == []
    cycle(settings, db, T0 + HOUR, [300, 300, 460, 300, 300, 300])
    [a] = alerts(db)
    assert (a.horizon, a.lead_hours, a.threshold) == (3, 2, 450.0)


def test_webhook_receives_each_alert_exactly_once(setup, receiver):
    settings, db = setup
    settings.alerts.webhook_url = receiver.url
    cycle(settings, db, T0, [300, 300, 540, 300, 300, 300])
    cycle(settings, db, T0, [300, 300, 540, 300, 300, 300])  # re-run of the cycle
    cycle(settings, db, T0 + HOUR, [550] * 6)  # still breaching: same alert
    assert receiver.requests == 1 and len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert "ABP" in body["text"] and "540 ms" in body["text"] and "ABPServer3 load ↑" in body["text"]
    assert body["alert"]["lead_hours"] == 2 and body["alert"]["horizon"] == 3
    assert body["alert"]["predicted_ms"] == 540.0 and body["alert"]["threshold_ms"] == 500.0
    [a] = alerts(db)
    assert a.notified_at is not None and a.notify_error is None and a.notify_attempts == 1


def test_failed_webhook_is_recorded_redacted_and_retried_next_refresh(setup, receiver, caplog):
    settings, db = setup
    settings.alerts.webhook_url = receiver.url
    settings.alerts.webhook_retries = 3
    receiver.fail_next = 3  # every attempt of the first refresh fails
    with caplog.at_level(logging.DEBUG):
        cycle(settings, db, T0, [520] * 6)
    [a] = alerts(db)
    assert a.notified_at is None and receiver.requests == 3 and receiver.bodies == []
    assert a.notify_error is not None and "HTTP 500" in a.notify_error and "after 3 attempt(s)" in a.notify_error
    assert "SECRETTOKEN123" not in a.notify_error and "SECRETTOKEN123" not in caplog.text
    cycle(settings, db, T0 + HOUR, [530] * 6)
    [a] = alerts(db)
    assert a.notified_at is not None and a.notify_error is None and a.notify_attempts == 2
    assert len(receiver.bodies) == 1
    cycle(settings, db, T0 + 2 * HOUR, [530] * 6)
    assert len(receiver.bodies) == 1 and receiver.requests == 4


def test_unreachable_webhook_error_never_shows_the_token(setup, caplog):
    settings, db = setup
    settings.alerts.webhook_url = "http://127.0.0.1:9/services/T0001/B0002/SECRETTOKEN123?k=SECRETQUERY"
    settings.alerts.webhook_retries = 2
    settings.alerts.webhook_timeout_s = 1.0
    with caplog.at_level(logging.DEBUG):
        cycle(settings, db, T0, [520] * 6)
    [a] = alerts(db)
    assert "Connection refused" in a.notify_error and "http://127.0.0.1:9/…" in a.notify_error
    for secret in ("SECRETTOKEN123", "SECRETQUERY"):
        assert secret not in a.notify_error and secret not in caplog.text


def test_decide_ignores_a_late_rerun_of_an_older_cycle():
    rule = AlertRule(application="ABP", threshold_ms=500)
    points = [Point(1, T0 + HOUR, 100, None, 500)]
    assert decide(rule, T0, points, 100, 500, OpenState(last_origin=T0 + 3 * HOUR)).action == "stale"


def test_rule_threshold_respects_floor_and_missing_band():
    rule = AlertRule(application="ABP", band="p99", band_window="30d", band_factor=1.1, floor_ms=400)
    assert rule.threshold({"30d": Band("30d", 720, 1, 2, 3, 300)}) == 400
    assert rule.threshold({"30d": Band("30d", 720, 1, 2, 3, 1000)}) == pytest.approx(1100)
    assert AlertRule(application="ABP").threshold({"30d": Band("30d", 0, None, None, None, None)}) is None


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("alerts: {band: p95}", "`alerts.band` must be one of p60, p75, p90, p99. Got 'p95'."),
        ("alerts: {compare: lower}",
         "`alerts.compare` must be 'forecast' (the point forecast) or 'upper' (its upper bound). Got 'lower'."),
        ("alerts: {clear_ratio: 1.5}", "`alerts.clear_ratio` must be in (0, 1]. Got 1.5."),
        ("alerts: {webhook_url: 'hooks.example/x'}", "`alerts.webhook_url` must start with http:// or https://."),
        ("alerts: {applications: [{application: ABP, threshold_ms: -1}]}",
         "`alerts.applications['ABP'].threshold_ms` must be a positive number of milliseconds. Got -1.0."),
        ("alerts: {bogus: 1}", "unknown key `alerts.bogus` in the config"),
    ],
)
def test_alert_settings_are_validated_with_clear_messages(tmp_path, yaml_text, message):
    path = tmp_path / "artq.yml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert message in str(err.value)


def test_override_for_an_unknown_application_is_reported(tmp_path):
    path = tmp_path / "artq.yml"
    path.write_text("alerts: {applications: [{application: NOPE, threshold_ms: 900}]}")
    settings = load_settings(path, env={})
    with pytest.raises(ConfigError, match="override for 'NOPE', which is not in `applications`"):
        rule_for(settings, "ABP")


def test_override_inherits_unset_keys(tmp_path):
    path = tmp_path / "artq.yml"
    path.write_text("alerts: {band_factor: 1.2, compare: upper, applications: [{application: ABP, band: p90}]}")
    rule = rule_for(load_settings(path, env={}), "ABP")
    assert (rule.band, rule.band_factor, rule.compare, rule.band_window) == ("p90", 1.2, "upper", "30d")


def test_alert_lifecycle_and_single_webhook_on_each_database(any_db_url, tmp_path, receiver):
    from artq.storage.db import Database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url=any_db_url)
    settings.alerts.threshold_ms, settings.alerts.webhook_url, settings.alerts.webhook_backoff_s = 500.0, receiver.url, 0.0
    db = Database(any_db_url)
    try:
        seed_actuals(db, "ABP", T0 - 2 * 24 * HOUR, T0, 300.0)
        receiver.fail_next = 3
        for i, values in enumerate([[520] * 6, [530] * 6, QUIET, QUIET]):
            cycle(settings, db, T0 + i * HOUR, values)
        [a] = alerts(db)
        assert (a.status, a.lead_hours, a.notify_attempts, a.notify_error) == ("resolved", 0, 2, None)
        assert len(receiver.bodies) == 1 and receiver.requests == 4
    finally:
        db.dispose()


def test_nothing_is_sent_when_the_refresh_transaction_rolls_back(setup, receiver):
    from artq.dashboard.refresh import refresh_dashboard

    settings, db = setup
    settings.alerts.webhook_url = receiver.url
    put_forecasts(db, "ABP", T0, [520] * 6)
    with pytest.raises(RuntimeError), db.session() as s:
        refresh_dashboard(s, settings, "ABP", T0)
        raise RuntimeError("the run row update failed")  # the caller's transaction never commits
    assert receiver.requests == 0 and alerts(db) == []
    refresh(db, settings, "ABP", T0)
    assert len(receiver.bodies) == 1
    with db.session() as s:
        [row] = s.scalars(select(DashboardActiveAlert)).all()
    assert row.notified is True
