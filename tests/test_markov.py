"""Tests of recjax.models.markov: counts, scores, lists vs brute force."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax import datasets
from recjax import metrics
from recjax.datasets import canonical
from recjax.errors import ConfigError
from recjax.models import markov
from recjax.models.markov import MarkovConfig
from recjax.models.markov import TransitionModel


def _train(seqs, num_items=None):
  num_items = num_items or max(max(s) for s in seqs) + 1
  items = canonical.ItemTable([str(i) for i in range(num_items)], {})
  ds = canonical.from_sequences("t", items, [f"u{i}" for i in
                                             range(len(seqs))], seqs)
  return ds, datasets.leave_one_out(ds, max_history=None)


def test_counts_and_most_frequent_successor():
  # Training sequences: [0, 1, 2], [0, 1, 3], [0, 2]: 0 is followed by 1
  # twice and by 2 once; 1 by 2 and 3 once each.
  seqs = [[0, 1, 2, 4, 4], [0, 1, 3, 4, 4], [0, 2, 4, 4]]
  ds, splits = _train(seqs)
  model = TransitionModel.fit(splits["train"], ds.num_items)
  dense = model.counts.toarray()
  assert dense[0, 1] == 2 and dense[0, 2] == 1
  assert dense[1, 2] == 1 and dense[1, 3] == 1
  assert dense.sum() == 5
  np.testing.assert_array_equal(model.popularity, [3, 2, 2, 1, 0])
  # After 0: 1 (2 transitions), 2 (1), then popularity fills: 0 (3), 3 (1),
  # 4 (0).
  np.testing.assert_array_equal(model.recommend([[3, 0]], k=5),
                                [[1, 2, 0, 3, 4]])
  # After 1: 2 and 3 tie on transitions; popularity puts 2 first.
  np.testing.assert_array_equal(model.recommend([[1]], k=2), [[2, 3]])
  # Excluding the history [0, 1]: 2, 3, 4, and -1 once nothing is left.
  np.testing.assert_array_equal(
      model.recommend([[0, 1]], k=5, exclude=[[0, 1]]), [[2, 3, 4, -1, -1]])


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(
    st.lists(st.lists(st.integers(0, 7), min_size=3, max_size=10),
             min_size=1, max_size=10),
    st.sampled_from([0.0, 0.5, 1.0]), st.integers(1, 4),
    st.integers(1, 8), st.booleans())
def test_lists_match_brute_force(seqs, decay, max_history, k, exclude):
  ds, splits = _train(seqs, num_items=8)
  config = MarkovConfig(decay=decay, max_history=max_history)
  model = TransitionModel.fit(splits["train"], ds.num_items, config)
  train = [s[:-2] for s in seqs]
  pop = np.bincount(np.concatenate([np.asarray(t) for t in train]),
                    minlength=8)
  test = splits["test"]
  histories = [test.history(i) for i in range(len(test))]
  excluded = histories if exclude else None
  got = model.recommend(histories, k, exclude=excluded, batch_size=3)
  for u, h in enumerate(histories):
    recent = list(h[::-1][:max_history])
    score = {}
    for b in range(8):
      s = 0.0
      for j, a in enumerate(recent):
        w = decay ** j if decay > 0 else float(j == 0)
        s += w * sum(t[i] == a and t[i + 1] == b
                     for t in train for i in range(len(t) - 1))
      score[b] = s
    candidates = [b for b in range(8) if not (exclude and b in set(h))]
    want = sorted(candidates, key=lambda b: (-score[b], -pop[b], b))[:k]
    want += [-1] * (k - len(want))
    # Near-equal weighted sums may order by float round-off; compare scores.
    if decay in (0.0, 1.0):
      assert list(got[u]) == want, (u, h)
    else:
      assert [round(score.get(b, -1), 9) for b in got[u]] == [
          round(score.get(b, -1), 9) for b in want]


def test_bad_input():
  with pytest.raises(ConfigError, match=r"MarkovConfig\.decay=1\.5 must be in "
                                        r"\[0, 1\] \(0: the last item "
                                        r"only\)\."):
    MarkovConfig(decay=1.5)
  with pytest.raises(ConfigError, match=r"MarkovConfig\.max_history=0 must be "
                                        r">= 1\."):
    MarkovConfig(max_history=0)
  ds, splits = _train([[0, 1, 2, 3]])
  model = TransitionModel.fit(splits["train"], ds.num_items)
  with pytest.raises(ValueError, match=r"k=0 must be in \[1, 4\]"):
    model.recommend([[0]], k=0)
  # No history (e.g. only unknown items at inference): popularity order.
  np.testing.assert_array_equal(
      model.recommend([[], [0]], k=4),
      [[0, 1, 2, 3], [1, 0, 2, 3]])  # Train: 0 -> 1 only.
  with pytest.raises(ValueError, match=r"history 0 holds item 9 or 9, outside "
                                       r"\[0, 4\)\."):
    model.recommend([[9]], k=1)
  with pytest.raises(ValueError, match="exclude has 2 rows"):
    model.recommend([[0]], k=1, exclude=[[0], [1]])
  with pytest.raises(ValueError, match=r"counts \(4, 4\) must be \[3, 3\] "
                                     r"\(one row and column per item\)"):
    TransitionModel(model.counts, np.zeros(3))


def _ring(num_users=40, seed=0):
  """Users walking a 12-item ring, mostly one step at a time."""
  rng = np.random.default_rng(seed)
  seqs = []
  for _ in range(num_users):
    start, length = int(rng.integers(12)), int(rng.integers(4, 9))
    steps = np.where(rng.random(length) < 0.8, 1, rng.integers(2, 5, length))
    seqs.append([int(x) for x in (start + np.cumsum(steps)) % 12])
  return _train(seqs, num_items=12)[0]


def test_evaluate_picks_the_decay_on_validation():
  ds = _ring()
  res = markov.evaluate(ds, k=10)
  grid = {d: res[f"validation/ndcg@10/decay={d:g}"] for d in markov.DECAYS}
  best = max(grid.values())
  assert res["markov/decay"] == min(d for d in grid if grid[d] == best)
  splits = datasets.leave_one_out(ds, max_history=None)
  model = TransitionModel.fit(splits["train"], 12,
                              MarkovConfig(decay=res["markov/decay"]))
  test = splits["test"]
  histories = [test.history(i) for i in range(len(test))]
  for prefix, exclude in (("test", None), ("test_excl", histories)):
    want = metrics.ranking_metrics(
        model.recommend(histories, 10, exclude=exclude), test.targets,
        num_items=12)
    assert res[f"{prefix}/ndcg@10"] == pytest.approx(want["ndcg@10"])
    assert res[f"{prefix}/recall@5"] == pytest.approx(want["recall@5"])
  assert res["test/ndcg@10"] > 0.3  # the ring is predictable
  # A single candidate is taken as it is; none is an error.
  assert markov.evaluate(ds, decays=(0.5,))["markov/decay"] == 0.5
  with pytest.raises(ConfigError, match="at least one decay"):
    markov.evaluate(ds, decays=())
  with pytest.raises(ConfigError, match=r"evaluate picks the decay by "
                                        r"NDCG@10, so it needs lists of >= "
                                        r"10 items: k=5, 't' has 12 items"):
    markov.evaluate(ds, k=5)


def test_candidate_scores_gather_the_counts():
  seqs = [[0, 1, 2, 4, 4], [0, 1, 3, 4, 4], [0, 2, 4, 4]]
  ds, splits = _train(seqs)
  model = TransitionModel.fit(splits["train"], ds.num_items,
                              MarkovConfig(decay=0.5))
  histories = [[1, 0], [3, 1], [2]]
  candidates = np.array([[1, 2, -1], [3, 2, 0], [4, 4, 0]])
  got = model.candidate_scores(histories, candidates, batch_size=2)
  dense = model.counts.toarray()
  want = np.zeros((3, 3))
  for u, h in enumerate(histories):
    for j, b in enumerate(candidates[u]):
      if b >= 0:
        want[u, j] = sum(0.5 ** i * dense[a, b]
                         for i, a in enumerate(h[::-1]))
  np.testing.assert_allclose(got, want)
  assert got[0, 0] == 2 and got[0, 2] == 0  # 0 -> 1 twice; -1 scores 0
  with pytest.raises(ValueError, match="one row per history"):
    model.candidate_scores(histories, candidates[:2])
