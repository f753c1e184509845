"""The compose stack works as documented: cycles, Flower's password, the dashboard, retraining.

Runs against the stack of ``make test-deploy`` (see conftest.py); deselected otherwise.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

from tests.deploy.conftest import (
    APP,
    ROOT,
    origin_hours_ago,
    read_env_file,
    run,
    wait_done,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def test_every_long_running_service_is_up_and_one_shot_jobs_exited_zero(stack):
    states = {}
    for line in stack.compose("ps", "-a", "--format", "json").stdout.splitlines():
        for item in (json.loads(line) if line.startswith("[") else [json.loads(line)]):
            states[item["Name"]] = (item["Service"], item["State"], item.get("Health", ""), item.get("ExitCode", 0))
    services = {s for s, *_ in states.values()}
    assert {"redis", "mariadb", "migrate", "simulator", "bootstrap-backfill", "bootstrap-train", "worker-fetch",
            "worker-predict", "worker-refresh", "worker-train", "beat", "flower", "dashboard", "preflight"} <= services
    for name, (service, state, health, code) in states.items():
        if service in ("preflight", "migrate", "bootstrap-backfill", "bootstrap-train"):
            assert (state, code) == ("exited", 0), f"{name}: {state} ({code})"
        else:
            assert state == "running" and health in ("", "healthy"), f"{name}: {state} {health}"
    assert len(stack.containers("worker-predict")) == 2


def test_no_secret_on_any_command_line_of_the_host(stack):
    """`ps` on the host sees every container's processes: no password may be among their arguments."""
    secrets = [stack.env[k] for k in ("REDIS_PASSWORD", "MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD", "FLOWER_PASSWORD")]
    ps = run(["ps", "-eww", "-o", "args="]).stdout
    assert "redis-server" in ps and "flower" in ps  # the processes are visible to this check
    for secret in secrets:
        assert secret not in ps, "a password is visible in `ps` on the host"


def test_each_service_receives_only_the_secrets_it_uses(stack):
    def env_of(service):
        text = stack.inspect(stack.container(service), "{{range .Config.Env}}{{println .}}{{end}}")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    redis_pw, db_pw = stack.env["REDIS_PASSWORD"], stack.env["MARIADB_PASSWORD"]
    dashboard = " ".join(env_of("dashboard").values())
    assert db_pw in dashboard and redis_pw not in dashboard
    beat = " ".join(env_of("beat").values())
    assert redis_pw in beat and db_pw not in beat
    predict = env_of("worker-predict")
    assert not predict.get("ARTQ_SOURCE_CLIENT_SECRET") and "FLOWER_BASIC_AUTH" not in predict
    assert "MARIADB_ROOT_PASSWORD" not in " ".join(env_of("worker-train"))


def test_a_cycle_from_a_container_stores_six_forecasts_over_both_predict_replicas(stack, predict_logs):
    origin = origin_hours_ago(2)
    code, out = wait_done(stack.run_cycle(origin), timeout=300)
    assert code == 0, out
    assert "6 of 6 horizons" in out
    rows = stack.forecasts(origin)
    assert sorted(h for h, _ in rows) == [1, 2, 3, 4, 5, 6]
    assert [s for s, *_ in stack.run_status(origin)] == ["succeeded"]
    stack.exec("worker-refresh", "true")  # the replicas' log lines arrive within a moment
    runs = stack.predict_runs(predict_logs, origin)
    assert sorted(h for hs in runs.values() for h in hs) == [1, 2, 3, 4, 5, 6], runs
    assert all(runs.values()), f"one predict replica did no horizon: {runs}"


