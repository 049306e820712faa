"""The DuckDB warehouse: table definitions and the few write patterns every stage uses.

Every write is one transaction: a partition (or a whole table) is replaced atomically, so a failed run
leaves the previous contents, never half of the new ones.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

SCHEMA: dict[str, str] = {
    # raw_images / rejected_images are views over these row tables: only rows of a partition's committed
    # ingest (raw_partitions) are visible, so a partition is replaced atomically without holding all of its
    # rows in one transaction (memory stays flat however large the drop).
    "raw_partitions": """
        partition_date DATE PRIMARY KEY,
        ingest_id VARCHAR NOT NULL,     -- the ingest whose rows are visible
        run_id VARCHAR,
        committed_at TIMESTAMP DEFAULT current_timestamp
    """,
    "raw_image_rows": """
        image_id VARCHAR NOT NULL,      -- sha256 of decoded pixels + mode + size
        file_sha256 VARCHAR NOT NULL,   -- sha256 of the file bytes
        partition_date DATE NOT NULL,
        source_path VARCHAR NOT NULL,   -- relative to the landing root (#row=N for Parquet rows)
        label VARCHAR,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        mode VARCHAR NOT NULL,          -- L or RGB after normalisation
        original_mode VARCHAR,
        format VARCHAR,
        n_bytes BIGINT,
        blob_key VARCHAR NOT NULL,      -- where the untouched original lives in the store
        phash UBIGINT,                  -- 64-bit DCT perceptual hash (bit-identical to imagehash.phash)
        phash2 UBIGINT,                 -- crop-robust companion hash (0 = none: tiny or flat image)
        shift_hashes UBIGINT[],         -- 25 window hashes for 1-2 px shifts/crops ([] = none; NULL = row older than it)
        phash_fragile_bits UTINYINT,    -- pHash bits that noise decides (NULL = row older than it)
        lowfreq BLOB,                   -- 64 low frequencies, unit float16 (NULL: flat, or ingested before 2026-12-07 with < 12 such bits)
        thumb32 BLOB,                   -- >= 12 such bits (the fragile-pHash channel): pHash's 32x32 luma thumbnail, 1,024 bytes
        run_id VARCHAR,
        ingest_id VARCHAR,
        ingested_at TIMESTAMP DEFAULT current_timestamp
    """,
    "rejected_rows": """
        partition_date DATE NOT NULL,
        source_path VARCHAR NOT NULL,
        label VARCHAR,
        reason VARCHAR NOT NULL,
        run_id VARCHAR,
        ingest_id VARCHAR,
        rejected_at TIMESTAMP DEFAULT current_timestamp
    """,
    "images": """
        image_id VARCHAR PRIMARY KEY,
        label VARCHAR,
        width INTEGER, height INTEGER, mode VARCHAR, format VARCHAR,
        blob_key VARCHAR NOT NULL,
        phash UBIGINT,
        phash2 UBIGINT,
        first_partition_date DATE,
        source_path VARCHAR,            -- the first file seen with this content
        n_files INTEGER,                -- files in all drops that decoded to this image
        n_near_duplicates INTEGER,      -- other images folded into this one as near-duplicates
        label_conflict BOOLEAN          -- copies arrived under different labels
    """,
    "duplicate_groups": """
        representative_id VARCHAR NOT NULL,   -- the image kept in `images` (first seen)
        member_id VARCHAR NOT NULL,           -- for exact: same id as the representative
        member_source VARCHAR,                -- the duplicate file
        kind VARCHAR NOT NULL,                -- exact | near
        hamming INTEGER,                      -- pHash distance (0 for exact)
        similarity DOUBLE                     -- confirmation score (1.0 for exact)
    """,
    "near_duplicate_index": """
        image_id VARCHAR PRIMARY KEY,         -- already compared against everything before it
        radius INTEGER, threshold DOUBLE,     -- the settings it was compared under
        rule_id VARCHAR                       -- the near_duplicate_rules row it was compared under
    """,
    "near_duplicate_pairs": """
        a VARCHAR NOT NULL, b VARCHAR NOT NULL,   -- confirmed near-duplicate pair (a < b)
        hamming INTEGER, similarity DOUBLE,       -- similarity = 1 - copy_distance
        copy_distance DOUBLE,                     -- synthdata.dedup.evidence (0 = exact transform)
        rule_id VARCHAR
    """,
    "near_duplicate_rules": """
        rule_id VARCHAR NOT NULL,             -- statistic + threshold + screen (synthdata.dedup.calibrate)
        created_at TIMESTAMP DEFAULT current_timestamp,
        active BOOLEAN NOT NULL,              -- the rule later drops are compared under
        statistic VARCHAR, threshold DOUBLE, screen DOUBLE,
        target_false_rate DOUBLE, est_false_rate DOUBLE,
        recall VARCHAR,                       -- JSON: share of planted copies kept, per transform
        null_source VARCHAR, null_images INTEGER, positives INTEGER, seed INTEGER, radius INTEGER,
        rule_json VARCHAR                     -- the whole rule, as synthdata.dedup.calibrate writes it
    """,
    # How the stored rule did on planted copies of each later run's new images (synthdata.dedup.calibrate.rule_fit):
    # a drop of another kind of image than the one calibrated on shows here instead of silently losing recall.
    "near_rule_fits": """
        rule_id VARCHAR NOT NULL,             -- the stored rule that judged the run's new images
        checked_at TIMESTAMP DEFAULT current_timestamp,
        new_images INTEGER, sampled INTEGER,  -- new images in the run; how many had copies planted
        recall VARCHAR, promised VARCHAR,     -- JSON per transform: kept of this run's copies; the rule's own
        fits BOOLEAN NOT NULL,
        message VARCHAR                       -- what fell short, and what to do ('' when it fits)
    """,
    "splits": """
        image_id VARCHAR PRIMARY KEY,
        label VARCHAR,
        split VARCHAR NOT NULL,               -- train | val | test
        group_id VARCHAR NOT NULL             -- the duplicate group (its representative, i.e. this image)
    """,
    # Every split ever given to an image (representatives and folded members alike), never updated or
    # deleted: `splits` is rebuilt from it, so a later drop or a backfill can never move an image.
    "split_assignments": """
        image_id VARCHAR PRIMARY KEY,
        split VARCHAR NOT NULL,               -- train | val | test, for good
        group_id VARCHAR NOT NULL,            -- its group's representative when it was assigned
        rule VARCHAR NOT NULL,                -- hash (a new group) | group (joined an assigned group) | imported
        seq BIGINT NOT NULL,                  -- assignment order: the earliest decides a merged group
        seed BIGINT,
        run_id VARCHAR,
        assigned_at TIMESTAMP DEFAULT current_timestamp
    """,
    "split_conflicts": """
        group_id VARCHAR NOT NULL,            -- the merged group's representative
        image_id VARCHAR NOT NULL,            -- one image of it
        split VARCHAR NOT NULL,               -- where that image stays (assigned splits never change)
        group_split VARCHAR NOT NULL,         -- where the group's later members go (its earliest assignment)
        resolution VARCHAR NOT NULL,
        run_id VARCHAR,
        detected_at TIMESTAMP DEFAULT current_timestamp
    """,
    "augmented_images": """
        aug_id VARCHAR PRIMARY KEY,
        parent_id VARCHAR NOT NULL,
        label VARCHAR,
        copy_index INTEGER,
        seed BIGINT,
        policy_fingerprint VARCHAR,
        ops JSON,                             -- ops applied with their sampled parameters
        soft_label JSON,
        blob_key VARCHAR NOT NULL
    """,
    "generator_checkpoints": """
        checkpoint_id VARCHAR PRIMARY KEY,
        family VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        steps BIGINT, seconds DOUBLE,
        config JSON,
        class_names JSON,                     -- model class index -> label
        image_mode VARCHAR,                   -- the normalised format it was trained on (L/RGB)
        image_width INTEGER, image_height INTEGER,
        data_fingerprint VARCHAR,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    "synthetic_images": """
        synthetic_id VARCHAR PRIMARY KEY,
        family VARCHAR NOT NULL,
        label VARCHAR,
        checkpoint_id VARCHAR NOT NULL,
        checkpoint_path VARCHAR,
        seed BIGINT,
        blob_key VARCHAR NOT NULL
    """,
    "quality_metrics": """
        evaluation_id VARCHAR NOT NULL,
        family VARCHAR,
        checkpoint_id VARCHAR,
        metric VARCHAR NOT NULL,
        value DOUBLE,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp,
        class_label VARCHAR,                  -- NULL: over all classes
        spread DOUBLE,                        -- std over seeds / subsets where the metric has one
        split VARCHAR                         -- the real split it was measured against (val | test)
    """,
    # One row per evaluation, written in the same transaction as its quality_metrics rows: the verdict that
    # quality_gate reports and that training_set requires (latest evaluation of the current checkpoint passed).
    "evaluations": """
        evaluation_id VARCHAR PRIMARY KEY,
        family VARCHAR NOT NULL,
        checkpoint_id VARCHAR NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp,
        run_id VARCHAR,
        passed BOOLEAN NOT NULL,
        failures VARCHAR,                     -- JSON list, e.g. ["coverage 0.12 < min 0.50"]
        floors_json VARCHAR,                  -- JSON list of the floors judged against
        report_path VARCHAR,
        synthetic_fingerprint VARCHAR,        -- the synthetic_images rows evaluated (ids, in order)
        feature_extractor VARCHAR             -- the feature-space checkpoint the metrics were computed in
    """,
    "label_issues": """
        image_id VARCHAR NOT NULL,            -- a flag for review: nothing is deleted or relabelled
        label VARCHAR,                        -- the label the image has
        suggested_label VARCHAR,              -- what the evidence prefers (NULL: no suggestion)
        kind VARCHAR NOT NULL,                -- mislabel | conflict | class_imbalance
        score DOUBLE,                         -- mislabel: p(given label) out of fold; conflict: share of copies
                                              -- agreeing; class_imbalance: class size / mean class size
        detail VARCHAR,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    "image_issues": """
        image_id VARCHAR NOT NULL,            -- a flag for review: nothing is deleted
        issue VARCHAR NOT NULL,               -- dark | light | blurry | low_information | near_constant |
                                              -- odd_aspect_ratio | odd_size | grayscale
        score DOUBLE,
        threshold DOUBLE,                     -- the bound the score crossed, taken from this set's distribution
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    "alerts": """
        alert_id VARCHAR PRIMARY KEY,
        created_at TIMESTAMP DEFAULT current_timestamp,
        kind VARCHAR NOT NULL,                -- check_failed | run_failed | resolved
        asset_key VARCHAR,
        check_name VARCHAR,
        run_id VARCHAR,
        message VARCHAR,
        delivered VARCHAR,                    -- last delivery outcome (per channel when several), or 'not configured'
        delivered_channels VARCHAR,           -- channels that took it, comma-separated (a retry skips them)
        dedup_key VARCHAR,                    -- one open alert per key: check:<asset>:<check> | run:<job>
        resolved_at TIMESTAMP,                -- when the same check or job passed again (failures only)
        occurrences INTEGER DEFAULT 1,        -- failures folded into this open alert
        attempts INTEGER DEFAULT 0,           -- delivery attempts so far
        next_attempt_at TIMESTAMP             -- NULL: delivered or given up; else retry after this time
    """,
}


