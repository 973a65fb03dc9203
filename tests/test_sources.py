"""Tests for recjax.datasets.sources (RecBole, Amazon, synthetic)."""

import gzip
import json

import numpy as np
import pytest

from recjax import datasets
from recjax.datasets.sources import amazon
from recjax.datasets.sources import recbole
from recjax.datasets.sources import synthetic
from recjax.errors import DatasetError


def _write_recbole(root, inter_lines, item_lines=None, name="toy"):
  root.mkdir(parents=True, exist_ok=True)
  (root / f"{name}.inter").write_text("\n".join(inter_lines) + "\n")
  if item_lines is not None:
    (root / f"{name}.item").write_text("\n".join(item_lines) + "\n")
  return root


_INTER = ["user_id:token\titem_id:token\trating:float\ttimestamp:float",
          "1\t10\t5\t100", "1\t11\t3\t101", "1\t12\t4\t102",
          "2\t10\t4\t50", "2\t12\t2\t40", "2\t11\t1\t60"]
_ITEMS = ["item_id:token\tmovie_title:token_seq\tclass:token_seq",
          "10\tAlpha\tDrama", "11\tBeta\tComedy", "12\tGamma\tAction"]


def test_recbole_roundtrip(tmp_path):
  root = _write_recbole(tmp_path / "toy", _INTER, _ITEMS)
  ds = datasets.load("recbole", data_dir=root, name="toy")
  assert (ds.num_users, ds.num_items, ds.num_interactions) == (2, 3, 6)
  titles = [ds.items.fields["title"][i] for i in ds.sequence(1)]
  assert titles == ["Gamma", "Alpha", "Beta"]  # sorted by timestamp
  assert ds.items.fields["categories"][0] == "Drama"


def test_recbole_missing_columns(tmp_path):
  root = _write_recbole(tmp_path / "toy",
                        ["user_id:token\trating:float", "1\t5"], _ITEMS)
  with pytest.raises(DatasetError, match="toy.inter: the header has no "
                     "'item_id' column"):
    datasets.load("recbole", data_dir=root, name="toy")


def test_recbole_bad_line_named(tmp_path):
  root = _write_recbole(tmp_path / "toy", _INTER[:3] + ["1\t12"], _ITEMS)
  with pytest.raises(DatasetError, match=r"toy.inter:4: 2 tab-separated"):
    datasets.load("recbole", data_dir=root, name="toy")


def test_recbole_bad_number_named(tmp_path):
  root = _write_recbole(tmp_path / "toy", _INTER[:2] + ["1\t11\tx\t5"],
                        _ITEMS)
  with pytest.raises(DatasetError, match=r"toy.inter:3: rating 'x'"):
    datasets.load("recbole", data_dir=root, name="toy")


def test_recbole_missing_file(tmp_path):
  with pytest.raises(DatasetError, match="nope.inter does not exist"):
    datasets.load("recbole", data_dir=tmp_path, name="nope")


def test_recbole_unknown_item(tmp_path):
  root = _write_recbole(tmp_path / "toy", _INTER + ["2\t99\t1\t70"], _ITEMS)
  with pytest.raises(DatasetError, match="item '99', which is not in the "
                     "item table"):
    datasets.load("recbole", data_dir=root, name="toy")


def test_lcrec_layout(tmp_path):
  (tmp_path / "X.item.json").write_text(json.dumps({
      "0": {"title": "a", "brand": "b", "categories": "c, d",
            "description": ""},
      "1": {"title": "e"}, "2": {"title": "f"}}))
  (tmp_path / "X.inter.json").write_text(json.dumps({"0": [2, 0, 1],
                                                     "1": [0, 1, 2]}))
  ds = datasets.load("amazon_lcrec", data_dir=tmp_path, category="X")
  assert ds.name == "amazon_lcrec_x"
  np.testing.assert_array_equal(ds.sequence(0), [2, 0, 1])
  assert ds.items.record(0)["brand"] == "b"
  assert ds.timestamps_flat is None


def test_lcrec_malformed_json(tmp_path):
  (tmp_path / "X.item.json").write_text('{"0": {"title": "a"},}')
  (tmp_path / "X.inter.json").write_text("{}")
  with pytest.raises(DatasetError, match=r"X.item.json:1:\d+: malformed"):
    datasets.load("amazon_lcrec", data_dir=tmp_path, category="X")


