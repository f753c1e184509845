"""Which database errors the cycle retries: real MySQLdb errors, not constructed ones."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from artq.pipeline.runtime import is_transient
from tests.conftest import MARIADB_ADMIN_URL

pytestmark = pytest.mark.integration


def _connect_error(url: str) -> OperationalError:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with pytest.raises(OperationalError) as raised:
            with engine.connect():
                pass
    finally:
        engine.dispose()
    return raised.value


def test_an_unknown_host_is_retried_a_stopped_container_leaves_dns_until_it_starts_again():
    exc = _connect_error("mysql+mysqldb://root@artq-no-such-host.invalid:3306/artq")
    assert exc.orig.args[0] == 2005
    assert is_transient(exc)


def test_a_refused_port_is_retried_but_a_wrong_password_is_not():
    refused = _connect_error("mysql+mysqldb://root@127.0.0.1:1/artq")
    assert refused.orig.args[0] in (2002, 2003) and is_transient(refused)
    host = MARIADB_ADMIN_URL.split("@", 1)[1]
    denied = _connect_error(f"mysql+mysqldb://artq_no_such_user:wrong@{host}/artq")
    assert denied.orig.args[0] == 1045 and not is_transient(denied)
