"""paykit.core.db's group commit: writers share commits, yet each write is atomic and durable on its
own.

Real SQLite files in a tmp folder; threads stand in for a server's concurrent calls.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from paykit.core.db import Database

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"
THREADS, WRITES = 12, 60


class Boom(Exception):
    """A block that fails after writing."""


def rows(path) -> dict[int, str]:
    with sqlite3.connect(path) as conn:  # another connection: only committed rows are visible
        return dict(conn.execute("SELECT k, v FROM t"))


def test_concurrent_writers_each_commit_whole_or_not_at_all(tmp_path):
    db = Database(tmp_path / "t.db", SCHEMA)
    expected: dict[int, str] = {}
    lock = threading.Lock()

    def writer(i: int) -> None:
        for j in range(WRITES):
            k = i * 1000 + j
            try:
                # Every seventh block fails after writing: its row must vanish, no one else's.
                with db.write(durable=j % 3 != 0) as conn:
                    conn.execute("INSERT INTO t VALUES (?, ?)", (k, f"{i}.{j}"))
                    if j % 7 == 0:
                        raise Boom
            except Boom:
                continue
            # The block returned: its row is committed, seen by any other connection.
            assert rows(tmp_path / "t.db").get(k) == f"{i}.{j}"
            with lock:
                expected[k] = f"{i}.{j}"

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rows(tmp_path / "t.db") == expected
    assert len(expected) == THREADS * sum(1 for j in range(WRITES) if j % 7)
    db.close()


def test_a_constraint_error_undoes_only_its_own_block(tmp_path):
    db = Database(tmp_path / "t.db", SCHEMA)
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1, 'one')")
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("INSERT INTO t VALUES (2, 'two')")
        conn.execute("INSERT INTO t VALUES (1, 'again')")  # duplicate key
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (3, 'three')")
    assert rows(tmp_path / "t.db") == {1: "one", 3: "three"}
    db.close()


def test_a_nested_write_in_one_thread_is_refused_not_deadlocked(tmp_path):
    db = Database(tmp_path / "t.db", SCHEMA)
    with pytest.raises(RuntimeError, match="nested"), db.write(), db.write():
        pass
    with db.write() as conn:  # the connection was handed back
        conn.execute("INSERT INTO t VALUES (1, 'one')")
    assert rows(tmp_path / "t.db") == {1: "one"}
    db.close()


def test_durable_writes_use_synchronous_full(tmp_path):
    db = Database(tmp_path / "t.db", SCHEMA)
    with db.write() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with db.write(durable=False) as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    db.close()
