"""The deployment files stay true to the code: Dockerfile, docker-compose.yml, .env.example.

No Docker engine runs here, so nothing is built or started. Instead:

* ``scripts/check-deploy.sh`` runs the real ``docker compose config`` and ``hadolint`` (marked
  ``integration``; always run in CI);
* every command a service runs must exist in the project: the Celery app ``workers``, its
  sub-command and options, every ``-Q`` queue in ``workers.factory.QUEUES``, every ``artq <cmd>``
  among the registered CLI commands with the options it passes. A command renamed or removed
  in the code fails here, not at 3 a.m. in production.
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


@functools.cache
def _celery_app(name: str) -> dict:
    """Loads ``-A NAME`` in a fresh interpreter from the project root, as the container does.

    A subprocess, because inside pytest ``workers`` may resolve to ``tests/workers``.
    """
    proc = subprocess.run([sys.executable, "-c", _PROBE, name], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
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


def _copy_build_context(dest: Path) -> None:
    """What the Dockerfile's COPY lines put in /src (caches left out, as .dockerignore does)."""
    import shutil

    dest.mkdir(parents=True)
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            *sources, target = rest.split()
            for src in sources:
                path = ROOT / src
                into = dest / (Path(target).name if target not in ("./", ".") else path.name)
                if path.is_dir():
                    shutil.copytree(path, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.sqlite"))
                else:
                    shutil.copy2(path, into)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1200)  # builds ~50 wheels (mysqlclient from source) and a virtualenv
def test_image_environment_runs_every_role_from_its_wheels_alone(tmp_path):
    """The Dockerfile's two stages without Docker: its own `pip wheel` line builds the wheelhouse
    from the build context, a clean virtualenv installs from those wheels only, and every role's
    command starts its CLI outside the repository (so nothing comes from the source tree)."""
    run_lines = [rest for word, rest in _dockerfile_instructions() if word == "RUN" and "pip wheel" in rest]
    assert len(run_lines) == 1, "the Dockerfile should build its wheels with one `pip wheel` line"
    wheel_args = shlex.split(run_lines[0].split("pip wheel", 1)[1])
    wheels = tmp_path / "wheels"
    wheel_args = [str(wheels) if a == "/wheels" else a for a in wheel_args]
    src = tmp_path / "src"
    _copy_build_context(src)

    def run(argv, **kw):
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900, **kw)
        assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    run([sys.executable, "-m", "pip", "wheel", "-q", *wheel_args], cwd=src)
    names = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    assert {"artq", "mysqlclient", "xgboost_cpu", "celery", "flower", "packaging"} <= names, sorted(names)
    assert not names & {"pytest", "hypothesis", "playwright", "skforecast", "mlforecast", "matplotlib"}, (
        "test or bench extras leaked into the image"
    )
    venv = tmp_path / "rt"
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", f"--find-links={wheels}",
         *map(str, wheels.glob("*.whl"))])

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "ARTQ_HOME": str(home),
        "ARTQ_MODELS_DIR": str(home / "models"),
        "ARTQ_BROKER_URL": "redis://127.0.0.1:6379/0",  # not contacted: loads kombu's Redis transport
        "ARTQ_RESULT_BACKEND": "redis://127.0.0.1:6379/1",
    }
    where = run([str(venv / "bin" / "python"), "-c", "import workers, artq; print(workers.__file__, artq.__file__)"], cwd=home, env=env)
    assert str(ROOT) not in where and str(venv) in where, where
    run(["celery", "-A", "workers", "report"], cwd=home, env=env)
    for _service, argv in sorted(_artq_services().items()):
        if argv[0] == "celery":
            _, sub, _ = _split_celery(argv)
            run(["celery", "-A", "workers", sub, "--help"], cwd=home, env=env)
        else:
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
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src!r}, which is not in the repository"
                assert src.rstrip("/") in allowed, f"Dockerfile copies {src!r}, but .dockerignore keeps it out"


def test_exactly_one_beat_and_predict_scales():
    services = _compose()["services"]
    beats = [n for n, argv in _artq_services().items() if argv[:1] == ["celery"] and "beat" in argv]
    assert len(beats) == 1, f"exactly one beat, or every cycle runs twice; got {beats}"
    assert services[beats[0]].get("deploy", {}).get("replicas") == 1
    predict = [n for n, argv in _artq_services().items() if "predict" in _queues(argv)]
    assert predict and all("replicas" in services[n].get("deploy", {}) for n in predict)


def test_flower_requires_authentication():
    flower = [argv for argv in _artq_services().values() if "flower" in argv]
    assert len(flower) == 1
    auth = [a for a in flower[0] if a.startswith("--basic-auth=")]
    assert auth and "${FLOWER_PASSWORD" in auth[0], "flower must take --basic-auth from the environment"


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


def test_models_volume_is_shared_by_train_and_predict_workers():
    services = _compose()["services"]
    for name, argv in _artq_services().items():
        queues = _queues(argv)
        if {"train", "predict"} & set(queues):
            mounts = services[name].get("volumes", [])
            assert f"models:{MODELS_DIR}" in mounts, f"{name} must mount the models volume at {MODELS_DIR}"
            assert services[name]["environment"]["ARTQ_MODELS_DIR"] == MODELS_DIR
    assert "models" in _compose()["volumes"]


def test_every_artq_setting_from_the_environment_reaches_the_containers():
    """A new ``ARTQ_*`` variable read by the code must be passed through, or it is silently unset."""
    read = set()
    for path in [*ROOT.joinpath("artq").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py"), ROOT / "beat_schedule.py"]:
        read |= set(re.findall(r"[\"'](ARTQ_[A-Z0-9_]+)[\"']", path.read_text()))
    image_env = {
        pair.split("=", 1)[0] for word, rest in _dockerfile_instructions() if word == "ENV" for pair in rest.split()
    }
    assert "ARTQ_HOME" in image_env, "the image should set ARTQ_HOME"
    for name in _artq_services():
        passed = set(_compose()["services"][name].get("environment", {}))
        missing = sorted(read - passed - image_env)
        assert not missing, f"service {name!r} does not pass {missing} (read by the code); add them to x-artq"


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
        if key.endswith("PASSWORD"):
            assert "CHANGE-ME" in value, f"{key} in .env.example must be an obvious placeholder"
