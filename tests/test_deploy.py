"""The deployment files stay true to the code: Dockerfile, docker-compose.yml, .env.example.

Static checks, no Docker engine needed (the image is built and the stack started for real by
``make test-deploy``, tests/deploy/). Here:

* ``scripts/check-deploy.sh`` runs the real ``docker compose config`` and ``hadolint`` (marked
  ``integration``; always run in CI);
* every command a service runs must exist in the project: the Celery app ``workers``, its
  sub-command and options, every ``-Q`` queue in ``workers.factory.QUEUES``, every ``artq <cmd>``
  among the registered CLI commands with the options it passes. A command renamed or removed
  in the code fails here, not at 3 a.m. in production;
* the deployment rules: one service builds the image; each service gets only the secrets of its
  role; no secret on a command line; grace periods cover each worker's longest task; the
  Dockerfile installs the dependencies in a layer the code does not invalidate.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
MODELS_DIR = "/var/lib/artq/models"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # safe_load resolves the `<<: *artq` merges


def _argv(command: str | list) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _artq_services() -> dict[str, list[str]]:
    """Services that run the artq image, with their command as argv."""
    services = _compose()["services"]
    return {
        name: _argv(svc["command"])
        for name, svc in services.items()
        if "ARTQ_IMAGE" in str(svc.get("image", "")) and "command" in svc
    }


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


_PROBE = """
import json, sys
from celery import Celery
from celery.app.utils import find_app
app = find_app(sys.argv[1])  # exactly what `celery -A NAME` does
from workers.factory import QUEUES
print(json.dumps({"is_celery": isinstance(app, Celery), "main": app.main, "queues": [q.name for q in QUEUES]}))
"""


# What the containers always have: a broker and a source (neither is contacted by the probes).
PROBE_ENV = {"ARTQ_BROKER_URL": "redis://127.0.0.1:6379/0", "ARTQ_RESULT_BACKEND": "redis://127.0.0.1:6379/1",
             "ARTQ_SOURCE_URL": "http://simulator:8090"}


@functools.cache
def _celery_app(name: str) -> dict:
    """Loads ``-A NAME`` in a fresh interpreter from the project root, as the container does.

    A subprocess, because inside pytest ``workers`` may resolve to ``tests/workers``.
    """
    proc = subprocess.run([sys.executable, "-c", _PROBE, name], check=False, cwd=ROOT, env={**os.environ, **PROBE_ENV},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"`celery -A {name}` cannot load the app:\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _defined_queues() -> set[str]:
    return set(_celery_app("workers")["queues"])


def _celery_cli() -> click.Group:
    from celery.bin.celery import celery

    return celery


def _option_names(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def _check_options(where: str, args: list[str], known: set[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            opt = arg.split("=", 1)[0]
            assert opt in known, f"{where}: option {opt!r} is not accepted; known options: {sorted(known)}"


def _split_celery(argv: list[str]) -> tuple[str, str, list[str]]:
    """``celery -A APP SUB ARGS...`` -> (APP, SUB, ARGS); global options are checked here."""
    cli = _celery_cli()
    app = None
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        opt, eq, value = argv[i].partition("=")
        assert opt in _option_names(cli), f"{argv}: {opt!r} is not a global celery option"
        if opt in ("-A", "--app"):
            app = value if eq else argv[i + 1]
        i += 1 if eq or opt in ("-C", "--no-color", "-q", "--quiet", "--skip-checks") else 2
    assert app, f"{argv}: celery needs `-A workers`"
    assert i < len(argv), f"{argv}: no celery sub-command"
    return app, argv[i], argv[i + 1:]


def _queues(args: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(args):
        if arg in ("-Q", "--queues"):
            out += args[i + 1].split(",")
        elif arg.startswith(("-Q=", "--queues=")):
            out += arg.split("=", 1)[1].split(",")
        elif arg.startswith("-Q") and len(arg) > 2:
            out += arg[2:].split(",")
    return out


def check_celery_command(where: str, argv: list[str]) -> list[str]:
    """Asserts a ``celery ...`` command line matches the project; returns its ``-Q`` queues."""
    app_name, sub, args = _split_celery(argv)
    assert app_name == "workers", f"{where}: artq's Celery app is `-A workers`, not {app_name!r}"
    assert _celery_app(app_name)["is_celery"], f"{where}: `-A {app_name}` loads no Celery app"
    cli = _celery_cli()
    assert sub in cli.commands, f"{where}: `celery {sub}` is not a celery command (installed: {sorted(cli.commands)})"
    if sub == "flower":  # flower parses its own (tornado) options
        from flower.options import options

        _check_options(where, [a.replace("_", "-") for a in args], {f"--{name}" for name in options._options})
    else:
        _check_options(where, args, _option_names(cli.commands[sub]))
    queues = _queues(args)
    defined = _defined_queues()
    for q in queues:
        assert q in defined, f"{where}: queue {q!r} is not in workers.factory.QUEUES ({sorted(defined)})"
    return queues


def check_artq_command(where: str, argv: list[str]) -> None:
    from artq.cli import app

    # typer derives a missing name from the function: `init_db` -> `init-db`
    commands = {c.name or c.callback.__name__.replace("_", "-"): c for c in app.registered_commands}
    groups = {g.name or g.typer_instance.info.name: g for g in app.registered_groups}
    assert len(argv) > 1, f"{where}: `artq` with no command"
    name = argv[1]
    assert name in commands or name in groups, (
        f"{where}: `artq {name}` is not a registered CLI command "
        f"(registered: {sorted([*commands, *groups])}); add it to artq/cli or fix docker-compose.yml"
    )
    click_cmd = typer.main.get_command(app)
    cmd = click_cmd.commands[name]
    args = argv[2:]
    while isinstance(cmd, click.Group):  # `artq models promote ...`
        assert args and args[0] in cmd.commands, f"{where}: `{' '.join(argv)}` names no sub-command of `artq {name}`"
        cmd, args = cmd.commands[args[0]], args[1:]
    _check_options(where, args, _option_names(cmd))


def check_command(where: str, argv: list[str]) -> list[str]:
    program = Path(argv[0]).name
    if program == "celery":
        return check_celery_command(where, argv)
    if program == "artq":
        check_artq_command(where, argv)
        return []
    if program == "artq-entrypoint":  # the image's entrypoint, run alone to check the environment
        assert argv[1:] == ["--check"], f"{where}: artq-entrypoint takes only --check"
        assert "--check" in (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
        return []
    raise AssertionError(f"{where}: runs {argv[0]!r}; artq's image runs `celery -A workers ...` or `artq ...`")


# ---- (a) the real tools ---------------------------------------------------------------------


@pytest.mark.integration
def test_check_deploy_script_passes_compose_config_and_hadolint():
    env = {**os.environ, "VENV": str(Path(sys.executable).parents[1])}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "check-deploy.sh")], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"check-deploy failed:\n{proc.stdout}\n{proc.stderr}"
    assert "check-deploy: ok" in proc.stdout


def _copies() -> list[tuple[list[str], str]]:
    """(sources, target) of the Dockerfile's COPY lines from the build context (not --from a stage)."""
    out = []
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            *sources, target = [a for a in rest.split() if not a.startswith("--")]
            out.append((sources, target))
    return out