VIEWS: dict[str, str] = {
    "raw_images": "SELECT r.* EXCLUDE (ingest_id) FROM raw_image_rows r JOIN raw_partitions p USING (partition_date, ingest_id)",
    "rejected_images": "SELECT r.* EXCLUDE (ingest_id) FROM rejected_rows r JOIN raw_partitions p USING (partition_date, ingest_id)",
}


@lru_cache(maxsize=1)
def _expected_columns() -> dict[str, list[tuple[str, str]]]:
    """Each table's (column, type) as DuckDB parses SCHEMA, worked out once per process."""
    probe = duckdb.connect(":memory:")
    try:
        for name, ddl in SCHEMA.items():
            probe.execute(f"CREATE TABLE {name} ({ddl})")
        return {name: probe.execute(f"SELECT name, type FROM pragma_table_info('{name}')").fetchall() for name in SCHEMA}
    finally:
        probe.close()


def ensure_schema(con: duckdb.DuckDBPyConnection, tables: Iterable[str] | None = None) -> None:
    """Create missing tables and views and add columns that a newer version defines (additive migration).

    One catalogue query when the schema is already current, so opening the warehouse stays cheap.
    """
    have: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND schema_name = 'main'"
    ).fetchall():
        have.setdefault(table, set()).add(column)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    changed = False
    for name in tables or SCHEMA:
        if name not in have:
            con.execute(f"CREATE TABLE {name} ({SCHEMA[name]})")
            changed = True
            continue
        for col, ctype in _expected_columns()[name]:
            if col not in have[name]:
                con.execute(f'ALTER TABLE {name} ADD COLUMN "{col}" {ctype}')
                changed = True
    legacy = [name for name in VIEWS if name in have and name not in views]
    if legacy:
        _adopt_legacy_raw_tables(con, legacy)
        changed = True
    for name, sql in VIEWS.items():
        if changed or name not in views:  # a view's `*` is expanded when it is created
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")


