"""The walk of docs/adding_a_family.md, proven on a toy family.

The family below ("bag of items": a user is the mean of their history's
item embeddings, scored against every item embedding) lives in this test
module, registers itself like a family folder does, and then runs through
the one train / eval / infer entry points and the benchmark without any
edit to recjax.
"""

import dataclasses
import json
import pathlib
import textwrap
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from recjax import eval as eval_lib
from recjax import infer as infer_lib
from recjax import pipeline
from recjax.models import base
from recjax.models import losses
from recjax.models import registry

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = pipeline.DataSource(
    "tiny", "synthetic",
    {"num_users": 40, "num_items": 24, "num_clusters": 3, "seed": 1})


# -- model.py of the family ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BagConfig:
  """Hyper-parameters of the toy family."""

  num_items: int = 0
  dim: int = 8


class BagOfItems(nn.Module):
  """Mean of the history's item embeddings, dot every item embedding."""

  config: BagConfig

  @nn.compact
  def __call__(self, input_items: jax.Array) -> jax.Array:
    table = self.param("items", nn.initializers.normal(0.1),
                       (self.config.num_items, self.config.dim))
    valid = (input_items >= 0)[..., None]
    vectors = jnp.take(table, jnp.maximum(input_items, 0), axis=0)
    # Running mean over the causal prefix: position j sees items <= j.
    total = jnp.cumsum(vectors * valid, axis=1)
    count = jnp.maximum(jnp.cumsum(valid, axis=1), 1)
    return (total / count) @ table.T


class BagModel(base.ItemModel):
  """The toy family behind the item-level contract."""

  def __init__(self, config: BagConfig):
    self.config = config
    self.module = BagOfItems(config)
    self.num_items = config.num_items

  def _init_inputs(self, input_shapes: Mapping[str, Any]):
    shape = tuple(input_shapes.get("input_items", (1, 4)))
    return (jnp.zeros(shape, jnp.int32),), {}

  def loss_fn(self, params, batch, dropout_rng):
    del dropout_rng
    logits = self.module.apply({"params": params},
                               jnp.asarray(batch["input_items"]))
    return losses.softmax_item_loss(logits, batch["target_items"])

  def item_scores(self, params, batch):
    logits = self.module.apply({"params": params},
                               jnp.asarray(batch["input_items"]))
    return logits[:, -1]


def make_bag(dataset, item_embeddings=None, config: BagConfig = BagConfig()):
  """The family's factory (gin: MODEL_FN)."""
  del item_embeddings
  return BagModel(dataclasses.replace(config, num_items=dataset.num_items))


# -- __init__.py of the family: its spec --------------------------------------


@pytest.fixture
def toy_family(tmp_path):
  """Registers the family with gin files written next to the test."""
  gin_dir = tmp_path / "gin"
  (gin_dir / "models").mkdir(parents=True)
  (gin_dir / "models" / "bag.gin").write_text(textwrap.dedent(f"""
      # The toy family: a bag of item embeddings.
      MODEL_FN = @{__name__}.make_bag
      recjax.train.run.fn = @recjax.train_items.train_items
      recjax.train_items.train_items.model_fn = %MODEL_FN
      {__name__}.make_bag.config = @{__name__}.BagConfig()
      {__name__}.BagConfig.dim = 8
      """))
  (gin_dir / "models" / "bag_smoke.gin").write_text(
      "include 'schedules/items_smoke.gin'\nLEARNING_RATE = 0.05\n")
  spec = registry.FamilySpec(
      name="bag", kind=registry.ITEM, factory=f"{__name__}.make_bag",
      description="A user is the mean of their items' embeddings.",
      implements="Everything (it is a toy).",
      gin_files=(str(gin_dir / "models" / "bag.gin"),),
      configurables=("BagConfig", "make_bag"), module=__name__)
  registry.register_family(spec, replace=True)
  registry.register_method(registry.MethodSpec(
      name="bag", family="bag", recipe="the only one",
      schedules={"cpu": str(gin_dir / "models" / "bag_smoke.gin"),
                 registry.SMOKE: str(gin_dir / "models" / "bag_smoke.gin")}),
                           replace=True)
  yield spec
  registry.unregister("bag")


def test_a_toy_family_runs_through_every_entry_point(toy_family, tmp_path):
  assert "bag" in registry.list_families()
  assert "bag" in registry.list_methods(registry.ITEM)
  work = pipeline.Workspace(tmp_path / "work")
  trained = work.run("bag", TINY, seed=0, schedule=registry.SMOKE)
  run = work.run_dir("bag", TINY, 0, registry.SMOKE)
  desc = json.loads((run / "run.json").read_text())
  assert desc["kind"] == "item" and desc["family"] == "bag"
  assert desc["model_class"] == f"{__name__}.BagModel"
  evaluated = eval_lib.main(["--model_dir", str(run), "--output_dir",
                             str(tmp_path)])
  assert evaluated["test/ndcg@10"] == pytest.approx(trained["test/ndcg@10"])
  out = infer_lib.main(["--model_dir", str(run), "--output",
                        str(tmp_path / "recs.jsonl")])
  assert len(out.read_text().splitlines()) == TINY.kwargs["num_users"]


def test_a_toy_family_appears_in_the_benchmark(toy_family, tmp_path):
  from bench_scripts import load  # pylint: disable=g-import-not-at-top
  quality = load("quality")
  rows = quality.main(["--data", "tiny=synthetic", "--datasets", "",
                       "--methods", "bag,markov", "--seeds", "0",
                       "--cache_dir", str(tmp_path / "bench"),
                       "--json", "--plot", str(tmp_path / "curves.png")])
  assert [r["method"] for r in rows] == ["bag", "markov"]
  assert rows[0]["schedule"] == "cpu" and rows[1]["schedule"] == "-"
  assert all(0 <= r["test/ndcg@10"] <= 1 for r in rows)
