"""``artq serve``: the embedded default on its own — the dashboard plus the hourly cycle, in one process.

No broker, no beat: a scheduler thread runs every configured application's cycle in-process
(``run_cycle(..., use_broker=False, trigger="serve")``) ``dashboard.cycle_minute`` minutes past
each hour, and once at start when the last complete hour has no completed cycle yet. The HTTP
server answers in its own threads meanwhile; Ctrl-C lets a running cycle finish, then stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from artq.config import Settings
from artq.errors import ArtqError, ConfigError
from artq.stopping import stop_on_interrupt_or_term
from artq.storage.models import DONE
from artq.timeutil import HOUR, as_utc, floor_hour, last_complete_hour, utcnow
RETRY_AFTER = timedelta(minutes=10)  # a failed hour is tried again this much later ...
MAX_TRIES = 3  # ... at most this many times in all


class HourlyCycles:
    """Decides which (application, origin) cycles are due and runs them, one at a time.

    ``run(application, origin)`` runs one cycle and returns run_cycle's dict; ``done(application,
    origin)`` says whether the run table already has a completed cycle. Both are passed in, so the
    timing rules are tested with a plain clock and the real cycle runs in ``artq serve``.
    """

    def __init__(self, settings: Settings, run: Callable[[str, datetime], dict], done: Callable[[str, datetime], bool],
                 say: Callable[[str], None] = print, names: Callable[[], list[str]] | None = None):
        self.settings = settings
        self.run = run
        self.done = done
        self.say = say
        # the applications to cycle, asked for each hour (artq serve reads the applications table)
        self.names = names or (lambda: [a.name for a in settings.applications])
        self.tries: dict[tuple[str, datetime], list[datetime]] = {}

    def due(self, now: datetime, *, starting: bool = False) -> list[tuple[str, datetime]]:
        """Cycles to run now: the last complete hour's, once past the cycle minute (or at start)."""
        now = as_utc(now)
        if not starting and now.minute < self.settings.dashboard.cycle_minute:
            return []
        origin = last_complete_hour(now)
        out = []
        for name in self.names():
            tries = self.tries.get((name, origin), [])
            if len(tries) >= MAX_TRIES or (tries and now - tries[-1] < RETRY_AFTER):
                continue
            if not self.done(name, origin):
                out.append((name, origin))
        return out

    def run_due(self, now: datetime, *, starting: bool = False, stop: threading.Event | None = None) -> list[dict]:
        results = []
        for application, origin in self.due(now, starting=starting):
            if stop is not None and stop.is_set():
                break
            self.tries.setdefault((application, origin), []).append(as_utc(now))
            try:
                out = self.run(application, origin)
            except ArtqError as exc:  # a cycle already running, no source configured, ...
                out = {"application": application, "origin": origin.isoformat(), "status": "failed", "failed": {},
                       "error": str(exc)}
            results.append(out)
            self.say(describe(out))
        return results

    def next_check(self, now: datetime) -> datetime:
        """When to look again: the next cycle minute, or the retry time of a failed hour, whichever comes first."""
        now = as_utc(now)
        at = floor_hour(now) + timedelta(minutes=self.settings.dashboard.cycle_minute)
        if at <= now:
            at += HOUR
        retries = [t[-1] + RETRY_AFTER for (_, o), t in self.tries.items()
                   if o == last_complete_hour(now) and len(t) < MAX_TRIES and t[-1] + RETRY_AFTER > now]
        return min([at, *retries])


def describe(out: dict[str, Any]) -> str:
    """One line per cycle for the serve log."""
    origin = as_utc(datetime.fromisoformat(out["origin"]))
    head = f"cycle {out['application']} {origin:%Y-%m-%d %H:00} UTC: {out['status']}"
    if out["status"] == "succeeded":
        return f"{head} ({len(out.get('horizons_ok', []))} horizons)"
    failed = out.get("failed") or {}
    why = "; ".join(f"h{h}: {e}" for h, e in sorted(failed.items(), key=lambda kv: int(kv[0]))) or out.get("error") or ""
    return f"{head}: {why}"[:600]


