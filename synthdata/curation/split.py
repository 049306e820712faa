"""Leak-free, stable train/val/test assignment over duplicate groups.

A group is a representative of `images` with the members `duplicate_groups` folded into it (exact and near).
Three rules, applied by :func:`plan_splits`:

1. A new group (none of its images assigned yet) gets :func:`split_of` (seed, representative id): a hash,
   independent of the label, so every class gets the configured fractions in expectation (stratified without
   a global sort, which would move old images whenever new ones arrive).
2. An image's split, once assigned, never changes. Every assignment is kept in `split_assignments` (members
   too), and `splits` is rebuilt from it: keying on the representative alone would move images when a
   backfill makes an older file the representative.
3. A group's unassigned images (a new member, or a backfilled image that became the representative) follow
   the group's earliest assignment. When the assigned images of a group already sit in different splits (a
   new image joined images that were assigned apart), nothing moves: the new images follow the earliest
   assignment, and every image of the group is recorded in `split_conflicts` with its split, so a person
   can act (drop the group, or re-split deliberately). The `splits` asset logs it and shows it in metadata.

Seed and fractions therefore apply to new groups only; re-splitting means deleting `split_assignments`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import pandas as pd

from synthdata.io.warehouse import insert_df, transaction

SPLITS = ("train", "val", "test")


def unit_hash(*parts: object) -> float:
    """A stable uniform number in [0, 1) from any parts (sha256, not Python's salted hash)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validate_fractions(fractions: dict[str, float]) -> None:
    if set(fractions) != set(SPLITS):
        raise ValueError(f"split fractions must name exactly {SPLITS}, got {sorted(fractions)}")
    if any(v <= 0 for v in fractions.values()):
        raise ValueError(f"every split fraction must be > 0, got {fractions}")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {sum(fractions.values()):.4f}")


def split_of(group_id: str, seed: int, fractions: dict[str, float]) -> str:
    u = unit_hash(seed, group_id)
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]


def assign_splits(images: pd.DataFrame, seed: int, fractions: dict[str, float]) -> pd.DataFrame:
    """Rule 1 alone: images (columns image_id, label and optionally group_id, default the image itself)
    with the hash split of their group."""
    validate_fractions(fractions)
    out = images[["image_id", "label"]].copy()
    out["group_id"] = images["group_id"] if "group_id" in images else images["image_id"]
    out["split"] = [split_of(g, seed, fractions) for g in out["group_id"]]
    return out.reset_index(drop=True)


@dataclass
class SplitPlan:
    assignments: pd.DataFrame  # new rows: image_id, split, group_id, rule, seq
    conflicts: pd.DataFrame  # new rows: group_id, image_id, split, group_split, resolution
    splits: pd.DataFrame  # image_id, label, split, group_id: every image of `images`