def _copy_build_context(dest: Path) -> None:
    """What the Dockerfile's COPY lines put in /src (caches left out, as .dockerignore does)."""
    import shutil

    dest.mkdir(parents=True)
    for sources, target in _copies():
        if target.startswith("/"):  # outside the source folder (the entrypoint)
            continue
        for src in sources:
            path = ROOT / src
            into = dest / (Path(target).name if target not in ("./", ".") else path.name)
            if path.is_dir():
                shutil.copytree(path, into, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.sqlite"))
            else:
                shutil.copy2(path, into)


def _pyproject_dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1200)  # installs ~50 packages (mysqlclient from source) into a virtualenv
def test_image_environment_runs_every_role_from_its_install_alone(tmp_path):
    """The Dockerfile's recipe without Docker: a clean virtualenv gets pyproject's dependency list
    (the deps stage), then artq's own wheel with --no-deps from the build context (the wheel
    stage); every role's command starts from it outside the repository (nothing from the tree)."""
    text = DOCKERFILE.read_text()
    assert "['project']['dependencies']" in text, "the deps stage should install pyproject's dependency list"
    assert "pip wheel --no-deps" in text, "artq's wheel should be built without its dependencies"
    src = tmp_path / "src"
    _copy_build_context(src)

    def run(argv, **kw):
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900, **kw)
        assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    venv = tmp_path / "rt"
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", *_pyproject_dependencies()])
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), "."], cwd=src)
    assert [w.name.split("-")[0] for w in wheels.glob("*.whl")] == ["artq"], "only artq's own wheel"
    run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels.glob("*.whl"))])
    # `name==version`, or `name @ file:///...whl` for a wheel installed from a path
    names = {line.split("==")[0].split(" @ ")[0].strip().lower() for line in run([py, "-m", "pip", "freeze"]).splitlines()}
    assert {"artq", "mysqlclient", "xgboost-cpu", "celery", "flower", "packaging"} <= names, sorted(names)
    assert not names & {"pytest", "hypothesis", "playwright", "skforecast", "mlforecast", "matplotlib"}, (
        "test or bench extras leaked into the image"
    )

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "ARTQ_HOME": str(home),
        "ARTQ_MODELS_DIR": str(home / "models"),
        "ARTQ_SOURCE_URL": "http://simulator:8090",  # required by the workers; not contacted
        "ARTQ_BROKER_URL": "redis://127.0.0.1:6379/0",  # not contacted: loads kombu's Redis transport
        "ARTQ_RESULT_BACKEND": "redis://127.0.0.1:6379/1",
    }
    where = run([py, "-c", "import workers, artq; print(workers.__file__, artq.__file__)"], cwd=home, env=env)
    assert str(ROOT) not in where and str(venv) in where, where
    run(["celery", "-A", "workers", "report"], cwd=home, env=env)
    for _service, argv in sorted(_artq_services().items()):
        if argv[0] == "celery":
            _, sub, _ = _split_celery(argv)
            run(["celery", "-A", "workers", sub, "--help"], cwd=home, env=env)
        elif argv[0] == "artq":
            run(["artq", *[a for a in argv[1:] if not a.startswith("-")][:1], "--help"], cwd=home, env=env)
    assert "database schema at revision" in run(["artq", "init-db"], cwd=home, env=env)


