"""Plot one simulated week: the main server's ART against its sub-servers' loads.

    .venv/bin/python docs/plot_simulated_week.py            # writes docs/simulated-week.png

Picks, for the seed, the most recent complete week (Monday to Monday) before --before that holds
an incident, and annotates it. Needs matplotlib (the project's `bench` extra).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from artq.catalog import MAIN
from artq.sources.simulator import SimApp, SimulatorConfig, World


def pick_week(world: World, app: str, before: datetime) -> datetime:
    """The recent week whose incident lifts the main server's ART the most over its week's median."""
    monday = (before - timedelta(days=before.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    best, best_lift = monday - timedelta(weeks=1), 0.0
    for k in range(1, 16):
        start = monday - timedelta(weeks=k)
        art = world.hourly(app, MAIN, "art", start, start + timedelta(days=7))
        for inc in world.incidents(app, start + timedelta(hours=12), start + timedelta(days=6, hours=12)):
            during = art[(art.index >= inc.start) & (art.index < inc.end)]
            lift = float(during.mean() / art.median()) if during.notna().any() else 0.0
            if lift > best_lift:
                best, best_lift = start, lift
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--app", default="ABP")
    ap.add_argument("--before", default="2026-11-26T00:00Z", help="pick a week ending before this time")
    ap.add_argument("--out", default=str(Path(__file__).with_name("simulated-week.png")))
    args = ap.parse_args()
    before = datetime.fromisoformat(args.before).astimezone(UTC)
    world = World(SimulatorConfig(seed=args.seed, applications=[SimApp(args.app)], now=lambda: before))
    start = pick_week(world, args.app, before)
    end = start + timedelta(days=7)
    tiers = world.apps[args.app].tiers
    art = world.hourly(args.app, MAIN, "art", start, end)
    loads = {t: world.hourly(args.app, t, "cpm", start, end) for t in tiers}
    epm = world.hourly(args.app, MAIN, "epm", start, end)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.2), sharex=True, height_ratios=[1.1, 1], dpi=110)
    ax1.plot(art.index, art.to_numpy(), color="#b2182b", lw=1.6, label=f"{args.app} (main) ART, hourly")
    ax1.set_ylabel("ART (ms)")
    ax1b = ax1.twinx()
    ax1b.fill_between(epm.index, epm.to_numpy(), step="mid", color="#999999", alpha=0.25, lw=0)
    ax1b.set_ylabel("errors / min", color="#777777")
    ax1b.tick_params(axis="y", colors="#777777")
    ax1.set_zorder(ax1b.get_zorder() + 1)
    ax1.patch.set_visible(False)
    ax2.set_title("sub-servers' load (calls per minute, hourly); ▲ releases", fontsize=9, loc="left")
    for t, s in loads.items():
        ax2.plot(s.index, s.to_numpy(), lw=1.0, label=t)
    ax2.set_ylabel("calls / min")
    ax2.legend(ncol=7, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    for inc in world.incidents(args.app, start, end):
        for ax in (ax1, ax2):
            ax.axvspan(inc.start, inc.end, color="#fdae61", alpha=0.35, lw=0)
        window = art[(art.index >= inc.start - timedelta(hours=1)) & (art.index <= inc.end)]
        if window.notna().any():
            peak_t, peak = window.idxmax(), window.max()
            ax1.annotate(
                f"incident on {inc.tier}\n{inc.start:%a %H:%M}-{inc.end:%H:%M} UTC,"
                f" capacity x{inc.capacity_factor:.2f}",
                xy=(peak_t, peak), xytext=(20, -8), textcoords="offset points", fontsize=8,
                arrowprops={"arrowstyle": "->", "lw": 0.8}, va="top",
            )
    for k, d in enumerate(world.deployments(args.app, start, end)):
        kind = "regression" if d.capacity_level < 0.9 else "release"
        ax2.plot([d.at], [0.03], transform=ax2.get_xaxis_transform(), marker="^", ms=7,
                 color="#d7301f" if kind == "regression" else "#4d4d4d", clip_on=False)
        ax2.annotate(f"{kind}: {d.tier}", (d.at, 0.08 + 0.06 * (k % 3)), xycoords=("data", "axes fraction"),
                     xytext=(5, 0), textcoords="offset points", fontsize=7, color="#4d4d4d")
    for k, sg in enumerate(world.surges(args.app, start, end)):
        a, b = (datetime.fromtimestamp(x * 60, UTC) for x in (sg.start_min, sg.end_min))
        ax2.axvspan(a, b, color="#92c5de", alpha=0.35, lw=0)
        ax2.annotate(f"traffic surge +{sg.amplitude:.0%}", (b, 0.97 - 0.07 * (k % 2)), xycoords=("data", "axes fraction"),
                     xytext=(3, 0), textcoords="offset points", fontsize=7, va="top", color="#2166ac")
    gaps = art[art.isna()]
    for t in gaps.index:
        ax1.axvspan(t, t + timedelta(hours=1), color="#cccccc", alpha=0.6, lw=0)
    ax1.set_title(
        f"Simulated week {start:%Y-%m-%d}..{end - timedelta(days=1):%m-%d} (seed {args.seed}): main-server ART "
        "follows the sub-servers' load non-linearly", fontsize=10,
    )
    ax1.legend(loc="upper left", fontsize=8, frameon=False)
    ax2.xaxis.set_major_locator(mdates.DayLocator())
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%a %d"))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.margins(x=0)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
