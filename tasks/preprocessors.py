"""tf.data preprocessors of the recommendation tasks, and their converter.

The recjax TFDS builders give one example per user and split: `user_index`,
`user_id`, `history` (item indices, oldest first) and `target`. A TIGER task
runs

  tag_split (source)  -> adds `is_train`, True on the training split
  add_user_token      -> the user's hash token, once per user
  expand_prefixes     -> training: every prefix of each user's sequence
  to_inputs_targets   -> `inputs` / `targets` tokens + pass-through features
  append_eos          -> (SeqIO) EOS after the targets

and models read it through `RecFeatureConverter`, an `EncDecFeatureConverter`
that also carries the pass-through features `target_item`, `user_index` and
`history_items` (padded with -1), as constrained decoding and evaluation
need them.
"""

from __future__ import annotations

from collections.abc import Mapping

import seqio
import tensorflow as tf

from recjax.errors import ConfigError
from recjax.tasks.vocabulary import SemanticIdVocabulary
from recjax.tokens import NO_ITEM

IS_TRAIN = "is_train"
PASSTHROUGH_FEATURES = ("target_item", "user_index", "history_items")
HISTORY_PAD = NO_ITEM
USER_TOKEN = "user_token"
_LENGTH = "_history_length"


def required_inputs_length(num_levels: int, max_history: int,
                           use_user_token: bool = True) -> int:
  """Tokens of the longest `inputs`: user token + `max_history` items."""
  return int(use_user_token) + max_history * num_levels


def required_targets_length(num_levels: int) -> int:
  """Tokens of `targets`: one item and EOS."""
  return num_levels + 1


def tag_split(dataset: tf.data.Dataset, is_train: bool) -> tf.data.Dataset:
  """Adds the scalar bool feature `is_train` to every example."""
  flag = tf.constant(bool(is_train))
  return dataset.map(lambda ex: {**ex, IS_TRAIN: flag},
                     num_parallel_calls=tf.data.AUTOTUNE)


def _check_max_history(max_history: int) -> None:
  if max_history < 1:
    raise ConfigError(f"max_history must be >= 1, got {max_history}.")


def expand_prefixes(dataset: tf.data.Dataset, max_history: int = 20,
                    expand: bool | None = None,
                    max_prefixes: int | None = None) -> tf.data.Dataset:
  """Expands training sequences into every prefix (TIGER's protocol).

  For a training example with sequence `s = history + [target]` it emits,
  for `i = 1 .. len(s) - 1`, the example `(history=s[:i][-max_history:],
  target=s[i])`, in order. Other examples pass through with their history
  cut to the last `max_history` items. Every other feature is copied.

  Args:
    dataset: examples with `history` (int32 `[n]`) and `target` (int32).
    max_history: the most recent items kept in a history.
    expand: True: expand every example; False: expand none; None: expand
      those whose `is_train` feature is True (all if it is absent).
    max_prefixes: keep only each user's most recent `max_prefixes` training
      examples (None: all, TIGER's protocol).

  Returns:
    The expanded dataset.

  Raises:
    ConfigError: `max_history < 1`.
  """
  _check_max_history(max_history)
  if max_prefixes is not None and max_prefixes < 1:
    raise ConfigError(f"max_prefixes must be >= 1 or None, got "
                      f"{max_prefixes}.")

  def per_user(ex):
    seq = tf.concat([tf.cast(ex["history"], tf.int32),
                     tf.reshape(tf.cast(ex["target"], tf.int32), [1])], 0)
    n = tf.shape(seq)[0]
    if expand is None:
      train = ex.get(IS_TRAIN, tf.constant(True))
    else:
      train = tf.constant(bool(expand))
    lowest = 1 if max_prefixes is None else tf.maximum(1, n - max_prefixes)
    first = tf.where(train, lowest, n - 1)
    ends = tf.range(first, n)  # target positions
    starts = tf.maximum(ends - max_history, 0)
    lengths = ends - starts
    # Histories as a dense [k, max_history] block, cut back in `strip`.
    idx = starts[:, None] + tf.range(max_history)[None, :]
    hist = tf.gather(seq, tf.minimum(idx, n - 1))
    k = tf.shape(ends)[0]
    out = {key: tf.repeat(tf.expand_dims(value, 0), k, axis=0)
           for key, value in ex.items() if key not in ("history", "target")}
    out.update({"history": hist, _LENGTH: lengths,
                "target": tf.gather(seq, ends)})
    return out

  def strip(ex):
    ex = dict(ex)
    ex["history"] = ex["history"][:ex.pop(_LENGTH)]
    return ex

  return (dataset.map(per_user, num_parallel_calls=tf.data.AUTOTUNE)
          .unbatch()
          .map(strip, num_parallel_calls=tf.data.AUTOTUNE))


