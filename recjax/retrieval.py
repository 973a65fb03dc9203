"""Deprecated: `recjax.evaluation.RankingEvaluator` ranks every family.

`ItemRankingEvaluator(model, config)` still works (with a `FutureWarning`)
and returns the one evaluator.
"""

from __future__ import annotations

from recjax import deprecation
from recjax.evaluation import EvalConfig
from recjax.evaluation import RankingEvaluator
from recjax.models.base import ItemModel


def ItemRankingEvaluator(  # noqa: N802  (the old class name)
    model: ItemModel, config: EvalConfig | None = None) -> RankingEvaluator:
  """The one evaluator for an item-level model (old name)."""
  deprecation.warn_moved("recjax.retrieval.ItemRankingEvaluator",
                         "recjax.evaluation.RankingEvaluator")
  return RankingEvaluator(model, config=config)