# ---- (b) every command exists in the project ------------------------------------------------


@pytest.mark.parametrize("service", sorted(_artq_services()))
def test_compose_service_command_exists_in_project(service):
    check_command(f"docker-compose.yml service {service!r}", _artq_services()[service])


def test_every_queue_has_a_worker_and_every_worker_names_its_queues():
    consumed = set()
    for service, argv in _artq_services().items():
        if argv[:1] == ["celery"] and "worker" in argv:
            queues = _queues(argv)
            assert queues, f"service {service!r}: a worker without -Q would consume every queue"
            consumed.update(queues)
    assert consumed == _defined_queues(), "each queue in workers.factory.QUEUES needs a worker service"


def test_dockerfile_cmd_and_healthcheck_run_project_commands():
    instructions = _dockerfile_instructions()
    cmds = [json.loads(rest) for word, rest in instructions if word == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    check_command("Dockerfile CMD", cmds[-1])
    checks = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert checks, "the Dockerfile has no HEALTHCHECK"
    check = json.loads(checks[-1][checks[-1].index("CMD") + 3:].strip())
    assert check[:2] == ["sh", "-c"], check
    argv = [a for a in shlex.split(check[2]) if not a.startswith(">")]
    app_name, sub, args = _split_celery(argv)
    assert (app_name, sub) == ("workers", "inspect")
    _check_options("Dockerfile HEALTHCHECK", args[1:], _option_names(_celery_cli().commands["inspect"]))


def test_dockerfile_copies_only_what_dockerignore_lets_in():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore and "*" in ignore, ".dockerignore should start from `*` and let in what the build needs"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for sources, _target in _copies():
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies {src!r}, which is not in the repository"
            assert src.rstrip("/") in allowed, f"Dockerfile copies {src!r}, but .dockerignore keeps it out"


def test_exactly_one_beat_and_predict_scales():
    services = _compose()["services"]
    beats = [n for n, argv in _artq_services().items() if argv[:1] == ["celery"] and "beat" in argv]
    assert len(beats) == 1, f"exactly one beat, or every cycle runs twice; got {beats}"
    assert services[beats[0]].get("deploy", {}).get("replicas") == 1
    predict = [n for n, argv in _artq_services().items() if "predict" in _queues(argv)]
    assert predict and all("replicas" in services[n].get("deploy", {}) for n in predict)


def test_flower_requires_authentication_from_its_environment():
    flower = [name for name, argv in _artq_services().items() if "flower" in argv]
    assert len(flower) == 1
    assert not [a for a in _artq_services()[flower[0]] if "auth" in a], "no credentials on Flower's command line"
    auth = str(_compose()["services"][flower[0]]["environment"].get("FLOWER_BASIC_AUTH", ""))
    assert "${FLOWER_USER" in auth and "${FLOWER_PASSWORD" in auth, "Flower reads FLOWER_BASIC_AUTH from the environment"


def test_dependencies_wait_on_health_or_completion():
    services = _compose()["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = spec.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep, condition)
            if condition == "service_healthy":
                healthcheck = services[dep].get("healthcheck", {})
                assert healthcheck.get("test") or (
                    "ARTQ_IMAGE" in str(services[dep].get("image", "")) and not healthcheck.get("disable")
                ), f"{name} waits for {dep} to be healthy, but {dep} has no health check"


def test_models_volume_is_shared_by_the_workers_that_read_or_write_models():
    services = _compose()["services"]
    for name, argv in _artq_services().items():
        queues = _queues(argv)
        if {"train", "predict", "fetch"} & set(queues):  # fetch builds feature rows from the champion
            mounts = services[name].get("volumes", [])
            assert f"models:{MODELS_DIR}" in mounts, f"{name} must mount the models volume at {MODELS_DIR}"
            assert services[name]["environment"]["ARTQ_MODELS_DIR"] == MODELS_DIR
    assert "models" in _compose()["volumes"]


# Which secret-bearing settings each role uses; nothing else may reach its container.
DATABASE = {"ARTQ_DATABASE_URL"}
BROKER = {"ARTQ_BROKER_URL", "ARTQ_RESULT_BACKEND"}
SOURCE = {"ARTQ_SOURCE_CLIENT_ID", "ARTQ_SOURCE_CLIENT_SECRET", "ARTQ_SOURCE_USERNAME", "ARTQ_SOURCE_PASSWORD",
          "ARTQ_SOURCE_ALLOW_INSECURE_HTTP"}
ALERTS = {"ARTQ_ALERTS_WEBHOOK_URL", "ARTQ_ALERTS_WEBHOOK_SECRET"}
DASHBOARD = {"ARTQ_DASHBOARD_USERNAME", "ARTQ_DASHBOARD_PASSWORD", "ARTQ_DASHBOARD_TOKEN"}
COMMON = {"ARTQ_SOURCE_URL", "ARTQ_CONFIG", "ARTQ_MODELS_DIR"}  # not secret: every artq service
ROLE_SETTINGS = {
    "migrate": DATABASE,
    "simulator": SOURCE,
    "bootstrap-backfill": DATABASE | SOURCE,
    "bootstrap-train": DATABASE,
    "worker-fetch": DATABASE | BROKER | SOURCE,
    "worker-predict": DATABASE | BROKER,
    "worker-refresh": DATABASE | BROKER | ALERTS,
    "worker-train": DATABASE | BROKER,
    "beat": BROKER,
    "flower": BROKER | {"FLOWER_BASIC_AUTH"},
    "dashboard": DATABASE | DASHBOARD,
}
NOT_PASSED = {"ARTQ_HOME", "ARTQ_SOURCE_SIMULATE"}  # set by the image / never in a deployment


def test_each_service_gets_exactly_the_settings_of_its_role():
    services = _compose()["services"]
    for name, expected in ROLE_SETTINGS.items():
        passed = set(services[name].get("environment", {}))
        assert passed == COMMON | expected, (
            f"service {name!r}: extra {sorted(passed - COMMON - expected)}, missing {sorted(COMMON | expected - passed)}"
        )
    assert set(ROLE_SETTINGS) | {"preflight"} == set(_artq_services()), "a new artq service needs its role here"


def test_every_artq_setting_read_by_the_code_reaches_some_container():
    """A new ``ARTQ_*`` variable read by the code must be passed through, or it is silently unset."""
    read = set()
    for path in [*ROOT.joinpath("artq").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py"), ROOT / "beat_schedule.py"]:
        read |= set(re.findall(r"[\"'](ARTQ_[A-Z0-9_]+)[\"']", path.read_text()))
    image_env = {
        pair.split("=", 1)[0] for word, rest in _dockerfile_instructions() if word == "ENV" for pair in rest.split()
    }
    assert "ARTQ_HOME" in image_env, "the image should set ARTQ_HOME"
    passed = set().union(*ROLE_SETTINGS.values(), COMMON)
    missing = sorted(read - passed - image_env - NOT_PASSED)
    assert not missing, f"{missing} read by the code reach no service; add them to a role in docker-compose.yml"


def test_the_preflight_checks_every_secret_before_anything_starts():
    services = _compose()["services"]
    pre = services["preflight"]
    assert pre["network_mode"] == "none" and pre["restart"] == "no"
    secrets = {v for role in ROLE_SETTINGS.values() for v in role} - {"ARTQ_SOURCE_ALLOW_INSECURE_HTTP"}
    checked = set(pre["environment"])
    assert secrets - {"FLOWER_BASIC_AUTH"} <= checked and "FLOWER_PASSWORD" in checked
    for name in ("redis", "mariadb"):
        assert services[name]["depends_on"]["preflight"]["condition"] == "service_completed_successfully"


def test_no_secret_on_a_command_line():
    for name, svc in _compose()["services"].items():
        command = json.dumps(svc.get("command", ""))
        # `${VAR}` is filled in by Compose (the value lands in argv); `$$VAR` is left to the
        # container's shell, which reads its environment (argv holds the name only)
        assert not re.search(r"(?<!\$)\$\{?[A-Z_]*(PASSWORD|SECRET|TOKEN|_URL)", command), (
            f"service {name!r} puts a secret on its command line (visible in `ps`): pass it in the environment"
        )


def test_one_service_builds_the_image_the_others_use_it():
    services = _compose()["services"]
    builders = [n for n, svc in services.items() if "build" in svc]
    assert builders == ["migrate"], builders
    for name in _artq_services():
        assert services[name]["image"] == "${ARTQ_IMAGE:-artq:latest}", name


def _soft_limits_by_queue() -> dict[str, int]:
    probe = """
import json
from celery.app.utils import find_app
app = find_app("workers")
import workers.tasks  # noqa: F401 - registers the tasks
routes = app.conf.task_routes or {}
out = {q.name: 0 for q in app.conf.task_queues}
for name, task in app.tasks.items():
    if name.startswith("artq."):
        queue = routes.get(name, {}).get("queue", app.conf.task_default_queue)
        out[queue] = max(out[queue], int(task.soft_time_limit or app.conf.task_soft_time_limit or 0))
print(json.dumps(out))
"""
    env = {**os.environ, **PROBE_ENV}
    proc = subprocess.run([sys.executable, "-c", probe], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _seconds(duration: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def test_grace_periods_cover_each_workers_longest_task():
    """`docker compose stop` waits stop_grace_period before SIGKILL: it must outlast the longest
    task (its soft time limit) of every queue the worker consumes, or a stop kills it half way."""
    limits = _soft_limits_by_queue()
    services = _compose()["services"]
    for name, argv in _artq_services().items():
        queues = _queues(argv) if argv[:1] == ["celery"] and "worker" in argv else []
        if queues:
            longest = max(limits[q] for q in queues)
            grace = _seconds(str(services[name].get("stop_grace_period", "10s")))
            assert grace >= longest, f"{name}: stop_grace_period {grace:.0f} s < its longest task {longest} s"
    assert _seconds(services["worker-train"]["stop_grace_period"]) >= limits["train"]


def test_dockerfile_dependencies_layer_does_not_depend_on_the_code():
    """The deps stage sees pyproject.toml only, so a code change reuses its layer (BuildKit)."""
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax"), "a syntax line makes BuildKit pull a frontend from a registry"
    stages = re.split(r"(?m)^FROM ", text)[1:]
    deps = next(st for st in stages if st.split()[2] == "deps")
    copies = [line for line in deps.splitlines() if line.startswith("COPY")]
    assert copies == ["COPY pyproject.toml ./"], copies
    runtime = stages[-1]
    assert runtime.index("COPY --from=deps") < runtime.index("from=wheel"), "dependencies first, then artq's wheel"
    assert re.search(r"(?m)^USER 10001", runtime), "the image runs as a non-root user"


def test_compose_file_holds_no_literal_secrets():
    for line in COMPOSE_FILE.read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if re.search(r"PASSWORD|SECRET", key) and value.strip():
            assert value.strip().startswith("${"), f"a literal secret in docker-compose.yml: {line.strip()}"


def test_env_example_marks_its_defaults_as_local():
    text = (ROOT / ".env.example").read_text()
    assert "LOCAL DEFAULTS, NOT SECRETS" in text
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    for key, value in values.items():
        if key.endswith(("PASSWORD", "SECRET")) and value:
            assert "CHANGE-ME" in value, f"{key} in .env.example must be an obvious placeholder"
    assert "CHANGE-ME" in (ROOT / "scripts" / "docker-entrypoint.sh").read_text(), "the entrypoint refuses the placeholders"
