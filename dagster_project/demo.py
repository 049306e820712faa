"""`make demo`: seed the landing area with the bundled digits, run the real jobs, print what happened.

Runs against the persistent instance under $SYNTHDATA_HOME/dagster, so `make ui` shows every run, partition
and check result afterwards.
"""

import os
import sys
import time

DEMO_DATES = ["2024-01-01", "2024-01-02", "2024-01-03"]


def main() -> int:
    from synthdata.io.paths import SynthdataPaths

    paths = SynthdataPaths.from_env().ensure()
    os.environ.setdefault("SYNTHDATA_HOME", str(paths.home))
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    from dagster_project.instance import ensure_instance

    ensure_instance(paths.dagster_home)

    import dagster as dg

    from dagster_project.definitions import build_resources, defs
    from dagster_project.sensors import quality_alerts
    from synthdata.datasets import load_digits_uint8
    from synthdata.io.landing import export_as_drops
    from synthdata.io.warehouse import connect, table_counts

    print(f"SYNTHDATA_HOME={paths.home}\nSYNTHDATA_LANDING={paths.landing}\n")
    if not any((paths.landing / d).exists() for d in DEMO_DATES):
        images, labels, names = load_digits_uint8()
        manifest = export_as_drops(
            images, labels, names, paths.landing, DEMO_DATES, seed=0,
            exact_copies=25, reencoded_copies=25, corrupt_files=6,
        )  # fmt: skip
        print(
            f"seeded {manifest.total_files} files in {len(DEMO_DATES)} drops: {len(images)} digits, "
            f"{len(manifest.exact_copies)} byte-identical copies, {len(manifest.reencoded_copies)} re-encoded "
            f"copies, {len(manifest.corrupt)} unreadable files\n"
        )
    else:
        print("landing drops already present; re-running the pipeline over them\n")

    instance = dg.DagsterInstance.get()
    timings: list[tuple[str, str, float]] = []
    runs = []
    for day in DEMO_DATES:
        runs.append(_run(defs, instance, "daily_ingest_job", day, timings))
    runs.append(_run(defs, instance, "synthesis_job", "gan", timings))

    resources = build_resources(paths)
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        quality_alerts(ctx)

    con = connect(paths.warehouse, read_only=True)
    try:
        _summary(con, instance, runs, timings, table_counts(con))
    finally:
        con.close()
    return 0 if all(r.success for r in runs) else 1


def _run(defs, instance, job_name: str, partition: str, timings):
    start = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)
    wall = time.perf_counter() - start
    status = "ok" if result.success else "FAILED"
    print(f"{job_name}[{partition}]: {status} in {wall:.1f}s (run {result.run_id[:8]})")
    for stat in instance.get_run_step_stats(result.run_id):
        if stat.end_time and stat.start_time:
            timings.append((job_name, stat.step_key, stat.end_time - stat.start_time))
    return result


def _summary(con, instance, runs, timings, counts) -> None:
    print("\n== rows per table ==")
    for table, n in counts.items():
        print(f"  {table:24s} {n:>7d}")
    print("\n== rejected files ==")
    for path, reason in con.execute("SELECT source_path, reason FROM rejected_images ORDER BY 1").fetchall():
        print(f"  {path}: {reason}")
    print("\n== duplicates ==")
    for kind, n in con.execute("SELECT kind, count(*) FROM duplicate_groups GROUP BY 1 ORDER BY 1").fetchall():
        print(f"  {kind}: {n}")
    print("\n== step timings (s) ==")
    per_step: dict[str, list[float]] = {}
    for _, step, secs in timings:
        per_step.setdefault(step, []).append(secs)
    for step, secs in per_step.items():
        print(f"  {step:40s} {sum(secs):7.1f}  ({len(secs)} run{'s' if len(secs) > 1 else ''})")
    print(f"  {'total':40s} {sum(s for _, _, s in timings):7.1f}")
    import dagster as dg

    print("\n== checks ==")
    for run in runs:
        for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            ev = event.dagster_event.event_specific_data
            print(f"  {'PASS' if ev.passed else 'FAIL'} {ev.asset_key.to_user_string()}:{ev.check_name} (run {run.run_id[:8]})")
    print("\n== quality gate (latest evaluation per family) ==")
    from assets.evaluate import latest_evaluation
    from assets.partitions import MODEL_FAMILIES

    for family in MODEL_FAMILIES:
        latest = latest_evaluation(con, family)
        if latest is None:
            print(f"  {family:10s} not evaluated")
            continue
        checked = dict(con.execute("SELECT metric, value FROM quality_metrics WHERE evaluation_id = ? AND class_label "
                                   "IS NULL", [latest["evaluation_id"]]).fetchall())  # fmt: skip
        shown = ", ".join(f"{k} {checked[k]:.3f}" for k in ("tstr_trtr_ratio", "coverage", "recall") if k in checked)
        verdict = "PASS" if latest["passed"] else "FAIL"
        print(f"  {family:10s} {verdict} ({shown}; evaluation {latest['evaluation_id'][:8]})")
        for failure in latest["failures"]:
            print(f"  {'':10s} failed floor: {failure}")
        print(f"  {'':10s} report: {latest['report_path']}")
    alerts = con.execute("SELECT kind, message FROM alerts ORDER BY created_at").fetchall()
    print(f"\n== alerts ({len(alerts)}) ==")
    for kind, message in alerts:
        print(f"  {kind}: {message}")
    print("\nSee it all in the UI: make ui  (http://127.0.0.1:3000)")


if __name__ == "__main__":
    sys.exit(main())
