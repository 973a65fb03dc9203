"""Every binding of a shipped gin file takes effect.

Each shipped experiment, and each registered method with each of its
schedules, is built in a dry run (the data, the model, the trainer and the
evaluator, no training) on toy data; a binding that the run never read
(gin's operative config lacks it) fails the test, so a gin file cannot
claim a setting that changes nothing.
"""

import pathlib
import re
import textwrap

import gin
import pytest
import tiny_semantic_ids

from recjax import gin_utils
from recjax.models import registry

GIN_DIR = pathlib.Path(gin_utils.default_search_paths()[0])
SYNTH = {"num_users": 400, "num_items": 40, "num_clusters": 4, "seed": 1}
ITEM_DATA = "recjax.item_sequences.ItemDataConfig"
DATA_BINDINGS = [f"{ITEM_DATA}.source = 'synthetic'",
                 f"{ITEM_DATA}.source_kwargs = {SYNTH!r}",
                 f"{ITEM_DATA}.data_dir = None", f"{ITEM_DATA}.category = None"]
_KEY = re.compile(r"^([A-Za-z_][\w./]*)\s*=", re.M)


def _keys(config_text: str) -> set[str]:
  """The bound names of a gin config text (`scope/selector.param`)."""
  return set(_KEY.findall(config_text))


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
  """A registered tiny TIGER task, materialised once."""
  from recjax import tasks  # pylint: disable=g-import-not-at-top
  from recjax.tasks import materialize  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("gin_configs")
  sem = tiny_semantic_ids.write_random_codes(root / "semantic_ids", (4, 4, 4),
                                             60, num_user_buckets=10)
  tasks.register_tiger_task("gin_configs_tiny", "recjax_synthetic/tiny",
                            str(sem), data_dir=str(root / "tfds"),
                            max_history=5, num_user_buckets=10)
  dirs = {split: materialize.materialize("gin_configs_tiny", split,
                                         root / split)
          for split in ("train", "validation")}
  return dirs


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
  """MiniLM vectors of the synthetic items (LEARN and LITE read them)."""
  from recjax import embed  # pylint: disable=g-import-not-at-top
  from recjax.datasets import stage  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("gin_embeddings")
  stage.prepare("synthetic", root / "dataset", **SYNTH)
  return str(embed.embed_stage(root / "dataset", root / "minilm"))


@pytest.fixture(scope="module")
def codes(embeddings, tmp_path_factory):
  """RPG's codes of the synthetic items: 4-digit OPQ, no collision level."""
  from recjax import semantic_ids  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("gin_codes")
  dataset = pathlib.Path(embeddings).parent / "dataset"
  return str(semantic_ids.semantic_ids_stage(
      embeddings, dataset, root / "codes", method="opq", num_subspaces=4,
      codebook_size=8, collisions="none", fit_on="train", progress=False))


def _unused(files, bindings, tmp_path):
  """Parses, dry-runs `recjax.train.run`; returns the unread bindings."""
  gin.clear_config()
  try:
    gin_utils.parse_gin(files, [f"MODEL_DIR = {str(tmp_path / 'run')!r}"] +
                        list(bindings), finalize=False)
    bound = _keys(gin.config_str())
    gin.bind_parameter("recjax.train.run.fn", gin.query_parameter(
        "recjax.train.run.fn"))
    fn = gin.query_parameter("recjax.train.run.fn").selector
    gin.bind_parameter(f"{fn}.dry_run", True)
    gin.get_configurable("recjax.train.run")()
    used = _keys(gin.operative_config_str())
  finally:
    gin.clear_config()
  # Operative names may be shortened (`EvalConfig.ks`): match suffixes.
  return sorted(b for b in bound - {f"{fn}.dry_run"}
                if not any(b == u or b.endswith("." + u) or
                           b.endswith("/" + u) for u in used))


def _generative_bindings(tiny_task):
  return ["MIXTURE_OR_TASK_NAME = 'gin_configs_tiny'",
          f"train/recjax.run_lib.DatasetConfig.numpy_dir = "
          f"{str(tiny_task['train'])!r}",
          f"validation/recjax.run_lib.DatasetConfig.numpy_dir = "
          f"{str(tiny_task['validation'])!r}"]


