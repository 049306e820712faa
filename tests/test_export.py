"""The training-set export (synthdata.export): what a consumer of the Parquet file gets back."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from synthdata.datasets import load_digits_uint8
from synthdata.export import write_training_set
from synthdata.io.arrays import store_pngs
from synthdata.io.sources import iter_parquet
from synthdata.io.store import BlobStore


def _stored_rows(tmp_path) -> tuple[BlobStore, pd.DataFrame, np.ndarray]:
    images, labels, names = load_digits_uint8()
    store = BlobStore(tmp_path / "store")
    real, synth = images[:30], images[30:50][:, ::-1]  # flipped digits stand in for synthetic rows
    rows = [
        {"blob_key": key, "label": names[y], "source": source}
        for source, arr, ys in (("real", real, labels[:30]), ("synthetic", synth, labels[30:50]))
        for (_, key), y in zip(store_pngs(store, arr, source), ys)
    ]
    return store, pd.DataFrame(rows), np.concatenate([real, synth])


def test_export_round_trips_every_image_byte_for_byte_with_its_label_and_source(tmp_path):
    store, rows, pixels = _stored_rows(tmp_path)
    out = write_training_set(rows, store.read, tmp_path / "exports" / "gan")

    table = pq.read_table(out.path)
    assert table.num_rows == len(rows) == 50
    assert out.rows_by_source == {"real": 30, "synthetic": 20}
    assert out.classes == sorted(rows["label"].unique())
    assert table.schema.metadata[b"synthdata_classes"].decode().split(",") == out.classes
    assert (out.path.parent / "labels.txt").read_text().split() == out.classes
    data = table.to_pydict()
    for i, key in enumerate(rows["blob_key"]):
        assert data["image"][i]["bytes"] == store.read(key)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data["image"][i]["bytes"]))), pixels[i])
        assert out.classes[data["label"][i]] == data["label_name"][i] == rows["label"][i]
    assert data["source"] == rows["source"].tolist()


def test_export_is_a_valid_landing_drop(tmp_path):
    """An exported set can be dropped into a landing folder: the source reader sees the same labels."""
    store, rows, _ = _stored_rows(tmp_path)
    out = write_training_set(rows, store.read, tmp_path / "landing" / "2026-01-01")
    items = list(iter_parquet(out.path, tmp_path / "landing"))
    assert [item.label for item in items] == rows["label"].tolist()
    assert all(item.rejection is None and item.data for item in items)


def test_re_export_replaces_the_file_and_leaves_no_temp_files(tmp_path):
    store, rows, _ = _stored_rows(tmp_path)
    out_dir = tmp_path / "exports"
    write_training_set(rows, store.read, out_dir)
    out = write_training_set(rows[rows["source"] == "real"], store.read, out_dir)
    assert pq.read_table(out.path).num_rows == 30
    assert sorted(p.name for p in out_dir.iterdir()) == ["labels.txt", "manifest.json", "training_set.parquet"]


def test_unlabeled_rows_export_with_a_null_label_and_read_back_unlabeled(tmp_path):
    """Unlabeled real rows (label NULL upstream) are kept with a null label, never a class index, and counted."""
    store, rows, _ = _stored_rows(tmp_path)
    rows.loc[[0, 3, 7], "label"] = None
    out = write_training_set(rows, store.read, tmp_path / "landing" / "2026-01-01")

    data = pq.read_table(out.path).to_pydict()
    assert out.unlabeled == 3 and json.loads(out.manifest_path.read_text())["unlabeled_rows"] == 3
    assert [data["label"][i] for i in (0, 3, 7)] == [None] * 3 and [data["label_name"][i] for i in (0, 3, 7)] == [None] * 3
    assert None not in out.classes and all(isinstance(data["label"][i], int) for i in (1, 2, 4))
    items = list(iter_parquet(out.path, tmp_path / "landing"))
    assert [item.label for item in items] == [None if pd.isna(v) else v for v in rows["label"]]


def test_manifest_names_the_provenance_and_the_counts(tmp_path):
    store, rows, _ = _stored_rows(tmp_path)
    provenance = {"family": "gan", "checkpoint_id": "c1", "evaluation_id": "e1", "metrics": {"coverage": 0.8}}
    out = write_training_set(rows, store.read, tmp_path / "exports", provenance)
    manifest = json.loads(out.manifest_path.read_text())
    assert {k: manifest[k] for k in provenance} == provenance
    assert manifest["rows"] == 50 and manifest["rows_by_source"] == {"real": 30, "synthetic": 20}
    assert manifest["classes"] == out.classes and manifest["file"] == "training_set.parquet"