def test_lcrec_missing_args():
  with pytest.raises(DatasetError, match=r"amazon_lcrec needs data_dir= \(the "
                                       r"folder with X\.item\.json"):
    datasets.load("amazon_lcrec")


def _gz(path, lines):
  with gzip.open(path, "wt") as f:
    f.write("\n".join(lines) + "\n")


def test_amazon_2014_orders_by_time_and_parses_literals(tmp_path):
  reviews = []
  for u in range(6):
    for t, item in enumerate([(u + j) % 6 for j in range(6)]):
      reviews.append(json.dumps({"reviewerID": f"U{u}", "asin": f"A{item}",
                                 "overall": 5.0,
                                 "unixReviewTime": 1000 - t}))
  _gz(tmp_path / "reviews_Toy_5.json.gz", reviews)
  meta = [repr({"asin": f"A{i}", "title": f"T{i}", "price": 1.5,
                "categories": [["Toy", "Blocks"]]}) for i in range(6)]
  _gz(tmp_path / "meta_Toy.json.gz", meta)
  ds = datasets.load("amazon_2014", data_dir=tmp_path, category="Toy")
  assert (ds.num_users, ds.num_items) == (6, 6)
  # Reviews were written newest first; the sequence is oldest first.
  seq = [ds.items.original_ids[i] for i in ds.sequence(0)]
  assert seq == [f"A{(0 + j) % 6}" for j in range(6)][::-1]
  assert ds.items.record(0)["categories"] == "Toy, Blocks"
  assert ds.items.record(0)["price"] == "1.5"


def test_amazon_2014_malformed_line(tmp_path):
  _gz(tmp_path / "reviews_Toy_5.json.gz", ["{not json"])
  _gz(tmp_path / "meta_Toy.json.gz", [repr({"asin": "A"})])
  with pytest.raises(DatasetError, match=r"reviews_Toy_5.json.gz:1: neither"):
    datasets.load("amazon_2014", data_dir=tmp_path, category="Toy")


def test_amazon_2014_missing_meta(tmp_path):
  _gz(tmp_path / "reviews_Toy_5.json.gz", [])
  with pytest.raises(DatasetError, match="No metadata file meta_Toy"):
    amazon.load_amazon_2014(tmp_path, "Toy")


def test_synthetic_deterministic_and_structured():
  a = datasets.load("synthetic", num_users=200, num_items=100, seed=3)
  b = datasets.load("synthetic", num_users=200, num_items=100, seed=3)
  c = datasets.load("synthetic", num_users=200, num_items=100, seed=4)
  assert a.fingerprint() == b.fingerprint() != c.fingerprint()
  cfg = synthetic.SyntheticConfig(num_users=200, num_items=100)
  # Consecutive items share a cluster far more often than chance (1/20).
  cluster = np.asarray([int(i[1:]) for i in a.items.original_ids]) % \
      cfg.num_clusters
  same = [np.mean(cluster[s[1:]] == cluster[s[:-1]]) for s in a.sequences()]
  assert np.mean(same) > 0.5
  # The cluster is visible in the item text.
  assert all(a.items.fields["categories"][i].endswith("collection")
             for i in range(a.num_items))


def test_synthetic_bad_sizes():
  with pytest.raises(DatasetError, match="at least twice num_clusters"):
    datasets.load("synthetic", num_items=10, num_clusters=20)


def test_synthetic_unknown_option():
  with pytest.raises(DatasetError, match="Unknown synthetic options"):
    datasets.load("synthetic", num_usrs=3)


def test_unknown_dataset():
  with pytest.raises(DatasetError, match="Unknown dataset 'nope'"):
    datasets.load("nope")


@pytest.mark.network("movielens_100k")
def test_movielens_counts():
  ds = datasets.load("movielens_100k")
  assert (ds.num_users, ds.num_items, ds.num_interactions) == (943, 1682,
                                                               100000)
  assert ds.items.record(0)["title"] == "Toy Story"


def test_office_counts(office_dir):
  ds = datasets.load("amazon_lcrec", data_dir=office_dir, category="Office")
  assert (ds.num_users, ds.num_items, ds.num_interactions) == (4905, 2420,
                                                               53258)


def test_recbole_without_item_file(tmp_path):
  root = _write_recbole(tmp_path / "toy", _INTER)
  inter, items = recbole.load_recbole(root, "toy")
  assert len(items) == 3 and items.fields["title"] == ["", "", ""]
  assert len(inter) == 6
