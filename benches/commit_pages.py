#!/usr/bin/env python3
"""Pages a SQLite batch commit writes to the log: builds the schema from `migrations/sqlite/`
(all of them, or those before `--before N`), then commits batches the way the store writer does
(one multi-row insert of positions, the chain heads and last-heard upserts, and, where the
schema has it, `person_devices`) and reports the log frames each commit appended.

Devices take turns as in a closed loop: every round each device reports once, ten seconds of
device time after its previous fix, and the round's devices, in a random order (fixed seed),
are split into batches: with 200 devices and batches of 100, each commit holds half of them.

    python3 benches/commit_pages.py                 # the schema as it is
    python3 benches/commit_pages.py --before 22     # without migration 0022 and later

Not a timing: the figure is a count, the same on any machine (Python's sqlite3 module runs the
same SQLite page layout as the service; its time per commit is printed only for orientation).
"""

import argparse
import os
import random
import pathlib
import sqlite3
import tempfile
import time
import uuid

MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations" / "sqlite"
COLUMNS = ("device_id, person_id, time, received_at, lat, lon, valid, accuracy_m, speed_kmh, "
           "course, altitude_m, satellites, hdop, source, battery_pct, archived, "
           "integrity_mismatch, protocol, clock_skew, implausible, raw, chain_n, hash")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, help="apply only migrations below this version")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--commits", type=int, default=600)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ewall.db")
        db = sqlite3.connect(path, isolation_level=None)
        # As the service's write connection (src/store/sqlite.rs).
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "wal_autocheckpoint = 0",
                       "cache_size = -65536", "temp_store = MEMORY"):
            db.execute(f"PRAGMA {pragma}")
        for migration in sorted(MIGRATIONS.glob("*.sql")):
            if args.before is None or int(migration.name.split("_")[0]) < args.before:
                db.executescript(migration.read_text())
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        page = db.execute("PRAGMA page_size").fetchone()[0]

        persons = [str(uuid.uuid4()) for _ in range(args.devices)]
        imeis = [f"86{i:013d}" for i in range(args.devices)]
        raw, digest = os.urandom(36), os.urandom(32)
        start = 1_700_000_000_000_000
        turns = max(args.devices // args.batch, 1)
        shuffle = random.Random(11)
        order = list(range(args.devices))
        frames, seconds = [], []
        wal = path + "-wal"
        placeholders = "(" + ",".join("?" * 23) + ")"
        for n in range(args.commits):
            if n % turns == 0:
                shuffle.shuffle(order)
            devices = order[(n % turns) * args.batch:][:args.batch]
            rows = []
            for i in devices:
                time_us = start + (n // turns) * 10_000_000 + i * 1000
                rows.append((imeis[i], persons[i], time_us, time_us, 25.5 + i * 1e-5 + n * 1e-6,
                             112.3 + n * 1e-6, 1, 15.0, 3.2, 90.0, None, 8, None, "gps", 80, 0, 0,
                             "gt06", 0, None, raw, n, digest))
            before = os.path.getsize(wal) if os.path.exists(wal) else 0
            began = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"INSERT INTO positions ({COLUMNS}) VALUES "
                       + ",".join([placeholders] * len(rows))
                       + " ON CONFLICT (device_id, time, lat, lon) DO NOTHING",
                       [value for row in rows for value in row])
            db.executemany("INSERT INTO audit_heads (chain, n, hash) VALUES (?, ?, ?) "
                           "ON CONFLICT (chain) DO UPDATE SET n = excluded.n, hash = excluded.hash",
                           [("positions:" + imeis[i], n, digest) for i in devices])
            db.executemany("INSERT INTO device_heard (device_id, person_id, received_at) "
                           "VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                           "received_at = excluded.received_at",
                           [(imeis[i], persons[i], start + n) for i in devices])
            if "person_devices" in tables:
                db.executemany("INSERT OR IGNORE INTO person_devices (person_id, device_id) "
                               "VALUES (?, ?)", [(persons[i], imeis[i]) for i in devices])
            db.execute("COMMIT")
            seconds.append(time.perf_counter() - began)
            frames.append((os.path.getsize(wal) - before) / (page + 24))
            if n % 20 == 19:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # The second half: the indexes have grown past their first leaves.
        frames = sorted(f for f in frames[len(frames) // 2:] if f > 0)
        seconds = sorted(seconds[len(seconds) // 2:])
        indexes = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'positions' "
            "AND sql IS NOT NULL")]
        print(f"migrations below {args.before or 'all'}; positions indexes {indexes}; "
              f"{args.devices} devices, {args.batch} per commit: "
              f"{frames[len(frames) // 2]:.0f} log pages ({frames[len(frames) // 2] * page / 1024:.0f} KiB) "
              f"per commit, median; {seconds[len(seconds) // 2] * 1000:.1f} ms per commit here")


if __name__ == "__main__":
    main()