# The row table behind each view, and the ingest id that rows adopted from an older warehouse get.
_VIEW_ROWS = {"raw_images": "raw_image_rows", "rejected_images": "rejected_rows"}
LEGACY_INGEST_ID = "legacy"


def _adopt_legacy_raw_tables(con: duckdb.DuckDBPyConnection, legacy: list[str]) -> None:
    """Warehouses written before ingests were versioned held `raw_images` / `rejected_images` as tables.
    Move their rows into the row tables as each partition's committed ingest, then drop the old tables,
    in one transaction: an upgrade keeps every row and never leaves a half-moved warehouse."""
    with transaction(con):
        for name in legacy:
            con.execute(f"INSERT INTO {_VIEW_ROWS[name]} BY NAME SELECT *, '{LEGACY_INGEST_ID}' AS ingest_id FROM {name}")
            con.execute(
                f"""INSERT OR IGNORE INTO raw_partitions (partition_date, ingest_id)
                    SELECT DISTINCT partition_date, '{LEGACY_INGEST_ID}' FROM {name}"""
            )
            con.execute(f"DROP TABLE {name}")


MEMORY_LIMIT_ENV = "SYNTHDATA_DUCKDB_MEMORY"
THREADS_ENV = "SYNTHDATA_DUCKDB_THREADS"
DEFAULT_MEMORY_LIMIT = "512MB"
LOCK_NOTE_SUFFIX = ".holder.json"


