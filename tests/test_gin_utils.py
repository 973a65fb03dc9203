"""Tests for recjax.gin_utils."""

import gin
import pytest

from recjax import gin_utils


def test_bindings_reach_registered_functions(tmp_path):
  gin.clear_config()
  cfg = tmp_path / "x.gin"
  cfg.write_text("recjax.datasets.load.num_users = 30\n"
                 "recjax.datasets.load.num_items = 12\n"
                 "recjax.datasets.load.num_clusters = 3\n")
  gin_utils.parse_gin([str(cfg)], ["recjax.datasets.load.seed = 5"],
                      finalize=False)
  try:
    from recjax import datasets
    load = gin.get_configurable("recjax.datasets.load")
    ds = load("synthetic")
    assert ds.num_users <= 30 and ds.num_items <= 12
    again = datasets.load("synthetic", num_users=30, num_items=12,
                          num_clusters=3, seed=5)
    assert ds.fingerprint() == again.fingerprint()
  finally:
    gin.clear_config()


def test_unknown_binding_fails():
  gin.clear_config()
  with pytest.raises(ValueError, match="No configurable matching"):
    gin_utils.parse_gin([], ["recjax.nope.thing = 1"], finalize=False)
  gin.clear_config()
