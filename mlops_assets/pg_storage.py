"""Dagster's PostgreSQL storage for the production profile (deploy/cluster's dagster.yaml), with
connections tested before use.

The webserver holds its storage connections in a pool (`optimize_for_webserver`). After a
PostgreSQL restart or failover every pooled connection is dead, and without a test each one
failed the first request that drew it. Because of that, a run submitted just after a restart
could be stored but never enqueued: the run record's insert used a fresh connection, but the
RUN_ENQUEUED event's insert drew a dead one, so the run stayed NOT_STARTED for good while the
client got an error. Importing this module (dagster.yaml names its class) makes every QueuePool
in the process test a connection on checkout and replace it when the test fails. This is
SQLAlchemy's documented pessimistic disconnect handling, which `pool_pre_ping` implements, and
which dagster-postgres does not expose as a setting. NullPool engines (the daemon's and the run
workers') open a fresh connection each time and are unaffected.
"""

from __future__ import annotations

import contextlib

from dagster_postgres import DagsterPostgresStorage
from sqlalchemy import event, exc
from sqlalchemy.pool import QueuePool


@event.listens_for(QueuePool, "checkout")
def _test_connection(dbapi_connection, connection_record, connection_proxy) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
    except Exception as error:  # the server went away: the pool retries with a new connection
        raise exc.DisconnectionError(f"stale PostgreSQL connection replaced: {error}") from error
    finally:
        with contextlib.suppress(Exception):  # a dead connection's cursor may not close: discarded
            cursor.close()


class PingedPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage`, configured the same way (postgres_url and the rest), loaded
    through this module so that its pools test their connections."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return DagsterPostgresStorage.from_config_value(inst_data, config_value)
