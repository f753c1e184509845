"""Foreground servers (``artq serve``, ``artq dashboard``, ``artq simulator``) stop the same way on
Ctrl-C, ``kill`` and ``docker stop``: their own cleanup runs (a running cycle finishes, the database
pool closes)."""

from __future__ import annotations

import signal
import threading


def stop_on_interrupt_or_term() -> None:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread.

    Also where SIGINT was inherited as ignored: a shell starts a background job (``cmd &`` in a
    script, or under ``nohup``) with SIGINT ignored, and Python then leaves ``kill -INT`` without
    effect, so such a server could only be killed."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set there; an embedding program keeps its own
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
