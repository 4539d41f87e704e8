#!/usr/bin/python3
"""Commits one row per transaction into table t of DATABASE until killed, as an application
under load would: hundreds of transactions a second, each waiting up to 60 s for the lock, so it
simply waits while a writer holds it. (A loop with no pause at all between transactions would
starve every other writer of the lock, SQLite's busy handler included.)"""
import sqlite3
import sys
import time

db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
while True:
    db.execute("BEGIN")
    db.execute("INSERT INTO t(v) VALUES (randomblob(64))")
    db.execute("COMMIT")
    time.sleep(0.002)
