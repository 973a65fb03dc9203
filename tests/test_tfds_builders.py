"""Tests for recjax.datasets.tfds_builders (real TFDS builders, offline)."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from recjax import datasets  # noqa: E402
from recjax.datasets import tfds_builders  # noqa: E402


def _check_against_splits(data_dir, name, ds, manual_dir=None):
  kwargs = {}
  if manual_dir is not None:
    kwargs["download_and_prepare_kwargs"] = {
        "download_config": tfds.download.DownloadConfig(
            manual_dir=str(manual_dir))}
  expected = datasets.leave_one_out(ds)
  for split in datasets.SPLITS:
    got = list(tfds.as_numpy(tfds.load(name, split=split,
                                        data_dir=str(data_dir), **kwargs)))
    assert len(got) == ds.num_users
    exp = expected[split]
    for ex in got[:50]:
      u = int(ex["user_index"])
      np.testing.assert_array_equal(ex["history"], exp.history(u))
      assert int(ex["target"]) == int(exp.targets[u])
      assert ex["user_id"].decode() == ds.user_ids[u]
  builder = tfds.builder(name, data_dir=str(data_dir))
  table = tfds_builders.item_table(builder)
  assert table.original_ids == ds.items.original_ids
  assert builder.info.metadata["fingerprint"] == ds.fingerprint()


def test_synthetic_builder(tmp_path):
  ds = datasets.load("synthetic", num_users=100, num_items=60,
                     num_clusters=6, seed=0)
  _check_against_splits(tmp_path, "recjax_synthetic/tiny", ds)


@pytest.mark.network("movielens_100k")
def test_movielens_builder(tmp_path):
  _check_against_splits(tmp_path, "recjax_movielens100k",
                        datasets.load("movielens_100k"))


def test_office_builder(tmp_path, office_dir):
  ds = datasets.load("amazon_lcrec", data_dir=office_dir, category="Office")
  _check_against_splits(tmp_path, "recjax_amazon_lcrec/office", ds,
                        manual_dir=office_dir)


def test_failed_build_leaves_no_dataset(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "Office.item.json").write_text("{broken")
  (empty / "Office.inter.json").write_text("{}")
  with pytest.raises(Exception, match="Office.item.json:1:2: malformed"):
    tfds.load("recjax_amazon_lcrec/office", split="test",
              data_dir=str(tmp_path / "data"),
              download_and_prepare_kwargs={
                  "download_config": tfds.download.DownloadConfig(
                      manual_dir=str(empty))})
  version_dir = tmp_path / "data" / "recjax_amazon_lcrec" / "office"
  assert not (version_dir / "1.0.0").exists()


def test_building_leaves_no_temporary_folders(tmp_path, monkeypatch):
  # TFDS's DatasetInfo makes an empty `tmp*tfds` folder for every builder of
  # an unprepared dataset (its bucket lookup); recjax's builders skip it.
  import tempfile  # pylint: disable=g-import-not-at-top
  scratch = tmp_path / "scratch"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  builder = tfds.builder("recjax_synthetic/tiny",
                         data_dir=str(tmp_path / "data"))
  builder.download_and_prepare()
  assert builder.info.splits["test"].num_examples > 0
  assert not list(scratch.glob("*tfds")), list(scratch.iterdir())