class WarehouseLocked(RuntimeError):
    """Another process held DuckDB's single-writer lock for longer than the caller would wait."""


def connection_config(memory_limit: str | None = None, threads: int | None = None) -> dict[str, object]:
    """The settings every warehouse connection gets, from the arguments or else the environment.

    DuckDB's buffer pool otherwise grows toward 80% of RAM; a fixed limit (SYNTHDATA_DUCKDB_MEMORY, default
    512MB) caps it, spilling to disk beyond it. It does not cap everything: DuckDB's automatic checkpoints
    take working memory outside it that grows with the table (measured, see docs/curation.md).
    SYNTHDATA_DUCKDB_THREADS caps DuckDB's worker threads (default: one per core).
    """
    config: dict[str, object] = {"memory_limit": memory_limit or os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT}
    threads = threads or int(os.environ.get(THREADS_ENV) or 0)
    if threads:
        config["threads"] = int(threads)
    return config


def lock_holder(path: Path | str, error: str = "") -> str:
    """Who holds the warehouse, as far as can be known: the note a writer leaves beside the file (its run),
    checked against the PID that DuckDB names in its lock error (a note from a dead process is ignored)."""
    match = re.search(r"\(PID (\d+)\)", error)
    pid = int(match.group(1)) if match else None
    try:
        note = json.loads(Path(str(path) + LOCK_NOTE_SUFFIX).read_text())
    except (OSError, ValueError):
        note = {}
    if note and (pid is None or note.get("pid") == pid):
        return f"{note.get('holder', 'a process')} (PID {note.get('pid')}, since {note.get('since', '?')})"
    return f"PID {pid}" if pid else "another process"