@pytest.mark.parametrize("experiment", sorted(
    p.name for p in (GIN_DIR / "experiments").glob("*.gin")))
def test_every_binding_of_an_experiment_is_read(experiment, tiny_task,
                                                embeddings, codes, tmp_path):
  text = (GIN_DIR / "experiments" / experiment).read_text()
  if "sasrec" in text or "ItemDataConfig" in text or "rpg" in text:
    files = ["runs/train_items.gin", f"experiments/{experiment}"]
    extra = DATA_BINDINGS + [f"CODES_DIR = {codes!r}"] * ("rpg" in text)
  else:
    files = ["runs/train.gin", f"experiments/{experiment}"]
    extra = _generative_bindings(tiny_task)
  assert _unused(files, extra, tmp_path) == []


def _item_bindings(spec, embeddings, codes):
  # No warm-up: a schedule in epochs is a few steps on the tiny data.
  out = DATA_BINDINGS + [f"EMBEDDINGS_DIR = {embeddings!r}",
                         "WARMUP_STEPS = 0"]
  if registry.SEMANTIC_IDS in spec.all_needs:
    out.append(f"CODES_DIR = {codes!r}")
  return out


def _pretrained(method, schedule, embeddings, codes, model_dir):
  """A one-step run of `method` (a pre-training) under `schedule`: the
  PRETRAINED_DIR of the methods that transfer from it."""
  spec = registry.get_method(method)
  _, schedule_file = spec.schedule_file(schedule)
  files = (["runs/train_items.gin"] + list(spec.all_gin_files) +
           ([schedule_file] if schedule_file else []))
  gin.clear_config()
  try:
    gin_utils.parse_gin(files, [f"MODEL_DIR = {str(model_dir)!r}"] +
                        _item_bindings(spec, embeddings, codes) +
                        ["TRAIN_STEPS = 1", "EVAL_PERIOD = 1"],
                        finalize=False)
    gin.get_configurable("recjax.train.run")()
  finally:
    gin.clear_config()
  return str(model_dir)


@pytest.mark.parametrize("method", registry.list_methods())
def test_every_binding_of_a_method_and_its_schedules_is_read(
    method, tiny_task, embeddings, codes, tmp_path):
  spec = registry.get_method(method)
  schedules = sorted((n, f) for n, f in spec.schedules.items() if f) or [
      (None, None)]
  seen = set()
  for name, schedule in schedules:
    if schedule in seen:
      continue
    seen.add(schedule)
    files = list(spec.all_gin_files) + ([schedule] if schedule else [])
    bindings = list(spec.gin_bindings)
    if spec.kind == registry.COUNT:
      files = ["runs/train_counts.gin"] + files
      bindings += DATA_BINDINGS
    elif spec.kind == registry.ITEM:
      files = ["runs/train_items.gin"] + files
      bindings += _item_bindings(spec, embeddings, codes)
      if spec.pretrain_method:
        pre = _pretrained(spec.pretrain_method, name, embeddings, codes,
                          tmp_path / f"pre-{name}")
        bindings += [f"PRETRAINED_DIR = {pre!r}",
                     f"PRETRAINED_CODES_DIR = {codes!r}"]
    else:
      files = ["runs/train.gin"] + files
      bindings += _generative_bindings(tiny_task)
    assert _unused(files, bindings, tmp_path / "x") == [], (method, schedule)


def test_the_check_catches_a_binding_nobody_reads(tmp_path, tiny_task):
  lie = tmp_path / "lie.gin"
  lie.write_text(textwrap.dedent("""
      include 'models/tiger_small.gin'
      recjax.models.tiger.EncoderDecoderModel.label_smoothing = 0.3
      TRAIN_STEPS = 5
      WARMUP_STEPS = 1
      """))
  unused = _unused(["runs/train.gin", str(lie)],
                   _generative_bindings(tiny_task), tmp_path)
  # (gin prints the shortest unique name.)
  assert len(unused) == 1
  assert unused[0].endswith("tiger.EncoderDecoderModel.label_smoothing")