def add_user_token(dataset: tf.data.Dataset,
                   vocabulary: SemanticIdVocabulary) -> tf.data.Dataset:
  """Adds `user_token` (int32), the hashed `user_id`, to every example.

  Run it before `expand_prefixes`, so the hash is computed once per user
  rather than once per prefix; `to_inputs_targets` uses it when present.
  """

  def fn(ex):
    return {**ex, USER_TOKEN: vocabulary.user_token_tf(ex["user_id"])}

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def to_inputs_targets(dataset: tf.data.Dataset,
                      vocabulary: SemanticIdVocabulary,
                      use_user_token: bool = True) -> tf.data.Dataset:
  """Maps `(user, history, target)` examples to token features.

  Output features:
    inputs         int32 `[user token] + tokens of the history items`
                   (no user token when `use_user_token` is False)
    targets        int32 tokens of the target item (EOS is added by SeqIO)
    target_item    int32 the target item index
    user_index     int32 the dense user index
    history_items  int32 `[n]` the history item indices

  Args:
    dataset: examples with `user_index`, `history`, `target` and
      `user_token` (see `add_user_token`) or `user_id` (string).
    vocabulary: the task's vocabulary.
    use_user_token: prepend the user-hash token.

  Returns:
    The mapped dataset.

  Raises:
    ConfigError: `use_user_token` with a layout without user buckets.
  """
  if use_user_token and vocabulary.layout.num_user_buckets == 0:
    raise ConfigError(
        "use_user_token=True but the vocabulary has no user buckets; build "
        "it with num_user_buckets > 0 (TIGER: 2000) or set "
        "use_user_token=False.")

  def fn(ex):
    history = tf.cast(ex["history"], tf.int32)
    target = tf.cast(ex["target"], tf.int32)
    inputs = tf.reshape(vocabulary.item_tokens_tf(history), [-1])
    if use_user_token:
      user = ex[USER_TOKEN] if USER_TOKEN in ex else vocabulary.user_token_tf(
          ex["user_id"])
      user = tf.reshape(tf.cast(user, tf.int32), [1])
      inputs = tf.concat([user, inputs], axis=0)
    return {
        "inputs": inputs,
        "targets": vocabulary.item_tokens_tf(target),
        "target_item": target,
        "user_index": tf.cast(ex["user_index"], tf.int32),
        "history_items": history,
    }

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def check_lengths(dataset: tf.data.Dataset,
                  sequence_length: Mapping[str, int] | None = None,
                  *, num_levels: int, max_history: int,
                  use_user_token: bool = True) -> tf.data.Dataset:
  """Post-cache check that `sequence_length` fits the longest example.

  SeqIO trims features longer than their length, which would silently drop
  the most recent history items; this raises instead.

  Raises:
    ConfigError: `inputs` or `targets` lengths too short.
  """
  if sequence_length:
    check_lengths_fit(sequence_length, num_levels=num_levels,
                      max_history=max_history, use_user_token=use_user_token)
  return dataset