def _loop(cycles: HourlyCycles, stop: threading.Event, busy: threading.Event) -> None:
    first = True
    while not stop.is_set():
        busy.set()
        try:
            cycles.run_due(utcnow(), starting=first, stop=stop)
        except Exception as exc:  # noqa: BLE001 - the scheduler must outlive one bad hour (database down, ...)
            logging.getLogger(__name__).exception("serve: the hourly cycle failed")
            cycles.say(f"hourly cycle failed: {exc}; trying again at the next check")
        finally:
            busy.clear()
        first = False
        wait = (cycles.next_check(utcnow()) - utcnow()).total_seconds()
        stop.wait(max(1.0, wait))


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind; keep loopback unless analysts reach it over the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free port).")] = 8050,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to artq.yml (default: $ARTQ_CONFIG, ./artq.yml, or the embedded defaults).")] = None,
    simulate: Annotated[bool, typer.Option("--simulate", help="No controller: forecast the built-in simulator, as `artq demo` does.")] = False,
) -> None:
    """Serve the dashboard and run the hourly cycle in this process (embedded default: SQLite, no broker).

    Each application's cycle runs `dashboard.cycle_minute` minutes past every hour, and once at
    start when the last complete hour has none yet. With a broker configured, beat and the
    workers run the cycle instead: use `artq dashboard` there. Ctrl-C stops.

    Example: artq serve --simulate --port 8050
    """
    from artq.config import load_settings
    from artq.dashboard.alerts import rule_for
    from artq.dashboard.server import access_note, make_server
    from artq.storage import migrate

    settings = load_settings(config)
    if not settings.embedded:
        raise ConfigError("a broker is configured (`celery.broker_url` / ARTQ_BROKER_URL): beat and the workers run the "
                          "hourly cycle there. Serve the page with `artq dashboard`, or unset the broker.")
    if simulate:
        settings.source.simulate = True
    settings.require_source()
    for app in settings.applications:
        rule_for(settings, app.name)
    migrate(settings.database_url)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(settings, host, port)
    from artq.pipeline import Runtime

    listing = Runtime(settings)  # reads the applications table each hour: `artq apps add` needs no restart
    cycles = HourlyCycles(settings, run=_runner(settings), done=_done_check(server.db), say=_say,
                          names=lambda: list(listing.applications()))
    stop, busy = threading.Event(), threading.Event()
    scheduler = threading.Thread(target=_loop, args=(cycles, stop, busy), name="artq-hourly", daemon=True)
    typer.echo(f"artq serve: dashboard on {server.url}; hourly cycle of {len(listing.applications())} application(s) "
               f"{settings.dashboard.cycle_minute} min past each hour, in-process; {access_note(settings, host)}; Ctrl-C stops")
    scheduler.start()
    stop_on_interrupt_or_term()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if busy.is_set():
            typer.echo("artq serve: letting the running cycle finish (Ctrl-C again quits now)")
        try:
            scheduler.join(timeout=600)
        except KeyboardInterrupt:
            pass
        server.server_close()
        server.db.dispose()
        listing.close()
        typer.echo("artq serve: stopped")


def _say(line: str) -> None:
    from rich.console import Console

    Console(highlight=False).print(Text(f"{utcnow():%H:%M:%S} {line}"), soft_wrap=True)


def _runner(settings: Settings) -> Callable[[str, datetime], dict]:
    def run(application: str, origin: datetime) -> dict:
        from artq.pipeline import Runtime
        from workers.canvas import run_cycle

        rt = Runtime(settings)
        try:
            return run_cycle(rt, application, origin, use_broker=False, trigger="serve")
        finally:
            rt.close()

    return run


def _done_check(db) -> Callable[[str, datetime], bool]:
    from sqlalchemy import select

    from artq.storage.models import PipelineRun

    def done(application: str, origin: datetime) -> bool:
        with db.session() as s:
            status = s.scalar(select(PipelineRun.status).where(PipelineRun.application == application, PipelineRun.origin == origin))
        return status in DONE

    return done


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
