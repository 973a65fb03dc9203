"""Run a registered method by name on any recjax dataset.

  from recjax import pipeline
  work = pipeline.Workspace("runs/work")
  data = pipeline.DataSource.parse("Office=../shared/data/amazon-office")
  metrics = work.run("letter_tiger", data, seed=0, schedule="cpu")

`Workspace.run` reads the method's spec (`recjax.models.registry`) and runs
the stages it needs, each cached in the workspace and skipped when done:
the canonical dataset, MiniLM item embeddings (`text_embeddings`), the
semantic IDs of the spec's quantizer (generative methods; LETTER's first
trains its `cf_method` for the CF embeddings), a SeqIO task over the
dataset, then the one `recjax.train` entry point with the gin files of the
family, the recipe and the schedule, and the test evaluation. Every run
directory describes itself, so `python -m recjax.eval --model_dir=...` and
`python -m recjax.infer` work on it afterwards. A method registered by a
new family needs no edit here.

Layout: `<root>/<data name>/{dataset, minilm, semantic_ids/, item_data,
tfds}`, and a run per `<root>/<data name>/<method>[-<schedule>]/seed<k>`.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import pathlib
import re
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import gin

from recjax import gin_utils
from recjax import summaries
from recjax.datasets import NAMES
from recjax.datasets import CanonicalDataset
from recjax.datasets import stage as dataset_stage
from recjax.errors import ConfigError
from recjax.models import registry

# Per-run result file of `Workspace.run` (a finished run is not redone).
RESULT_FILE = "result.json"


def lcrec_category(folder: pathlib.Path) -> str:
  """The category of an LC-Rec folder (its one `<Category>.inter.json`).

  Raises:
    ConfigError: no or several `*.inter.json` files.
  """
  found = sorted(p.name[:-len(".inter.json")]
                 for p in pathlib.Path(folder).glob("*.inter.json"))
  if len(found) != 1:
    raise ConfigError(
        f"{folder}: expected exactly one <Category>.inter.json (LC-Rec "
        f"layout), found {found or 'none'}; pass an LC-Rec folder.")
  return found[0]


@dataclasses.dataclass(frozen=True)
class DataSource:
  """A benchmark data set: a table name and a `recjax.datasets` source.

  Attributes:
    name: the name in tables and run paths (e.g. "Office", "ML-100K").
    source: a `recjax.datasets.NAMES` entry.
    kwargs: the source's `recjax.datasets.load` arguments.
  """

  name: str
  source: str
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def lcrec(cls, name: str, folder: str | pathlib.Path) -> DataSource:
    """An LC-Rec folder (`<Category>.inter.json`, `<Category>.item.json`)."""
    folder = pathlib.Path(folder).absolute()
    if not folder.is_dir():
      raise ConfigError(f"data set {name}: {folder} is not a directory; pass "
                        "an LC-Rec folder (NAME=PATH).")
    return cls(name, "amazon_lcrec", {"data_dir": str(folder),
                                      "category": lcrec_category(folder)})

  @classmethod
  def parse(cls, text: str) -> DataSource:
    """`NAME=PATH` (an LC-Rec folder) or a source name (`movielens_100k`).

    Raises:
      ConfigError: neither form.
    """
    if "=" in text:
      name, path = text.split("=", 1)
      return cls.lcrec(name, path)
    if text in NAMES:
      return cls(text, text, {})
    raise ConfigError(f"data set {text!r}: pass NAME=PATH (an LC-Rec "
                      f"folder) or one of the sources {', '.join(NAMES)}.")

  def item_data_bindings(self, cache_dir: pathlib.Path | None
                         ) -> list[str]:
    """Gin bindings of `ItemDataConfig` that read this data set."""
    kwargs = dict(self.kwargs)
    prefix = "recjax.item_sequences.ItemDataConfig"
    out = [f"{prefix}.source = {self.source!r}"]
    for field in ("data_dir", "category"):
      if field in kwargs:
        out.append(f"{prefix}.{field} = {kwargs.pop(field)!r}")
    if kwargs:
      out.append(f"{prefix}.source_kwargs = {kwargs!r}")
    if cache_dir is not None:
      out.append(f"{prefix}.cache_dir = {str(cache_dir)!r}")
    return out


def _settings_key(config: Mapping[str, Any]) -> str:
  """Eight hex digits naming a set of semantic-ID settings."""
  text = json.dumps(dict(config), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:8]


_COLD_BINDING = re.compile(
    r"ItemDataConfig\.(cold_fraction|cold_seed)\s*=\s*([^\s#]+)")


def cold_start_settings(bindings: Sequence[str]) -> dict[str, Any]:
  """The cold-start protocol's settings bound in gin `bindings`.

  Args:
    bindings: gin binding strings (e.g. a benchmark's `--gin`).

  Returns:
    `cold_fraction` and `cold_seed` as bound (the last binding wins), or
    an empty dict when `cold_fraction` is not bound.

  Raises:
    ConfigError: a value that is not a number.
  """
  found: dict[str, Any] = {}
  for binding in bindings:
    for name, value in _COLD_BINDING.findall(binding):
      try:
        found[name] = ast.literal_eval(value)
      except (ValueError, SyntaxError) as e:
        raise ConfigError(f"ItemDataConfig.{name} = {value!r} is not a "
                          "number.") from e
  if not found.get("cold_fraction"):
    return {}
  return {"cold_fraction": float(found["cold_fraction"]),
          "cold_seed": int(found.get("cold_seed", 0))}


class Workspace:
  """Cached stages and runs of methods on data sets under one root."""

  def __init__(self, root: str | pathlib.Path, *, quiet: bool = True,
               semantic_ids_overrides: Mapping[str, Any] | None = None,
               pretrain_sources: Sequence[DataSource] = (),
               lm_path: str | pathlib.Path | None = None):
    """Creates the workspace (nothing is written yet).

    Args:
      root: the folder of every stage and run.
      quiet: no progress bars in the stages.
      semantic_ids_overrides: settings that replace the specs' semantic-ID
        settings (tests: a small codebook on a toy catalog); each method
        takes those its quantizer knows.
      pretrain_sources: the data sets that methods with a
        `pretrain_method` pre-train on (merged into one, `merged_source`).
      lm_path: a causal-LM `.gguf` file that replaces the pinned SmolLM2 in
        the LLM encoders and SAID (tests: a tiny random Llama).
    """
    self.root = pathlib.Path(root).absolute()
    self.quiet = quiet
    self.semantic_ids_overrides = dict(semantic_ids_overrides or {})
    self.pretrain_sources = tuple(pretrain_sources)
    self.lm_path = None if lm_path is None else str(lm_path)

  # -- stages -----------------------------------------------------------------

  def dataset(self, data: DataSource) -> tuple[CanonicalDataset,
                                               pathlib.Path]:
    """The canonical dataset (staged once)."""
    out = self.root / data.name / "dataset"
    return dataset_stage.prepare(data.source, out, **dict(data.kwargs)), out

  def embeddings(self, data: DataSource,
                 encoder: str = "minilm") -> pathlib.Path:
    """Item text embeddings of the data set (computed once per encoder).

    Args:
      data: the data set.
      encoder: a name of `embed.named_encoders()` ("minilm",
        "smollm2-mean", "smollm2-last") or a trained item encoder
        (`registry.register_item_encoder`, e.g. "said").

    Returns:
      `<root>/<data>/<encoder>`, an embed-stage directory.
    """
    from recjax import embed  # pylint: disable=g-import-not-at-top
    encoders = embed.named_encoders()
    trained = registry.item_encoder_stage(encoder)
    if trained is not None:
      _, ds_dir = self.dataset(data)
      return pathlib.Path(registry.resolve(trained)(
          ds_dir, self.root / data.name / encoder, lm_path=self.lm_path))
    if encoder not in encoders:
      raise ConfigError(f"unknown text encoder {encoder!r}; known: "
                        f"{sorted(encoders)}.")
    config = encoders[encoder]
    if self.lm_path and config.model_dir == "smollm2_135m":
      config = dataclasses.replace(config, model_dir=str(self.lm_path))
    _, ds_dir = self.dataset(data)
    return pathlib.Path(embed.embed_stage(
        ds_dir, self.root / data.name / encoder, config))

  def run_dir(self, method: str, data: DataSource, seed: int,
              schedule: str = "cpu") -> pathlib.Path:
    """`<root>/<data>/<method>[-<schedule>]/seed<k>` of one run."""
    spec = registry.get_method(method)
    used, _ = spec.schedule_file(schedule)
    suffix = "" if spec.kind == registry.COUNT else f"-{used}"
    return self.root / data.name / f"{method}{suffix}" / f"seed{seed}"

  def cf_embeddings(self, method: str, data: DataSource, seed: int,
                    schedule: str = "cpu") -> pathlib.Path | None:
    """The exported item embeddings of the method's `cf_method` run."""
    spec = registry.get_method(method)
    if not spec.cf_method:
      return None
    self.run(spec.cf_method, data, seed, schedule=schedule)
    from recjax import train_items  # pylint: disable=g-import-not-at-top
    path = (self.run_dir(spec.cf_method, data, seed, schedule) /
            train_items.EMBEDDINGS_EXPORT)
    if not path.exists():
      raise ConfigError(f"{path} does not exist: {spec.cf_method!r} exports "
                        f"no item embeddings, so it cannot be {method!r}'s "
                        "cf_method.")
    return path

  def merged_source(self) -> DataSource:
    """The pre-training sources as one data set (`recjax.datasets.merge`).

    Raises:
      ConfigError: fewer than one source.
    """
    if not self.pretrain_sources:
      raise ConfigError(
          "this method pre-trains on other data sets: give the workspace "
          "pretrain_sources (benchmarks/quality.py --pretrain_data "
          "Beauty,Yelp).")
    if len(self.pretrain_sources) == 1:
      return self.pretrain_sources[0]
    parts = tuple({"name": d.name, "source": d.source, **dict(d.kwargs)}
                  for d in self.pretrain_sources)
    name = "+".join(d.name for d in self.pretrain_sources)
    return DataSource(name, "merged", {"parts": parts, "name": name})

  def pretrained(self, method: str, data: DataSource,
                 schedule: str = "cpu") -> tuple[pathlib.Path, pathlib.Path]:
    """`(run, semantic IDs)` of a method's pre-training (seed 0, cached).

    Raises:
      ConfigError: the target is one of the pre-training sources.
    """
    spec = registry.get_method(method)
    merged = self.merged_source()
    for source in self.pretrain_sources:
      if source.name == data.name or (
          source.kwargs.get("data_dir") is not None and
          source.kwargs.get("data_dir") == data.kwargs.get("data_dir")):
        raise ConfigError(
            f"{data.name} is among the pre-training sources "
            f"({merged.name}); a transfer target must be unseen in "
            "pre-training: pick other --pretrain_data.")
    self.run(spec.pretrain_method, merged, 0, schedule)
    return (self.run_dir(spec.pretrain_method, merged, 0, schedule),
            self.semantic_ids(spec.pretrain_method, merged, 0, schedule))

  def semantic_ids(self, method: str, data: DataSource, seed: int,
                   schedule: str = "cpu",
                   cold: Mapping[str, Any] | None = None) -> pathlib.Path:
    """The semantic IDs of a method's quantizer (cached).

    Args:
      method: a registered method with `semantic_ids` settings.
      data: the data set.
      seed: the quantizer's seed.
      schedule: the run's schedule (LETTER's CF embeddings depend on it).
      cold: the cold-start protocol's `cold_fraction` / `cold_seed`
        (`cold_start_settings`): a quantizer fitted on training items
        leaves the cold items out of its fit.

    Returns:
      The semantic-ID stage directory.
    """
    from recjax import semantic_ids  # pylint: disable=g-import-not-at-top
    spec = registry.get_method(method)
    if not spec.semantic_ids:
      raise ConfigError(f"method {method!r} has no semantic_ids settings in "
                        "its MethodSpec.")
    quantizer = spec.semantic_ids["method"]
    known = semantic_ids.option_names(quantizer)
    config = dict(spec.semantic_ids, **{
        k: v for k, v in self.semantic_ids_overrides.items() if k in known})
    config.pop("method")
    config.pop("num_user_buckets", None)  # A task setting (see `task`).
    if cold and cold.get("cold_fraction") and config.get("fit_on") == "train":
      config.update(cold)
    cf = self.cf_embeddings(method, data, seed, schedule)
    _, ds_dir = self.dataset(data)
    name = f"{quantizer}-seed{seed}"
    if config.get("collisions") == "none" or config.get("fit_on", "all") != (
        "all"):  # Codes for item features (RPG, VQ-Rec): their own folder.
      name = f"{quantizer}-{_settings_key(config)}-seed{seed}"
    if spec.text_encoder != "minilm":  # Codes of another text encoder.
      name = f"{spec.text_encoder}-{name}"
    out = self.root / data.name / "semantic_ids" / name
    return pathlib.Path(semantic_ids.semantic_ids_stage(
        self.embeddings(data, spec.text_encoder), ds_dir, out,
        method=quantizer, seed=seed,
        cf_embeddings=None if cf is None else str(cf),
        progress=not self.quiet, **config))

  def task(self, method: str, data: DataSource, seed: int,
           schedule: str = "cpu") -> str:
    """Registers the SeqIO task of a generative run; returns its name."""
    from recjax import tasks  # pylint: disable=g-import-not-at-top
    from recjax.datasets import tfds_builders  # pylint: disable=g-import-not-at-top
    sid = self.semantic_ids(method, data, seed, schedule)
    category = data.kwargs.get("category")
    if (data.source == "amazon_lcrec" and
        category in tfds_builders.LCREC_CATEGORIES):
      tfds_name = f"recjax_amazon_lcrec/{category.lower()}"
      data_dir, manual = self.root / "tfds", data.kwargs["data_dir"]
    else:  # Any source, through its staged canonical directory.
      _, ds_dir = self.dataset(data)
      tfds_name = "recjax_canonical"
      data_dir, manual = self.root / data.name / "tfds", str(ds_dir)
    name = f"quality_{data.name.lower()}_{method}_seed{seed}"
    # The one place a run's user buckets are set: the task (default
    # `tasks.tiger.DEFAULT_USER_BUCKETS`); runs read it from their vocabulary.
    buckets = {k: int(v) for k, v in self.semantic_ids_overrides.items()
               if k == "num_user_buckets"}
    tasks.register_tiger_task(
        name, tfds_name, str(sid), data_dir=str(data_dir),
        manual_dir=manual, **buckets)
    return name

  # -- runs -------------------------------------------------------------------

  def gin_setup(self, method: str, data: DataSource, seed: int,
                schedule: str = "cpu", run: pathlib.Path | None = None,
                extra_gin: Sequence[str] = ()
                ) -> tuple[list[str], list[str]]:
    """`(gin files, bindings)` of one run of a method on a data set.

    `extra_gin` (the bindings the run adds last) is read for the
    cold-start protocol only, whose items the codes must not be fitted on.
    """
    spec = registry.get_method(method)
    run = run or self.run_dir(method, data, seed, schedule)
    _, schedule_file = spec.schedule_file(schedule)
    extra = [schedule_file] if schedule_file else []
    files = list(spec.all_gin_files) + extra
    bindings = [f"MODEL_DIR = {str(run)!r}"] + list(spec.gin_bindings)
    if spec.kind == registry.COUNT:
      return (["runs/train_counts.gin"] + files,
              bindings + data.item_data_bindings(None))
    if spec.kind == registry.ITEM:
      emb = (self.embeddings(data, spec.text_encoder)
             if registry.TEXT_EMBEDDINGS in spec.all_needs else None)
      if registry.SEMANTIC_IDS in spec.all_needs:
        sid = self.semantic_ids(method, data, seed, schedule,
                                cold_start_settings(extra_gin))
        bindings.append(f"CODES_DIR = {str(sid)!r}")
      if spec.pretrain_method:
        pre_run, pre_codes = self.pretrained(method, data, schedule)
        bindings += [f"PRETRAINED_DIR = {str(pre_run)!r}",
                     f"PRETRAINED_CODES_DIR = {str(pre_codes)!r}"]
      return (["runs/train_items.gin"] + files, bindings + [
          f"SEED = {seed}",
          f"EMBEDDINGS_DIR = {None if emb is None else str(emb)!r}"] +
              data.item_data_bindings(self.root / data.name / "item_data"))
    task = self.task(method, data, seed, schedule)
    return (["runs/train.gin", "runs/eval.gin"] + files,
            bindings + [f"MIXTURE_OR_TASK_NAME = {task!r}",
                        f"SEED = {seed}"])

  def run(self, method: str, data: DataSource, seed: int = 0,
          schedule: str = "cpu", extra_gin: Sequence[str] = (),
          run: pathlib.Path | None = None,
          accept_changes: bool = False) -> dict[str, float]:
    """Trains (or resumes, or reuses) one run and returns its test metrics.

    Args:
      method: a registered method.
      data: the data set.
      seed: the run's seed.
      schedule: a benchmark schedule (`registry.SCHEDULES`).
      extra_gin: bindings applied last.
      run: the run directory (default: `run_dir(...)`).
      accept_changes: resume or reuse a run whose `config.gin` binds some
        parameter otherwise than this configuration (the differences are
        printed). By default that is an error: the cached result would not
        be this configuration's.

    Returns:
      `test/<metric>`, `test_excl/<metric>`, `train_seconds` and what the
      run's training reports; also written to `<run>/result.json`, which
      makes a second call a no-op.

    Raises:
      ConfigError: the run directory was trained with another configuration
        (a changed gin default, a variant written into the default's
        directory), unless `accept_changes`.
    """
    from recjax import eval as eval_lib  # pylint: disable=g-import-not-at-top
    from recjax import run_lib  # pylint: disable=g-import-not-at-top
    spec = registry.get_method(method)
    run = run or self.run_dir(method, data, seed, schedule)
    done = run / RESULT_FILE
    described = (run / run_lib.CONFIG_FILE).exists()
    if done.exists() and not described:
      return json.loads(done.read_text())
    files, bindings = self.gin_setup(method, data, seed, schedule, run,
                                     extra_gin)
    if described:
      self._check_config(run, files, bindings + list(extra_gin),
                         accept_changes)
    if done.exists():
      return json.loads(done.read_text())
    t0 = time.time()
    gin.clear_config()
    try:
      gin_utils.parse_gin(files, bindings + list(extra_gin), finalize=False)
      out = gin.get_configurable("recjax.train.run")()
      results = dict(out) if isinstance(out, Mapping) else {}
    finally:
      gin.clear_config()
    if spec.kind == registry.GENERATIVE:
      # Since step 0 when the run resumed.
      elapsed = [r["train/elapsed_seconds"]
                 for r in summaries.read_history(run)
                 if "train/elapsed_seconds" in r]
      results = eval_lib.evaluate_run(str(run))
      results["train_seconds"] = max(elapsed, default=time.time() - t0)
    results = {k: float(v) for k, v in results.items()
               if isinstance(v, (int, float))}
    results.setdefault("train_seconds", time.time() - t0)
    run_lib.write_json(done, results)
    return results

  def _check_config(self, run: pathlib.Path, files: Sequence[str],
                    bindings: Sequence[str], accept: bool) -> None:
    """Refuses a run directory trained with another configuration."""
    from recjax import run_lib  # pylint: disable=g-import-not-at-top
    try:
      depth = len(run.resolve().relative_to(self.root.resolve()).parts)
    except ValueError:
      depth = 0
    changes = run_lib.config_changes(run, files, bindings, depth)
    if not changes:
      return
    lines = "\n".join(f"  {k}: {old} (run) -> {new} (now)"
                      for k, old, new in changes)
    if accept:
      print(f"{run}: reused although its configuration differs:\n{lines}")
      return
    raise ConfigError(
        f"{run} was trained with another configuration:\n{lines}\nIts "
        "result is not this configuration's. Delete the directory to "
        "train again, give the new configuration its own directory "
        "(benchmarks/quality.py --gin / --variant do), or reuse it as it "
        "is (accept_changes=True; quality.py --accept_config_changes).")