def plan_splits(
    images: pd.DataFrame,
    members: pd.DataFrame,
    assigned: pd.DataFrame,
    recorded: pd.DataFrame,
    seed: int,
    fractions: dict[str, float],
) -> SplitPlan:
    """The three rules (module docstring) as a pure function of the tables.

    images: image_id, label (each its group's representative); members: group_id, image_id (folded
    duplicates; rows whose group is not in images are stale and ignored); assigned: image_id, split, seq
    (earlier assignments); recorded: group_id, image_id (conflict rows already written). The result does not
    depend on row order.
    """
    validate_fractions(fractions)
    reps = images[["image_id"]].assign(group_id=images["image_id"])
    folded = members.loc[members["group_id"].isin(images["image_id"]) & ~members["image_id"].isin(images["image_id"]),
                         ["group_id", "image_id"]]  # fmt: skip
    groups = (
        pd.concat([reps, folded], ignore_index=True)
        .sort_values(["group_id", "image_id"])
        .drop_duplicates("image_id")  # a member folded into two groups keeps the first by group id
        .merge(assigned[["image_id", "split", "seq"]], on="image_id", how="left")
        .sort_values(["group_id", "image_id"], ignore_index=True)
    )
    done = groups.dropna(subset=["seq"])
    earliest = done.loc[done.groupby("group_id")["seq"].idxmin(), ["group_id", "split", "image_id"]].set_index("group_id")
    groups["split"] = groups["split"].astype(object)
    group_split = groups["group_id"].map(earliest["split"]).astype(object)
    fresh = group_split.isna()
    group_split[fresh] = [split_of(g, seed, fractions) for g in groups.loc[fresh, "group_id"]]
    groups["group_split"] = group_split

    new = groups[groups["seq"].isna()].copy()
    first_seq = int(assigned["seq"].max()) + 1 if len(assigned) else 0
    new["split"], new["rule"] = new["group_split"], ["hash" if f else "group" for f in fresh[new.index]]
    new["seq"] = range(first_seq, first_seq + len(new))
    groups.loc[new.index, "split"] = new["split"]

    spread = groups.groupby("group_id")["split"].transform("nunique") > 1
    clash = groups[spread].merge(recorded[["group_id", "image_id"]], how="left", indicator=True)
    clash = clash[clash["_merge"] == "left_only"].copy()
    source = clash["group_id"].map(earliest["image_id"])
    clash["resolution"] = [
        f"merged group spans splits; assigned images never move; new members follow {s}, the earliest assignment ({e})"
        for s, e in zip(clash["group_split"], source)
    ]
    current = images[["image_id", "label"]].merge(groups[["image_id", "split"]], on="image_id", how="left")
    return SplitPlan(
        assignments=new[["image_id", "split", "group_id", "rule", "seq"]].reset_index(drop=True),
        conflicts=clash[["group_id", "image_id", "split", "group_split", "resolution"]].reset_index(drop=True),
        splits=current.assign(group_id=current["image_id"])[["image_id", "label", "split", "group_id"]],
    )


@dataclass
class SplitStats:
    plan: SplitPlan
    recorded_conflicts: int  # conflict rows in the table after this run, this run's included
    other_seed: int  # assignments kept from another seed (or imported): the seed applies to new groups only


def refresh_splits(con: duckdb.DuckDBPyConnection, seed: int, fractions: dict[str, float], run_id: str | None) -> SplitStats:
    """Assign the new images of `images` / `duplicate_groups`, record conflicts and rebuild `splits`, in one
    transaction. A warehouse from before `split_assignments` existed keeps its `splits` rows as assignments."""
    with transaction(con):
        if con.execute("SELECT count(*) FROM split_assignments").fetchone()[0] == 0:
            con.execute(
                """INSERT INTO split_assignments (image_id, split, group_id, rule, seq, run_id)
                   SELECT image_id, split, group_id, 'imported', row_number() OVER (ORDER BY image_id) - 1, ?
                   FROM splits""",
                [run_id],
            )
        plan = plan_splits(
            con.execute("SELECT image_id, label FROM images").df(),
            con.execute(
                """SELECT representative_id AS group_id, member_id AS image_id FROM duplicate_groups
                   WHERE member_id <> representative_id"""
            ).df(),
            con.execute("SELECT image_id, split, seq FROM split_assignments").df(),
            con.execute("SELECT group_id, image_id FROM split_conflicts").df(),
            seed,
            fractions,
        )
        insert_df(con, "split_assignments", plan.assignments.assign(seed=seed, run_id=run_id))
        insert_df(con, "split_conflicts", plan.conflicts.assign(run_id=run_id))
        con.execute("DELETE FROM splits")
        insert_df(con, "splits", plan.splits)
        recorded = con.execute("SELECT count(*) FROM split_conflicts").fetchone()[0]
        other_seed = con.execute(
            "SELECT count(*) FROM split_assignments WHERE seed IS DISTINCT FROM ?", [seed]
        ).fetchone()[0]
    return SplitStats(plan, int(recorded), int(other_seed))
