import pandas as pd
import pytest

from synthdata.curation.split import assign_splits, validate_fractions
from synthdata.io.landing import export_as_drops

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def test_exact_dedup_keeps_first_seen_and_records_the_rest(tmp_path):
    from synthdata.curation.curate import curate
    from synthdata.io.warehouse import connect

    con = connect(tmp_path / "w.duckdb")
    rows = [
        ("b", "2024-01-02", "2024-01-02/1/x.png", "1"),
        ("a", "2024-01-01", "2024-01-01/1/z.png", "1"),
        ("a", "2024-01-01", "2024-01-01/1/a.png", "1"),
        ("a", "2024-01-03", "2024-01-03/7/copy.png", "7"),
    ]
    for image_id, day, path, label in rows:
        con.execute(
            """INSERT INTO raw_image_rows (image_id, file_sha256, partition_date, source_path, label, width, height,
                                           mode, blob_key, ingest_id) VALUES (?, '', ?, ?, ?, 8, 8, 'L', 'k', 'i')""",
            [image_id, day, path, label],
        )
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        con.execute("INSERT INTO raw_partitions (partition_date, ingest_id) VALUES (?, 'i')", [day])
    curate(con, None, near_duplicates=False)
    unique = con.execute("SELECT image_id, source_path, n_files, label_conflict FROM images ORDER BY image_id").fetchall()
    assert [u[0] for u in unique] == ["a", "b"]
    assert unique[0][1:] == ("2024-01-01/1/a.png", 3, True)
    groups = con.execute("SELECT member_source, kind FROM duplicate_groups ORDER BY 1").fetchall()
    assert [g[0] for g in groups] == ["2024-01-01/1/z.png", "2024-01-03/7/copy.png"]
    assert {g[1] for g in groups} == {"exact"}


def test_splits_are_stable_when_new_images_arrive():
    old = pd.DataFrame({"image_id": [f"img{i}" for i in range(500)], "label": [str(i % 10) for i in range(500)]})
    new = pd.concat([old, pd.DataFrame({"image_id": [f"new{i}" for i in range(300)], "label": "3"})])
    a = assign_splits(old, seed=0, fractions=FRACTIONS).set_index("image_id")["split"]
    b = assign_splits(new, seed=0, fractions=FRACTIONS).set_index("image_id")["split"]
    assert (b.loc[a.index] == a).all()
    assert assign_splits(old, seed=1, fractions=FRACTIONS)["split"].tolist() != a.tolist()


def test_splits_keep_a_group_together_and_hit_fractions_per_class():
    df = pd.DataFrame(
        {"image_id": [f"i{i}" for i in range(4000)], "label": [str(i % 4) for i in range(4000)],
         "group_id": [f"g{i // 2}" for i in range(4000)]}  # fmt: skip
    )
    out = assign_splits(df, seed=0, fractions=FRACTIONS)
    assert (out.groupby("group_id")["split"].nunique() == 1).all()
    share = out.groupby("label")["split"].value_counts(normalize=True).unstack()
    assert ((share["train"] - 0.7).abs() < 0.05).all() and ((share["test"] - 0.2).abs() < 0.05).all()


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        validate_fractions({"train": 0.8, "val": 0.1, "test": 0.2})
    with pytest.raises(ValueError, match="name exactly"):
        validate_fractions({"train": 0.9, "test": 0.1})


def test_export_as_drops_plants_copies_and_broken_files(tmp_path, digits):
    images, labels, names = digits
    m = export_as_drops(images[:90], labels[:90], names, tmp_path, ["2024-01-01", "2024-01-02"], seed=3,
                        exact_copies=4, reencoded_copies=3, corrupt_files=3)  # fmt: skip
    assert m.total_files == 90 + 4 + 3 + 3
    for original, copy in m.exact_copies:
        assert (tmp_path / original).read_bytes() == (tmp_path / copy).read_bytes()
    for original, copy in m.reencoded_copies:
        assert (tmp_path / original).read_bytes() != (tmp_path / copy).read_bytes()
    assert sorted(m.corrupt.values()) == ["not an image (text with a .png name)", "truncated PNG", "zero-byte file"]
    again = export_as_drops(images[:90], labels[:90], names, tmp_path / "b", ["2024-01-01", "2024-01-02"], seed=3)
    assert again.files["2024-01-01"] == [p for p in m.files["2024-01-01"] if "img_" in p]


def test_an_older_warehouse_gains_new_columns_without_losing_rows(tmp_path):
    import duckdb

    from synthdata.io.warehouse import connect

    old = duckdb.connect(str(tmp_path / "w.duckdb"))
    old.execute("CREATE TABLE images (image_id VARCHAR PRIMARY KEY, label VARCHAR)")
    old.execute("INSERT INTO images VALUES ('a', '1')")
    old.close()
    con = connect(tmp_path / "w.duckdb")
    cols = {r[0] for r in con.execute("SELECT name FROM pragma_table_info('images')").fetchall()}
    assert {"phash", "phash2", "n_near_duplicates"} <= cols
    assert con.execute("SELECT image_id, label, phash FROM images").fetchall() == [("a", "1", None)]
