"""Splits over duplicate groups: a group shares a split, an assigned image never moves (new drops, backfills
that change the representative), merged groups across splits are resolved and recorded, and `splits_no_leak`
fails on a planted leak. The engine on tables; the asset and its check in real Dagster materializations."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthdata.curation.split import plan_splits, refresh_splits, split_of
from test_curate_near import tiles  # real 96x96 photo tiles (skimage)
from synthdata.io.warehouse import connect

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
NO_MEMBERS = pd.DataFrame(columns=["group_id", "image_id"])
NO_ASSIGNED = pd.DataFrame({"image_id": pd.Series(dtype=object), "split": pd.Series(dtype=object), "seq": pd.Series(dtype="int64")})
NO_CONFLICTS = pd.DataFrame(columns=["group_id", "image_id"])


def images(ids):
    return pd.DataFrame({"image_id": ids, "label": [str(i % 3) for i in range(len(ids))]})


def with_split(ids, wanted, seed=0):
    """The first ids whose hash split (seed 0) is ``wanted``, so tests can place groups on purpose."""
    return [i for i in ids if split_of(i, seed, FRACTIONS) == wanted]


def applied(assigned, plan):
    return pd.concat([assigned, plan.assignments[["image_id", "split", "seq"]]], ignore_index=True)


def test_a_new_group_is_hashed_on_its_representative_and_its_members_follow():
    ids = [f"img{i:03d}" for i in range(60)]
    members = pd.DataFrame({"group_id": ids[:20], "image_id": [f"copy{i:03d}" for i in range(20)]})
    plan = plan_splits(images(ids), members, NO_ASSIGNED, NO_CONFLICTS, 0, FRACTIONS)
    got = plan.assignments.set_index("image_id")["split"]
    assert len(got) == 80 and set(plan.assignments["rule"]) == {"hash"}
    for rep, member in zip(members["group_id"], members["image_id"]):
        assert got[member] == got[rep] == split_of(rep, 0, FRACTIONS)
    assert plan.splits.set_index("image_id")["split"].to_dict() == {i: got[i] for i in ids}
    assert plan.conflicts.empty
    assert sorted(plan.assignments["seq"]) == list(range(80))


def test_the_plan_does_not_depend_on_row_order():
    ids = [f"img{i:03d}" for i in range(40)]
    members = pd.DataFrame({"group_id": ids[:10] + ids[5:7], "image_id": [f"copy{i:03d}" for i in range(10)] + ["both", "both"]})
    a = plan_splits(images(ids), members, NO_ASSIGNED, NO_CONFLICTS, 0, FRACTIONS)
    b = plan_splits(images(ids).iloc[::-1], members.iloc[::-1], NO_ASSIGNED, NO_CONFLICTS, 0, FRACTIONS)
    pd.testing.assert_frame_equal(a.assignments, b.assignments)
    assert a.assignments.set_index("image_id").loc["both", "group_id"] == ids[5]  # the first group by id


def test_assigned_images_never_move_when_a_backfill_makes_another_image_the_representative():
    ids = [f"img{i:03d}" for i in range(200)]
    first = plan_splits(images(ids), NO_MEMBERS, NO_ASSIGNED, NO_CONFLICTS, 0, FRACTIONS)
    assigned = applied(NO_ASSIGNED, first)
    # A backfilled day brings earlier copies: each becomes its group's representative, the old image a member.
    # Pick old images whose new representative would hash elsewhere, so only persistence keeps them still.
    moved = [(i, f"early{i}") for i in ids if split_of(f"early{i}", 0, FRACTIONS) != split_of(i, 0, FRACTIONS)][:15]
    assert len(moved) == 15
    reps = [i for i in ids if i not in dict(moved)] + [new for _, new in moved]
    members = pd.DataFrame({"group_id": [new for _, new in moved], "image_id": [old for old, _ in moved]})
    second = plan_splits(images(reps), members, assigned, NO_CONFLICTS, 0, FRACTIONS)
    before = assigned.set_index("image_id")["split"]
    assert set(second.assignments["image_id"]) == {new for _, new in moved}
    assert set(second.assignments["rule"]) == {"group"}
    now = second.splits.set_index("image_id")["split"]
    for old, new in moved:
        assert now[new] == before[old] != split_of(new, 0, FRACTIONS)  # the new representative follows its group
    assert (now.drop([new for _, new in moved]) == before.drop([old for old, _ in moved])).all()
    assert second.conflicts.empty
    assert second.assignments["seq"].min() == assigned["seq"].max() + 1


def test_a_later_seed_or_fraction_change_moves_nothing():
    ids = [f"img{i:03d}" for i in range(100)]
    assigned = applied(NO_ASSIGNED, plan_splits(images(ids), NO_MEMBERS, NO_ASSIGNED, NO_CONFLICTS, 0, FRACTIONS))
    again = plan_splits(images(ids + ["late"]), NO_MEMBERS, assigned, NO_CONFLICTS, 7, {"train": 0.2, "val": 0.2, "test": 0.6})
    assert list(again.assignments["image_id"]) == ["late"]
    pd.testing.assert_series_equal(
        again.splits.set_index("image_id")["split"].drop("late"), assigned.set_index("image_id")["split"], check_names=False
    )


def test_groups_merged_across_splits_follow_the_earliest_assignment_and_are_recorded_once():
    ids = [f"img{i:03d}" for i in range(300)]
    assigned = applied(NO_ASSIGNED, plan_splits(images(ids), NO_MEMBERS, NO_ASSIGNED, NO_CONFLICTS, 0, FRACTIONS))
    in_train, in_test = with_split(ids, "train")[0], with_split(ids, "test")[0]
    # Make the test image the earlier assignment, so the rule (earliest, not "train first") is what decides.
    assigned.loc[assigned["image_id"] == in_test, "seq"] = -1
    # A backfilled image is a near-duplicate of both: it becomes the representative, both become members.
    reps = [i for i in ids if i not in (in_train, in_test)] + ["newrep"]
    members = pd.DataFrame({"group_id": ["newrep", "newrep"], "image_id": [in_train, in_test]})
    plan = plan_splits(images(reps), members, assigned, NO_CONFLICTS, 0, FRACTIONS)
    assert plan.assignments[["image_id", "split", "rule"]].values.tolist() == [["newrep", "test", "group"]]
    rows = plan.conflicts.set_index("image_id")
    assert rows["split"].to_dict() == {in_train: "train", in_test: "test", "newrep": "test"}
    assert set(rows["group_split"]) == {"test"} and set(rows["group_id"]) == {"newrep"}
    assert all(in_test in r for r in rows["resolution"])
    # The next run neither moves anything nor records the same conflict again.
    again = plan_splits(images(reps), members, applied(assigned, plan), plan.conflicts, 0, FRACTIONS)
    assert again.assignments.empty and again.conflicts.empty
    assert again.splits.set_index("image_id").loc["newrep", "split"] == "test"


def test_refresh_imports_the_splits_of_an_older_warehouse_and_writes_in_one_transaction(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    for i, split in enumerate(["test", "test", "val"]):
        con.execute("INSERT INTO images (image_id, label, blob_key) VALUES (?, 'a', 'k')", [f"img{i}"])
        con.execute("INSERT INTO splits VALUES (?, 'a', ?, ?)", [f"img{i}", split, f"img{i}"])
    con.execute("INSERT INTO images (image_id, label, blob_key) VALUES ('img3', 'a', 'k')")
    stats = refresh_splits(con, 0, FRACTIONS, "run1")
    rows = dict(con.execute("SELECT image_id, split FROM splits").fetchall())
    assert rows == {"img0": "test", "img1": "test", "img2": "val", "img3": split_of("img3", 0, FRACTIONS)}
    rules = dict(con.execute("SELECT image_id, rule FROM split_assignments").fetchall())
    assert rules == {"img0": "imported", "img1": "imported", "img2": "imported", "img3": "hash"}
    assert stats.other_seed == 3
    # A failure inside the transaction leaves every table as it was.
    con.execute("INSERT INTO images (image_id, label, blob_key) VALUES ('img4', 'a', 'k')")
    with pytest.raises(ValueError, match="sum to 1"):
        refresh_splits(con, 0, {"train": 0.9, "val": 0.1, "test": 0.1}, "run2")
    assert con.execute("SELECT count(*) FROM split_assignments").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM splits").fetchone()[0] == 4


# ---------------------------------------------------------------------------------------------------------------
# Real materializations: ingest, curate and split real photo tiles; plant a backfill, a leak and a missed copy.

DAY1, DAY2 = "2024-03-01", "2024-03-02"


def encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def content_id(data: bytes) -> str:
    from synthdata.io.imageio import decode_image, image_id

    return image_id(decode_image(data).image)


class Graph:
    """A SYNTHDATA_HOME, an ephemeral instance, and the real assets and checks."""

    def __init__(self, home):
        from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
        from synthdata.io.paths import SynthdataPaths

        self.paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = build_resources(self.paths)
        job = dg.define_asset_job("curate_and_split", selection=dg.AssetSelection.assets("raw_images", "images", "splits"))
        self.defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[job], resources=self.resources)

    def land(self, day: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            path = self.paths.landing / day / "tiles" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def ingest(self, day: str, run_config=None):
        job = self.defs.resolve_job_def("curate_and_split")
        return job.execute_in_process(instance=self.instance, partition_key=day, run_config=run_config)

    def split(self, checks_only: bool = False):
        """Materialize `splits` with its checks, or run its checks alone on the warehouse as it is."""
        from assets.splits import splits, splits_leakage_audit, splits_no_leak

        return dg.materialize(
            [splits, splits_no_leak, splits_leakage_audit], instance=self.instance, resources=self.resources,
            selection=dg.AssetSelection.checks_for_assets(splits) if checks_only else None, raise_on_error=False,
        )  # fmt: skip

    def query(self, sql: str, params=()):
        import duckdb

        con = duckdb.connect(str(self.paths.warehouse), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def execute(self, sql: str, params=()) -> None:
        from synthdata.io.warehouse import connect

        con = connect(self.paths.warehouse)
        try:
            con.execute(sql, list(params))
        finally:
            con.close()


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }  # fmt: skip


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """Day 2 lands 48 tiles; then an earlier day is backfilled with JPEG copies of six of them, chosen so that
    each copy (the new representative) would hash to another split than its original."""
    graph = Graph(tmp_path_factory.mktemp("home"))
    originals = tiles(48, seed=0)
    pngs = {f"t{i:02d}.png": encode(t) for i, t in enumerate(originals)}
    graph.land(DAY2, pngs)
    first = graph.ingest(DAY2)
    before = dict(graph.query("SELECT image_id, split FROM split_assignments"))
    copies = {}
    for i, t in enumerate(originals):
        copy = encode(t, "JPEG", quality=90)
        original_id, copy_id = content_id(pngs[f"t{i:02d}.png"]), content_id(copy)
        if split_of(copy_id, 0, FRACTIONS) != before[original_id] and len(copies) < 6:
            copies[f"early{i:02d}.jpg"] = (copy, original_id, copy_id)
    graph.land(DAY1, {name: c[0] for name, c in copies.items()})
    second = graph.ingest(DAY1)
    return graph, first, second, before, copies


@pytest.mark.slow
def test_a_backfill_that_changes_representatives_moves_no_image(backfilled):
    graph, first, second, before, copies = backfilled
    assert first.success and second.success and len(copies) == 6
    folded = dict(graph.query("SELECT member_id, representative_id FROM duplicate_groups WHERE kind = 'near'"))
    assert {orig: folded.get(orig) for _, orig, _ in copies.values()} == {orig: new for _, orig, new in copies.values()}
    after = dict(graph.query("SELECT image_id, split FROM split_assignments"))
    assert {i: after[i] for i in before} == before  # nothing assigned moved, the folded originals included
    now = dict(graph.query("SELECT image_id, split FROM splits"))
    for _, orig, new in copies.values():
        assert now[new] == before[orig] != split_of(new, 0, FRACTIONS)
        assert orig not in now
    rules = dict(graph.query("SELECT rule, count(*) FROM split_assignments GROUP BY 1"))
    assert rules == {"hash": 48, "group": 6}
    for run in (first, second):
        checks = evaluations(run)
        assert checks["splits_no_leak"].passed and checks["splits_leakage_audit"].passed
    assert graph.query("SELECT count(*) FROM split_conflicts") == [(0,)]


@pytest.mark.slow
def test_splits_no_leak_fails_on_a_planted_leak_and_a_moved_image(backfilled):
    graph = backfilled[0]
    train, test = (graph.query("SELECT min(image_id) FROM splits WHERE split = ?", [s])[0][0] for s in ("train", "test"))
    # Plant what a curation that folded a test image into a train image leaves when `splits` is not re-run.
    graph.execute("DELETE FROM images WHERE image_id = ?", [test])
    graph.execute("INSERT INTO duplicate_groups VALUES (?, ?, 'planted', 'near', 3, 0.99)", [train, test])
    leak = evaluations(graph.split(checks_only=True))["splits_no_leak"]
    assert not leak.passed and leak.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in leak.metadata.items()}
    assert meta["duplicates_with_own_split"] == 1 and meta["groups_across_splits_unrecorded"] == 2

    # Re-splitting moves nothing: the merge is resolved (later members follow the earliest) and recorded.
    rerun = graph.split()
    assert rerun.success and evaluations(rerun)["splits_no_leak"].passed
    conflicts = dict(graph.query("SELECT image_id, split FROM split_conflicts"))
    assert conflicts == {train: "train", test: "test"}
    assert dict(graph.query("SELECT image_id, split FROM split_assignments WHERE image_id IN (?, ?)", [train, test])) == conflicts
    mat = rerun.asset_materializations_for_node("splits")[0].metadata
    assert mat["new_conflicts"].value == 2 and "conflicts" in mat

    graph.execute("UPDATE splits SET split = 'val' WHERE image_id = ?", [train])
    moved = evaluations(graph.split(checks_only=True))["splits_no_leak"]
    assert not moved.passed and moved.metadata["images_moved"].value == 1


@pytest.mark.slow
def test_the_leakage_audit_warns_on_a_copy_dedup_missed(tmp_path):
    graph = Graph(tmp_path / "home")
    originals = tiles(60, seed=1)
    pngs = {f"t{i:02d}.png": encode(t) for i, t in enumerate(originals)}
    held_out = [n for n, data in pngs.items() if split_of(content_id(data), 0, FRACTIONS) == "test"]
    # JPEG copies of test tiles that land in train; with near-duplicate search off, nothing folds them.
    planted = {}
    for name in held_out:
        copy = encode(originals[int(name[1:3])], "JPEG", quality=90)
        if split_of(content_id(copy), 0, FRACTIONS) == "train" and len(planted) < 3:
            planted[f"copy_{name[:-4]}.jpg"] = copy
    graph.land(DAY1, {**pngs, **planted})
    run = graph.ingest(DAY1, {"ops": {"images": {"config": {"near_duplicates": False}}}})
    assert run.success  # non-blocking: the run goes on
    checks = evaluations(run)
    assert checks["splits_no_leak"].passed
    audit = checks["splits_leakage_audit"]
    assert not audit.passed and audit.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in audit.metadata.items()}
    assert len(planted) == 3 and meta["flagged_pairs"] == 3
    assert meta["test_leak_rate"] == pytest.approx(3 / meta["searched"]["test"])
    assert meta["closest_pairs"].startswith("Train (left)") and meta["closest_pairs"].count("**flagged**") == 3
