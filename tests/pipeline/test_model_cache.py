"""A worker's model cache is bounded by `operations.model_cache_size`."""

from __future__ import annotations

from artq.pipeline import Runtime, train_step
from artq.timeutil import HOUR


def test_a_worker_keeps_at_most_model_cache_size_bundles_the_least_recently_used_go(trained_sqlite):
    settings, t0, first = trained_sqlite
    settings.operations.model_cache_size = 1
    rt = Runtime(settings)
    try:
        second = train_step(rt, "ABP", until=t0 - 24 * HOUR)  # a second version: two bundles to hold
        a = rt.bundle("ABP", first["version"])
        assert rt.bundle("ABP", first["version"]) is a  # cached
        rt.bundle("ABP", second["version"])  # the cap is 1: the first goes
        assert rt.bundle("ABP", first["version"]) is not a  # loaded again, a new object
    finally:
        rt.close()
