"""SQLite for many processes (gate's test harness; on PYTHONPATH of every service).

The services share sqlite files across processes (Nova's API, conductor, scheduler and
compute write the same cell database) and threads (Placement's claims). oslo.db switches
pysqlite's own transaction handling off and emits a plain (deferred) BEGIN itself; when two
deferred transactions race to upgrade to the write lock, SQLite fails one at once with
"database is locked" — a busy timeout cannot help a lock upgrade. So this listener, which
SQLAlchemy runs before oslo.db's own (class-level listeners first), begins every
transaction with BEGIN IMMEDIATE and marks it begun the way oslo.db does, so oslo.db emits
no second BEGIN: a writer waits for the lock (up to the URL's ?timeout=) and then holds it;
WAL readers never wait. The services' own code is untouched. Only where
GATE_SQLITE_IMMEDIATE is set: the long-running services, not the *-manage commands.
"""
import os

try:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
except ImportError:  # a process without SQLAlchemy
    Engine = None

if Engine is not None and os.environ.get("GATE_SQLITE_IMMEDIATE"):

    @event.listens_for(Engine, "begin")
    def _gate_sqlite_begin_immediate(connection):
        if connection.dialect.name != "sqlite":
            return
        if "in_transaction" not in connection.info:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            connection.info["in_transaction"] = True