def test_flower_answers_401_without_credentials(stack):
    base = f"http://127.0.0.1:{stack.env['FLOWER_PORT']}"
    for path in ("/", "/api/workers"):
        try:
            urllib.request.urlopen(base + path, timeout=10)
            raise AssertionError(f"Flower {path} answered without credentials")
        except urllib.error.HTTPError as err:
            assert err.code == 401, (path, err.code)
    req = urllib.request.Request(base + "/api/workers?refresh=1")  # asks the workers now
    token = base64.b64encode(f"{stack.env['FLOWER_USER']}:{stack.env['FLOWER_PASSWORD']}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    workers = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert len(workers) >= 5, sorted(workers)  # fetch, 2 x predict, refresh, train


def test_dashboard_renders_in_chromium_on_the_host(stack):
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{stack.env['DASHBOARD_PORT']}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url, timeout=60_000)
            page.wait_for_selector(f"body[data-app='{APP}']", timeout=60_000)
            page.wait_for_selector("#next tbody tr", timeout=30_000)
            assert page.locator("#next tbody tr").count() == 6
            assert page.locator("#runs tbody tr").count() >= 1
            assert not errors, errors
        finally:
            browser.close()


def test_train_delay_from_a_container_registers_a_model_every_predict_replica_uses(stack, predict_logs):
    # tune=True: a new fingerprint, so a new version even on the same data (an unchanged
    # training is not registered again)
    code = (
        "import json; from workers.tasks import train; "
        f"print(json.dumps(train.delay({APP!r}, tune=True).get(timeout=900)))"
    )
    out = stack.exec("worker-train", "python", "-c", code, timeout=960).stdout
    result = json.loads(out.strip().splitlines()[-1])
    version = result["version"]
    listed = stack.exec("worker-train", "artq", "models", "list", "--app", APP).stdout
    assert version in listed
    if not result.get("promoted"):  # not better than the champion on the same data: promote it by hand
        stack.exec("worker-train", "artq", "models", "promote", version, "--app", APP)
    origin = origin_hours_ago(3)
    code_, out = wait_done(stack.run_cycle(origin), timeout=300)
    assert code_ == 0, out
    rows = stack.forecasts(origin)
    assert [h for h, _ in rows] == [1, 2, 3, 4, 5, 6]
    assert {v for _, v in rows} == {version}, rows
    stack.exec("worker-refresh", "true")
    runs = stack.predict_runs(predict_logs, origin)
    assert all(runs.values()), f"every replica should forecast with {version}: {runs}"
    for watch in predict_logs.values():
        stamp = origin.strftime("%Y-%m-%dT%H:%M:%S")
        versions = {m.group(1) or m.group(2) for _, line in watch.matching(r"artq\.cycle\.predict\[.*succeeded.*" + stamp)
                    for m in [re.search(rf"'model_version': '([^']+)'|'versions': {{[^}}]*'{APP}': '([^']+)'", line)] if m}
        assert versions == {version}, (watch.container, versions)


def test_the_stack_refuses_the_placeholders_of_env_example(stack, tmp_path):
    """`.env.example` as is: nothing starts; the one line names the variable, not the value."""
    example = read_env_file(ROOT / ".env.example")
    env = read_env_file(stack.env_file)
    merged = {**example, **{k: env[k] for k in ("ARTQ_IMAGE", "FLOWER_PORT", "DASHBOARD_PORT")}}
    path = tmp_path / "placeholders.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in merged.items()))
    project = f"{stack.project}-placeholders"
    base = ["docker", "compose", "-p", project, "--env-file", str(path), "-f", "docker-compose.yml"]
    try:
        proc = run([*base, "up", "-d", "--no-build", "redis", "mariadb"], check=False, cwd=ROOT)
        assert proc.returncode != 0, proc.stdout + proc.stderr
        assert "preflight" in proc.stdout + proc.stderr
        logs = run([*base, "logs", "preflight"], cwd=ROOT).stdout
        assert "CHANGE-ME placeholder" in logs
        for name in ("MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD"):
            assert name in logs, f"the refusal should name {name}"
        for secret in (v for v in example.values() if "CHANGE-ME" in v):
            assert secret not in logs
        running = run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"]).stdout.split()
        assert running == [], "a service started with placeholder secrets"
    finally:
        run([*base, "down", "-v", "-t", "1"], check=False, cwd=ROOT)