def check_lengths_fit(sequence_length: Mapping[str, int], *, num_levels: int,
                      max_history: int, use_user_token: bool = True,
                      name: str = "task") -> None:
  """Raises ConfigError when `inputs`/`targets` lengths are too short."""
  need = {"inputs": required_inputs_length(num_levels, max_history,
                                           use_user_token),
          "targets": required_targets_length(num_levels)}
  for key, n in need.items():
    have = sequence_length.get(key)
    if have is not None and have < n:
      what = (f"{'1 user token + ' if use_user_token else ''}{max_history} "
              f"items x {num_levels} levels" if key == "inputs" else
              f"{num_levels} levels + EOS")
      raise ConfigError(
          f"{name}: feature length {key}={have} is too short; it needs "
          f"{n} ({what}). Set the task feature lengths to at least "
          f"{{'inputs': {need['inputs']}, 'targets': {need['targets']}}}.")


class RecFeatureConverter(seqio.EncDecFeatureConverter):
  """`EncDecFeatureConverter` that carries the recommendation features.

  Besides the encoder-decoder features (`encoder_input_tokens`,
  `decoder_input_tokens` = targets shifted right with BOS 0,
  `decoder_target_tokens`, `decoder_loss_weights`) it passes through
  `target_item` (int32 scalar), `user_index` (int32 scalar) and
  `history_items` (int32 `[max_history]`, padded with -1, since 0 is an
  item). Their lengths are filled in from `max_history`, so callers (and
  `seqio.Evaluator`) give lengths for `inputs` and `targets` only. Packing
  is not supported.
  """

  def __init__(self, max_history: int = 20, pack: bool = False, **kwargs):
    """Creates the converter.

    Args:
      max_history: length of `history_items`.
      pack: must be False.
      **kwargs: other `EncDecFeatureConverter` arguments.

    Raises:
      ConfigError: pack=True or bad max_history.
    """
    if pack:
      raise ConfigError("RecFeatureConverter cannot pack examples (its "
                        "pass-through features are per example).")
    _check_max_history(max_history)
    self._max_history = max_history
    spec = seqio.FeatureConverter.FeatureSpec
    kwargs.setdefault("passthrough_features", {
        "target_item": spec(dtype=tf.int32, rank=0),
        "user_index": spec(dtype=tf.int32, rank=0),
        "history_items": spec(dtype=tf.int32, rank=1),
    })
    super().__init__(pack=False, **kwargs)

  @property
  def max_history(self) -> int:
    return self._max_history

  def _with_passthrough_lengths(self, task_feature_lengths: Mapping[str, int]
                                ) -> dict[str, int]:
    lengths = dict(task_feature_lengths)
    for key in self._passthrough_features:
      if key == "history_items":
        lengths.setdefault(key, self._max_history)
      else:
        lengths.setdefault(key, 1)  # rank 0: never padded nor checked
    return lengths

  def __call__(self, ds: tf.data.Dataset,
               task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    return super().__call__(ds,
                            self._with_passthrough_lengths(task_feature_lengths))

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]
                        ) -> tf.data.Dataset:
    history_len = task_feature_lengths.get("history_items",
                                           self._max_history)

    def pad(ex):
      out = dict(ex)
      if "history_items" in self._passthrough_features:
        h = ex["history_items"][-history_len:]
        out["history_items"] = tf.pad(
            h, [[0, history_len - tf.shape(h)[0]]],
            constant_values=HISTORY_PAD)
        out["history_items"].set_shape([history_len])
      return out

    ds = ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE)
    # Only `inputs` / `targets` go through SeqIO's trim-and-pad (it cannot
    # handle scalars and pads with 0).
    token_lengths = {k: v for k, v in task_feature_lengths.items()
                     if k in self.TASK_FEATURES}
    ds = self._pack_or_pad(ds, token_lengths)
    return ds.map(self._convert_example,
                  num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]
                                ) -> Mapping[str, int]:
    return super().get_model_feature_lengths(
        self._with_passthrough_lengths(task_feature_lengths))
