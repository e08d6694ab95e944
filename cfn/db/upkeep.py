"""Upkeep of the project database that never removes a row: the query planner's
statistics (PRAGMA optimize), a passive WAL checkpoint, and freeing pages to the file
system only where the database was created for it (auto_vacuum = INCREMENTAL).

No VACUUM: it rewrites the whole file under an exclusive lock, which would stall every
cfn process waiting on the database.
"""

from __future__ import annotations

import sqlite3

AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}


def _one(conn: sqlite3.Connection, pragma: str) -> object:
    row = conn.execute(f"PRAGMA {pragma}").fetchone()
    return row[0] if row else None


def compact(conn: sqlite3.Connection) -> dict:
    """Optimize, checkpoint and (when configured) free pages; returns what it did."""
    conn.execute("PRAGMA optimize")
    # PASSIVE: copies what it can without waiting for, or blocking, readers and writers
    busy, wal_pages, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    mode = AUTO_VACUUM.get(int(_one(conn, "auto_vacuum") or 0), "unknown")
    free_before = int(_one(conn, "freelist_count") or 0)
    freed = None  # not measured: only an incremental database can give pages back
    if mode == "incremental" and free_before:
        conn.execute("PRAGMA incremental_vacuum").fetchall()  # runs as its rows are read
        freed = free_before - int(_one(conn, "freelist_count") or 0)
    return {"optimized": True, "auto_vacuum": mode, "free_pages": free_before,
            "pages_freed": freed, "page_size": int(_one(conn, "page_size") or 0),
            "wal_checkpoint": {"busy": bool(busy), "wal_pages": wal_pages,
                               "checkpointed": checkpointed}}
