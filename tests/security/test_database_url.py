"""Finding 1: a mistyped database URL never shows its password (CLI output, real MariaDB errors)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from artq.errors import ConfigError, StorageError
from artq.storage import open_database
from tests.conftest import ROOT

CANARY = "CanaryDbPw9071"


def run_artq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")} | env
    return subprocess.run([sys.executable, "-m", "artq", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(
    "url",
    [
        f"mysql+mysqldb:/artq:{CANARY}@127.0.0.1/artq",  # one slash
        f"mysql+mysqldb://artq:{CANARY}@x@127.0.0.1/artq",  # unescaped '@' in the password
        f"mysql+mysqldb://artq:{CANARY}@127.0.0.1:notaport/artq",
    ],
)
def test_cli_reports_a_bad_database_url_in_one_line_without_the_password(url, tmp_path):
    out = run_artq("status", env={"ARTQ_DATABASE_URL": url, "ARTQ_HOME": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "database_url" in out.stderr
    assert CANARY not in out.stdout + out.stderr
    assert CANARY[4:] not in out.stdout + out.stderr  # not even the tail after an '@'


@pytest.mark.integration
def test_wrong_password_on_real_mariadb_is_reported_without_it(mariadb_url):
    host_and_db = mariadb_url.split("@", 1)[1]
    with pytest.raises(StorageError) as err:
        open_database(f"mysql+mysqldb://artq_nobody:{CANARY}@{host_and_db}")
    assert "cannot reach the database" in str(err.value) and CANARY not in str(err.value)


def test_database_repr_masks_the_password():
    with pytest.raises(ConfigError) as err:
        open_database(f"mysql+mysqldb://u:{CANARY}@@host/db")
    assert CANARY not in str(err.value)