def connect(
    path: Path | str,
    read_only: bool = False,
    timeout_s: float = 120.0,
    *,
    config: dict[str, object] | None = None,
    on_wait: Callable[[str], None] | None = None,
    wait_log_every_s: float = 5.0,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse with the shared settings, waiting while another process holds DuckDB's writer lock.

    A writer creates the folder (a fresh SYNTHDATA_HOME) and migrates the schema. While the file is locked,
    `on_wait` hears who holds it every `wait_log_every_s` (never a silent wait); after `timeout_s` the call
    raises `WarehouseLocked` naming the holder. A reader in a process that already has the file open for
    writing gets a connection like the writer's: DuckDB allows one configuration per file per process.
    """
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else connection_config()
    start = time.monotonic()
    next_log, delay = start + wait_log_every_s, 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            break
        except duckdb.ConnectionException as e:
            if not read_only or "different configuration" not in str(e):
                raise
            con = duckdb.connect(str(path), config=config)
            break
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise
            waited = time.monotonic() - start
            if waited > timeout_s:
                raise WarehouseLocked(
                    f"{Path(path).name} is locked by {lock_holder(path, str(e))}; gave up after {waited:.0f}s. "
                    "Wait for it to finish, or stop it (DuckDB allows one writing process per file)."
                ) from None
            if on_wait is not None and time.monotonic() >= next_log:
                what = "read" if read_only else "write"
                on_wait(f"waiting to {what} {Path(path).name}: locked by {lock_holder(path, str(e))} ({waited:.0f}s of {timeout_s:.0f}s)")
                next_log += wait_log_every_s
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    if not read_only:
        ensure_schema(con)
    return con


@contextmanager
def opened(
    path: Path | str,
    read_only: bool = False,
    holder: str = "",
    **kwargs,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`connect` as a context manager. A writer leaves a note naming itself (`holder`, e.g. its run) beside the
    file while it holds the lock, so whoever waits on it can be told which run that is."""
    con = connect(path, read_only=read_only, **kwargs)
    note = Path(str(path) + LOCK_NOTE_SUFFIX)
    try:
        if not read_only and holder:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            note.write_text(json.dumps({"holder": holder, "pid": os.getpid(), "since": since}))
        yield con
    finally:
        con.close()
        if not read_only and holder:
            note.unlink(missing_ok=True)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any error: all of the block's writes or none of them."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def insert_df(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame | pa.Table) -> int:
    """Insert matching columns by name (extra table columns take their defaults).

    ``df`` is a pandas frame or an Arrow table (cheaper to build from many row dicts, see ingest).
    """
    if len(df) == 0:
        return 0
    columns = df.column_names if isinstance(df, pa.Table) else df.columns
    con.register("_incoming", df)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
    finally:
        con.unregister("_incoming")
    return len(df)


def arrow_schema(con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[str]) -> pa.Schema:
    """The Arrow types of some of a table's columns, as DuckDB maps its own (UBIGINT -> uint64, ...)."""
    full = con.sql(f"SELECT * FROM {table} LIMIT 0").to_arrow_table().schema
    return pa.schema([full.field(name) for name in columns])


def replace_table(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> int:
    """Swap a whole table's contents in one transaction."""
    return replace_where(con, table, "true", [], df)


def replace_where(con: duckdb.DuckDBPyConnection, table: str, where: str, params: list, df: pd.DataFrame) -> int:
    """Replace the rows matching `where` (e.g. one partition, one family) in one transaction."""
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE {where}", params)
        return insert_df(con, table, df)


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [*VIEWS, *(t for t in SCHEMA if t not in ("raw_image_rows", "rejected_rows"))]
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in names}
