"""Finding 5 (values half): absurd controller values become recorded gaps, never observations.

A mutating proxy sits in front of the real simulator, as in the review: it rewrites the
application-level ART of every answer to 9.2e18 ms and one tier's calls per minute to a
negative count; ingestion must store neither and say why in the fetch summary.
"""

from __future__ import annotations

import json
from datetime import timedelta

import requests
from sqlalchemy import select

from artq.catalog import MAIN
from artq.pipeline.ingest import fetch_new_hours
from artq.pipeline.runtime import Runtime
from artq.storage import migrate
from artq.storage.models import Observation, SourceGap
from artq.timeutil import last_complete_hour
from tests.conftest import make_settings
from tests.security.servers import http_server

ART_MAIN = "Overall Application Performance|Average Response Time (ms)"
CPM_T1 = "Overall Application Performance|ABPServer1|Calls per Minute"


def mutating_proxy(upstream: str):
    def handle(request, body):
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        resp = requests.request(request.command, upstream + request.path, data=body or None, headers=headers,
                                timeout=30, allow_redirects=False)
        out = resp.content
        if "metric-data" in request.path and resp.status_code == 200:
            doc = json.loads(out)
            for entry in doc:
                for v in entry.get("metricValues", []):
                    if entry["metricPath"] == ART_MAIN:
                        v["count"], v["sum"], v["value"] = 1, 9_200_000_000_000_000_000, 9_200_000_000_000_000_000
                    elif entry["metricPath"] == CPM_T1:
                        v["count"] = -v["count"] - 1
            out = json.dumps(doc).encode()
        return resp.status_code, {}, out

    return http_server(handle)


def test_absurd_and_negative_values_become_gaps_with_reasons(tmp_path, simulator):
    with mutating_proxy(simulator.url) as (proxy, seen):
        settings = make_settings(tmp_path, url=proxy)
        settings.backfill_days = 1
        migrate(settings.database_url)
        rt = Runtime(settings)
        try:
            summary = fetch_new_hours(rt, settings.applications[0], until=last_complete_hour() + timedelta(hours=1))
            with rt.db.session() as s:
                observed = {(o.server, o.metric) for o in s.scalars(select(Observation))}
                art_values = [o.value for o in s.scalars(select(Observation).where(Observation.metric == "art"))]
                gaps = {(g.server, g.metric) for g in s.scalars(select(SourceGap))}
        finally:
            rt.close()
    details = summary.as_dict()
    assert seen, "the fetch went through the proxy"
    assert (MAIN, "art") not in observed and ("ABPServer1", "cpm") not in observed
    assert (MAIN, "cpm") in observed and ("ABPServer1", "art") in observed  # the rest is stored
    assert max(art_values) < 600_000  # no absurd ART anywhere
    assert {(MAIN, "art"), ("ABPServer1", "cpm")} <= gaps
    assert details["implausible"] == 2 * 24
    examples = " | ".join(details["implausible_examples"])
    assert "main art" in examples and "9.2e+18 is above the plausible maximum 600000 (source.plausible.art.max)" in examples
    assert "ABPServer1 cpm" in examples and "negative count, sum or value from the controller" in examples


def test_plausible_bounds_are_configurable_and_validated(tmp_path):
    import pytest

    from artq.config import load_settings, plausible_bounds
    from artq.errors import ConfigError

    path = tmp_path / "artq.yml"
    path.write_text("source: {plausible: {art: {max: 120000}}}")
    assert plausible_bounds(load_settings(path, env={}).source.plausible)["art"] == (0.0, 120000.0)
    for text, message in [
        ("source: {plausible: {art: {max: .nan}}}", "`source.plausible.art.max` must be a finite number. Got nan."),
        ("source: {plausible: {art: {min: 10, max: 5}}}", "`source.plausible.art.max` must be above its `min`."),
        ("source: {plausible: {latency: {max: 5}}}", "unknown metric `source.plausible.latency`"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_settings(path, env={})
        assert message in str(err.value)
