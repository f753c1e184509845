"""Render bench/storage/results.json as the README's tables and PLANS.md (the EXPLAIN of every hot query).

    .venv/bin/python bench/storage/report.py            # prints the tables, writes PLANS.md
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    report = json.loads((HERE / "results.json").read_text())
    steps = report["steps"]
    head = " | ".join(f"{s['sizes']['observations']['rows'] / 1e6:.1f} M" for s in steps)
    print(f"| query (median of 3, first run in brackets) | {head} |")
    print("| --- |" + " --- |" * len(steps))
    for name in steps[0]["queries"]:
        cells = []
        for s in steps:
            q = s["queries"].get(name, {})
            cells.append(q.get("error", "")[:40] if "error" in q else f"{q['median_ms']:.0f} ms ({q['first_ms']:.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("| size and ingest | " + head + " |")
    print("| --- |" + " --- |" * len(steps))
    for table in steps[0]["sizes"]:
        print(f"| {table}: rows | " + " | ".join(f"{s['sizes'][table]['rows']:,}" for s in steps) + " |")
        print(f"| {table}: bytes/row (data + index) | " + " | ".join(
            f"{s['sizes'][table]['bytes_per_row']} ({s['sizes'][table]['data_bytes'] / s['sizes'][table]['rows']:.0f} + "
            f"{s['sizes'][table]['index_bytes'] / s['sizes'][table]['rows']:.0f})" for s in steps) + " |")
    print("| partitions per table | " + " | ".join(str(s["sizes"]["observations"]["partitions"]) for s in steps) + " |")
    print("| bulk generation, rows/s (all three tables) | " + " | ".join(
        f"{s['generate_rows_per_s (observations + forecast rows)']:,}" for s in steps) + " |")
    print("| index build after the load, s | " + " | ".join(str(s["index_build_s"]) for s in steps) + " |")
    for label in steps[0]["ingest"]:
        print(f"| ingest one hour, {label} | " + " | ".join(
            f"{s['ingest'][label]['seconds']} s ({s['ingest'][label]['rows_per_s']:,} rows/s)" for s in steps) + " |")

    last = steps[-1]
    out = [f"# EXPLAIN of the hot queries at {last['sizes']['observations']['rows']:,} observations",
           "", (f"Written by `bench/storage/report.py` from `results.json` (origin t0 = {last['t0']}). "
           "One plan per statement shape; long statements cut at 600 characters."), ""]
    for name, plans in last["plans"].items():
        out += [f"## {name}", ""]
        for p in plans:  # run.py kept one per statement shape
            sql = re.sub(r"IN \(('[^']*', ){3,}('[^']*')\)", "IN (... 100 applications ...)", p["sql"])
            out += ["```sql", sql.strip(), "```", "", "| table | partitions | type | key | rows | Extra |",
                    "| --- | --- | --- | --- | --- | --- |"]
            for r in p["plan"]:
                parts = r["partitions"] or ""
                if parts.count(",") > 3:
                    parts = f"all {parts.count(',') + 1}"
                out.append(f"| {r['table']} | {parts} | {r['type']} | {r['key']} | {r['rows']} | {r['Extra']} |")
            out.append("")
    (HERE / "PLANS.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
