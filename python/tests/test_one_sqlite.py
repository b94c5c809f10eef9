"""One SQLite per process: the extension links the very libsqlite3 Python's sqlite3 module
loads. Two copies in one process do not see each other's POSIX locks; one copy opening the
database can truncate the WAL index the other has mapped (SIGBUS) or corrupt the file."""

from __future__ import annotations

import pathlib
import sqlite3
import threading

from syncline import SyncEngine


def test_the_engine_and_sqlite3_share_one_sqlite_library(tmp_path: pathlib.Path) -> None:
    with SyncEngine(tmp_path / "one.db") as e:
        ((version,),) = list(e.query("SELECT sqlite_version()"))
        assert version == sqlite3.sqlite_version


def test_sqlite3_connections_coming_and_going_beside_the_engine(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "busy.db"
    events: list[object] = []
    with SyncEngine(path, watch_interval_ms=1) as e:
        e.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        e.enable_sync("t")
        with e.subscribe(events.append):
            stop = threading.Event()

            def engine_reads() -> None:
                while not stop.is_set():
                    e.status()

            reader = threading.Thread(target=engine_reads)
            reader.start()
            try:
                for i in range(300):
                    conn = sqlite3.connect(path)
                    conn.execute("INSERT INTO t(id, v) VALUES (?, 'x')", (i,))
                    conn.commit()
                    conn.close()
            finally:
                stop.set()
                reader.join()
        ((n,),) = list(e.query("SELECT count(*) FROM t"))
        assert n == 300
        assert e.status().tables[0].rows == 300
