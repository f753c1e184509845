"""How early do artq's alerts warn, and how often do they cry wolf? Measured on simulator data.

    .venv/bin/python bench/alerts/run.py                     # 3 seeds x 8 test weeks, default rules
    .venv/bin/python bench/alerts/run.py --seeds 1 --test-weeks 2   # a quick look

For each seed: the simulated application ABP (incidents ~1/week, deployments, surges, gaps) over
``train + test`` weeks; artq's own forecaster, refitted weekly, makes a six-hour forecast at every
hour of the test weeks (``artq.forecasting.backtest.backtest_frame``: rolling origin, only data
up to the origin). Each hourly cycle then runs exactly the refresh step's alert code:
``artq.dashboard.bands.bands_for`` for the percentile bands, ``AlertRule.threshold`` and
``artq.dashboard.alerts.decide`` (hysteresis included).

What is counted (hours are UTC hour starts; a cycle with origin t0 runs, and warns, at t0 + 1 h):

* incident: a simulator incident (a tier losing capacity). ``ahead_of_start``: an alert was open
  at least 1 h before the incident began and still open when it began. ``ahead_of_peak``: ... at least 1 h before the hour
  of highest main-server ART during the incident. ``during``: an alert was open at some time
  from the incident start to its end (detected at all).
* breach: a run of consecutive hours whose actual ART reached the *reference* line, the p99 of
  actual ART over the last 30 days (the same line for every rule). ``ahead``:
  an alert was open at least 1 h before the first breaching hour began, and still open then.
* false alert: an alert during whose life (opening cycle to resolution, at least the six
  forecast hours) no actual hour reached the reference line and no incident was running.

Results: bench/alerts/results/alerts.md and alerts.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from artq.catalog import DEFAULT_TIERS, MAIN, METRICS, series_name
from artq.config import ForecastSettings
from artq.dashboard.alerts import AlertRule, OpenState, Point, decide
from artq.dashboard.bands import HOUR_OF_WEEK_WEEKS, bands_for
from artq.forecasting.backtest import backtest_frame
from artq.sources.simulator import SimApp, SimulatorConfig, World

HERE = Path(__file__).resolve().parent
HOUR = timedelta(hours=1)
END = datetime(2026, 11, 2, tzinfo=UTC)  # a fixed Monday: the figures do not move with the clock

RULES = {
    "default: forecast >= p99 (30d)": AlertRule("ABP"),
    "upper >= p99 (30d)": AlertRule("ABP", compare="upper"),
    "forecast >= 1.3 x p90 (hour of week)": AlertRule("ABP", band="p90", band_window="hour_of_week", band_factor=1.3),
    "forecast >= p99 (7d)": AlertRule("ABP", band_window="7d"),
    "upper >= p90 (30d)": AlertRule("ABP", band="p90", compare="upper"),
    "upper >= 1.2 x p90 (hour of week)": AlertRule("ABP", band="p90", band_window="hour_of_week", band_factor=1.2, compare="upper"),
}
REFERENCE = AlertRule("ABP")  # p99 of actual ART over 30 days: what counts as a breach, for every rule
CACHE = HERE / ".cache"  # backtest predictions per (seed, weeks): the slow part, identical for every rule


def simulated_frame(seed: int, days: int) -> tuple[pd.DataFrame, list]:
    world = World(SimulatorConfig(seed=seed, applications=[SimApp(name="ABP")], now=lambda: END))
    start = END - timedelta(days=days)
    cols = {series_name(m.key, s): world.hourly("ABP", s, m.key, start, END) for s in [MAIN, *DEFAULT_TIERS] for m in METRICS}
    return pd.DataFrame(cols), world.incidents("ABP", start, END)


@dataclass
class AlertLife:
    origin: pd.Timestamp  # opening cycle
    threshold: float
    horizon: int
    resolved_origin: pd.Timestamp | None = None
    open_at: list[pd.Timestamp] = field(default_factory=list)  # cycle times (origin + 1 h) it was open


def run_rule(rule: AlertRule, y: pd.Series, preds: pd.DataFrame, bands: dict) -> tuple[list[AlertLife], dict]:
    """Replay the hourly cycles of the test period through ``decide``; returns alerts and open times."""
    lives: list[AlertLife] = []
    state: OpenState | None = None
    current: AlertLife | None = None
    open_cycles: set[pd.Timestamp] = set()  # cycle times at which an alert was open after that cycle
    thresholds: dict[pd.Timestamp, float | None] = {}
    for origin, g in preds.groupby("origin", sort=True):
        o = origin.to_pydatetime()
        points = []
        for row in g.itertuples():
            target = o + row.horizon * HOUR
            th = rule.threshold(bands[(origin, row.horizon)])
            if row.horizon == 1:
                thresholds[origin + pd.Timedelta(hours=1)] = th
            points.append(Point(row.horizon, target, float(row.artq), float(row.upper), th))
        actual = y.get(origin)
        actual = None if actual is None or np.isnan(actual) else float(actual)
        d = decide(rule, o, points, actual, rule.threshold(bands[(origin, 0)]), state)
        if d.action == "open":
            current = AlertLife(origin, d.first.threshold, d.first.horizon)
            lives.append(current)
            state = OpenState(last_origin=o)
        elif d.action == "update":
            state = OpenState(last_origin=o, clear_since=d.clear_since)
        elif d.action == "resolve":
            current.resolved_origin = origin
            state, current = None, None
        if state is not None:
            open_cycles.add(origin + pd.Timedelta(hours=1))
    return lives, {"open_cycles": open_cycles, "thresholds": thresholds}


def precompute_bands(y: pd.Series, origins: pd.DatetimeIndex) -> dict:
    """Bands per (origin, horizon) with the production function; horizon 0 = the origin hour itself."""
    out = {}
    span = pd.Timedelta(weeks=HOUR_OF_WEEK_WEEKS)
    for origin in origins:
        window = y.loc[origin - span + pd.Timedelta(hours=1): origin].dropna()
        history = {t.to_pydatetime(): float(v) for t, v in window.items()}
        o = origin.to_pydatetime()
        for h in range(7):
            out[(origin, h)] = bands_for(history, o, o + h * HOUR)
    return out


def score(rule_name: str, lives: list[AlertLife], info: dict, y: pd.Series, incidents: list,
          test_start: pd.Timestamp, test_end: pd.Timestamp, thresholds: dict) -> dict:
    """``thresholds``: the *reference* line (hour -> ms) every rule is judged against, so a rule
    with a low threshold cannot make its own alerts "true" by lowering the bar."""
    open_cycles = info["open_cycles"]

    def warned_by(t: pd.Timestamp) -> bool:
        """An alert was open after the cycle at ``t`` and still open one hour later (the event's start):
        the analyst had a standing warning at least 1 h before, not one that had already resolved."""
        return t in open_cycles and (t + pd.Timedelta(hours=1)) in open_cycles

    inc_rows = []
    for inc in incidents:
        start = pd.Timestamp(inc.start).floor("h")
        end = pd.Timestamp(inc.end).ceil("h")
        if start < test_start + pd.Timedelta(hours=7) or end > test_end:
            continue  # the alerts must have had the chance to see it coming, and to see it end
        during = y.loc[start: end - pd.Timedelta(hours=1)]
        peak = during.idxmax() if during.notna().any() else start
        breached = any((thresholds.get(t) is not None and v >= thresholds[t]) for t, v in during.items() if not np.isnan(v))
        inc_rows.append({
            "tier": inc.tier, "start": start.isoformat(), "hours": int((end - start) / pd.Timedelta(hours=1)),
            "peak_hour": peak.isoformat(), "breached_threshold": bool(breached),
            "ahead_of_start": warned_by(start - pd.Timedelta(hours=1)),
            "ahead_of_peak": warned_by(peak - pd.Timedelta(hours=1)),
            "during": any(t in open_cycles for t in pd.date_range(start, end, freq="h")),
        })
    # breach episodes: consecutive hours with actual >= the rule's threshold for that hour
    breaches, run = [], None
    for t in pd.date_range(test_start + pd.Timedelta(hours=1), test_end, freq="h"):
        th, v = thresholds.get(t), y.get(t)
        hit = th is not None and v is not None and not np.isnan(v) and v >= th
        if hit and run is None:
            run = t
        if not hit and run is not None:
            breaches.append((run, t))
            run = None
    breach_rows = [{"start": s.isoformat(), "hours": int((e - s) / pd.Timedelta(hours=1)),
                    "ahead": warned_by(s - pd.Timedelta(hours=1))} for s, e in breaches
                   if s >= test_start + pd.Timedelta(hours=7)]
    incident_hours = set()
    for inc in incidents:
        incident_hours.update(pd.date_range(pd.Timestamp(inc.start).floor("h"), pd.Timestamp(inc.end).ceil("h"), freq="h"))
    false = 0
    for a in lives:
        last = max(a.resolved_origin or test_end, a.origin + pd.Timedelta(hours=6))
        hours = pd.date_range(a.origin + pd.Timedelta(hours=1), last, freq="h")
        real = any(thresholds.get(t) is not None and not np.isnan(y.get(t, np.nan)) and y.get(t) >= thresholds[t] for t in hours)
        if not real and not any(t in incident_hours for t in hours):
            false += 1
    days = (test_end - test_start) / pd.Timedelta(days=1)
    n_inc = len(inc_rows)
    impactful = [r for r in inc_rows if r["breached_threshold"]]
    share = lambda rows, k: (sum(r[k] for r in rows) / len(rows)) if rows else None
    return {
        "rule": rule_name, "alerts": len(lives), "false_alerts": false, "test_days": days,
        "false_alerts_per_day": false / days, "alerts_per_day": len(lives) / days,
        "incidents": n_inc, "incidents_ahead_of_start": share(inc_rows, "ahead_of_start"),
        "incidents_ahead_of_peak": share(inc_rows, "ahead_of_peak"), "incidents_detected": share(inc_rows, "during"),
        "impactful_incidents": len(impactful), "impactful_ahead_of_peak": share(impactful, "ahead_of_peak"),
        "breaches": len(breach_rows), "breaches_ahead": share(breach_rows, "ahead"),
        "incident_rows": inc_rows,
    }


def pooled(results: list[dict]) -> dict:
    """Totals over seeds per rule (weighted by counts, not an average of shares)."""
    out = {}
    for rule in RULES:
        rs = [r for r in results if r["rule"] == rule]
        inc = [row for r in rs for row in r["incident_rows"]]
        imp = [row for row in inc if row["breached_threshold"]]
        n_b = sum(r["breaches"] for r in rs)
        days = sum(r["test_days"] for r in rs)
        f = lambda rows, k: sum(x[k] for x in rows) / len(rows) if rows else float("nan")
        out[rule] = {
            "incidents": len(inc), "ahead_of_start": f(inc, "ahead_of_start"), "ahead_of_peak": f(inc, "ahead_of_peak"),
            "detected": f(inc, "during"), "impactful": len(imp), "impactful_ahead_of_peak": f(imp, "ahead_of_peak"),
            "breaches": n_b, "breaches_ahead": (sum((r["breaches_ahead"] or 0) * r["breaches"] for r in rs) / n_b) if n_b else float("nan"),
            "alerts_per_day": sum(r["alerts"] for r in rs) / days, "false_alerts_per_day": sum(r["false_alerts"] for r in rs) / days,
            "test_days": days,
        }
    return out


def markdown(table: dict, meta: dict) -> str:
    pc = lambda x: "–" if math.isnan(x) else f"{100 * x:.0f} %"
    lines = [
        "# Early-warning alerts on simulated incidents", "",
        f"Command: `{meta['command']}`  ",
        (f"Seeds {meta['seeds']}, {meta['test_weeks']} test weeks each "
         f"({meta['train_weeks']} weeks of history before), weekly refit; {meta['seconds']:.0f} s."),
        "",
        ("| rule | incidents | alerted >= 1 h before start | >= 1 h before ART peak | detected during | "
         "breach episodes | breaches alerted >= 1 h ahead | alerts / day | false alerts / day |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rule, r in table.items():
        lines.append(f"| {rule} | {r['incidents']} | {pc(r['ahead_of_start'])} | {pc(r['ahead_of_peak'])} | {pc(r['detected'])} | "
                     f"{r['breaches']} | {pc(r['breaches_ahead'])} | {r['alerts_per_day']:.2f} | {r['false_alerts_per_day']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-weeks", type=int, default=8)
    ap.add_argument("--train-weeks", type=int, default=8)
    args = ap.parse_args()
    t = time.perf_counter()
    settings = ForecastSettings(training_days=7 * args.train_weeks, min_training_hours=24 * 28, seed=0)
    results = []
    for seed in range(1, args.seeds + 1):
        frame, incidents = simulated_frame(seed, 7 * (args.train_weeks + args.test_weeks) + 1)
        test_hours = 7 * 24 * args.test_weeks
        exog = [c for c in frame.columns if c != "art"]
        cached = CACHE / f"preds_seed{seed}_train{args.train_weeks}_test{args.test_weeks}.csv"
        if cached.is_file():
            preds = pd.read_csv(cached)
            preds["origin"] = pd.to_datetime(preds["origin"], utc=True)
        else:
            preds = backtest_frame(frame, "art", exog, test_hours=test_hours, refit_every=168, settings=settings).predictions
            CACHE.mkdir(exist_ok=True)
            preds.to_csv(cached, index=False)
        y = frame["art"]
        origins = pd.DatetimeIndex(sorted(preds["origin"].unique()))
        bands = precompute_bands(y, origins)
        test_start, test_end = origins[0], origins[-1]
        # the reference line: actual ART at or above the p99 of the last 30 days is a breach worth a warning
        reference = {o + pd.Timedelta(hours=1): REFERENCE.threshold(bands[(o, 1)]) for o in origins}
        for name, rule in RULES.items():
            lives, info = run_rule(rule, y, preds, bands)
            r = score(name, lives, info, y, incidents, test_start, test_end, reference)
            r["seed"] = seed
            results.append(r)
            print(f"seed {seed} | {name}: {r['incidents']} incidents, ahead of start {r['incidents_ahead_of_start']}, "
                  f"ahead of peak {r['incidents_ahead_of_peak']}, breaches ahead {r['breaches_ahead']}, "
                  f"false/day {r['false_alerts_per_day']:.2f}", flush=True)
    table = pooled(results)
    meta = {"command": "python bench/alerts/run.py " + " ".join(sys.argv[1:]), "seeds": list(range(1, args.seeds + 1)),
            "test_weeks": args.test_weeks, "train_weeks": args.train_weeks, "seconds": time.perf_counter() - t}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "alerts.md").write_text(markdown(table, meta))
    (out / "alerts.json").write_text(json.dumps({"meta": meta, "pooled": table, "per_seed": results}, indent=1, default=str))
    print(markdown(table, meta))


if __name__ == "__main__":
    main()
