"""A tiny SASRec gin experiment over synthetic data, for item-run tests."""

import pathlib
import textwrap


def sasrec_gin(root: pathlib.Path, synth: dict, extra: str = ""
               ) -> pathlib.Path:
  """Writes `root/tiny_sasrec.gin`: 20 steps of a 16-wide SASRec.

  Args:
    root: folder for the file.
    synth: `source_kwargs` of the synthetic source.
    extra: more gin lines (appended, so they win).

  Returns:
    The file's path.
  """
  path = root / "tiny_sasrec.gin"
  path.write_text(textwrap.dedent(f"""
      include 'models/sasrec.gin'
      TRAIN_STEPS = 20
      BATCH_SIZE = 16
      EVAL_PERIOD = 10
      NUM_DECODES = 10
      MAX_LENGTH = 8
      recjax.item_sequences.ItemDataConfig.source = "synthetic"
      recjax.item_sequences.ItemDataConfig.source_kwargs = {synth!r}
      recjax.models.sasrec.SASRecConfig.hidden_dim = 16
      recjax.models.sasrec.SASRecConfig.num_layers = 1
      recjax.models.sasrec.SASRecConfig.mlp_dim = 16
      recjax.trainer.TrainerConfig.log_period = 10
      recjax.trainer.TrainerConfig.async_checkpoints = False
      """) + textwrap.dedent(extra))
  return path


def train_sasrec(root: pathlib.Path, synth: dict, extra: str = ""
                 ) -> tuple[pathlib.Path, pathlib.Path, dict]:
  """Trains `sasrec_gin(root, synth, extra)` into `root/run`.

  Returns:
    `(gin_file, model_dir, the run's metrics)`.
  """
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  gin_file = sasrec_gin(root, synth, extra)
  model_dir = root / "run"
  gin.clear_config()
  try:
    gin_utils.parse_gin(["runs/train_items.gin", str(gin_file)],
                        [f"MODEL_DIR = {str(model_dir)!r}"], finalize=False)
    metrics = gin.get_configurable("recjax.train_items.train_items")()
  finally:
    gin.clear_config()
  return gin_file, model_dir, metrics
