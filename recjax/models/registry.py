"""The registry of model families and runnable methods.

A *family* is one model design in its own folder of `recjax/models/` (its
model, the layers it does not share, its gin files); a *method* is a family
with a recipe that the entry points and the benchmark can run by name
(LETTER-TIGER and TIGER + CALRec are methods of the `tiger` family).

Each family package registers itself when imported:

  registry.register_family(registry.FamilySpec(name="sasrec", kind=ITEM,
                                               ...))
  registry.register_method(registry.MethodSpec(name="sasrec",
                                               family="sasrec", ...))

`list_families()` / `list_methods()` import the built-in family packages
first, so a caller never has to. Nothing here imports TensorFlow or JAX.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from recjax.errors import ConfigError

# Kinds of family: what training means and which entry point runs them.
COUNT = "count"            # counted from the training sequences, no SGD
ITEM = "item"              # item-level: scores the catalog by item index
GENERATIVE = "generative"  # generates semantic-ID tokens, beam search
KINDS = (COUNT, ITEM, GENERATIVE)

# Inputs a family may need (open-ended: a family may name others).
SEMANTIC_IDS = "semantic_ids"
TEXT_EMBEDDINGS = "text_embeddings"
CF_EMBEDDINGS = "cf_embeddings"
ITEM_FEATURES = "item_features"
TIMESTAMPS = "timestamps"
PRETRAINED_CHECKPOINT = "pretrained_checkpoint"
LM_ASSET = "lm_asset"

# Benchmark schedules, shortest first; a method without one runs the next
# shorter one it has.
SCHEDULES = ("cpu", "cpu_long", "cpu_xl", "full")
SCHEDULE_FALLBACK = {"cpu_xl": "cpu_long", "cpu_long": "cpu"}
# The schedule of the end-to-end test of every method: toy width, a few
# steps. Every trained method registers one.
SMOKE = "smoke"

# The built-in families, imported on first use of the registry.
BUILTIN_FAMILIES = ("popularity", "markov", "sasrec", "tiger", "learn",
                    "lite")


@dataclasses.dataclass(frozen=True)
class Anchor:
  """A published (or peer-measured) result to read ours against.

  Attributes:
    dataset: benchmark data set name (e.g. "Beauty").
    source: who measured it (e.g. "TIGER (paper)").
    provenance: "published" or "measured here".
    metrics: test metrics, e.g. `{"recall@5": .0454, ...}`.
    protocol: the protocol of the numbers, in words.
  """

  dataset: str
  source: str
  provenance: str
  metrics: Mapping[str, float]
  protocol: str = ""


@dataclasses.dataclass(frozen=True)
class FamilySpec:
  """One model family.

  Attributes:
    name: registry name (also its folder under `recjax/models/`).
    kind: `COUNT`, `ITEM` or `GENERATIVE`.
    factory: dotted name of the model builder (gin's `MODEL_FN` for item
      and generative families, the fit function for count families).
    description: one paragraph for people.
    paper: citation (authors, venue, title).
    implements: what recjax implements of the paper.
    assumes: what recjax assumes or changes (smaller sizes, stand-ins).
    needs: inputs beyond the interaction sequences (see the constants
      above; open-ended).
    gin_files: the family's model gin files (search-path relative).
    configurables: names in the family's package that gin files may bind
      (registered as `<module>.<name>`).
    module: the family's package (default `recjax.models.<name>`).
    claim: what recjax measured, in one line, with the baseline measured
      beside it (test NDCG@10, all items, unless it says otherwise).
    status: "implemented", "partial" (what is missing is in `assumes`) or
      "planned".
  """

  name: str
  kind: str
  factory: str
  description: str
  paper: str = ""
  implements: str = ""
  assumes: str = ""
  needs: frozenset[str] = frozenset()
  gin_files: tuple[str, ...] = ()
  configurables: tuple[str, ...] = ()
  module: str = ""
  claim: str = ""
  status: str = "implemented"

  def __post_init__(self):
    if not self.module:
      object.__setattr__(self, "module", f"recjax.models.{self.name}")
    object.__setattr__(self, "configurables", tuple(self.configurables))
    if self.kind not in KINDS:
      raise ConfigError(f"FamilySpec {self.name!r}: kind={self.kind!r}; use "
                        f"one of {KINDS}.")
    if not self.name.isidentifier():
      raise ConfigError(f"FamilySpec name {self.name!r} must be a Python "
                        "identifier (it names the family's folder).")
    object.__setattr__(self, "needs", frozenset(self.needs))
    object.__setattr__(self, "gin_files", tuple(self.gin_files))


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """A runnable method: a family plus a recipe.

  Attributes:
    name: registry name (`benchmarks/quality.py --methods`).
    family: the family it belongs to.
    recipe: what the recipe adds to the family, one line.
    gin_files: gin files of the recipe (after the family's), search-path
      relative.
    gin_bindings: extra bindings of the recipe.
    needs: inputs beyond the family's (e.g. `CF_EMBEDDINGS`).
    semantic_ids: the semantic-ID stage's settings (generative methods):
      `recjax.semantic_ids.semantic_ids_stage` keyword arguments.
    cf_method: the method whose exported item embeddings are this method's
      CF embeddings (LETTER: `sasrec_recbole`), or None.
    pretrain_method: the method pre-trained on other data sets (the
      workspace's `pretrain_sources`, merged) whose run this method starts
      from (VQ-Rec's transfer: `vqrec_pretrain`), or None. Its run and
      semantic IDs are bound as PRETRAINED_DIR / PRETRAINED_CODES_DIR.
    schedules: benchmark schedule name -> gin file (search-path relative)
      with that schedule's bindings ("" = the family's own gin files as
      they are); see `schedule_file`.
    default_schedule: the schedule used when a method has none of the
      requested name.
    anchors: published numbers to print beside ours.
    text_encoder: the item text encoder of its `TEXT_EMBEDDINGS` (a name
      of `recjax.embed.named_encoders()`).
  """

  name: str
  family: str
  recipe: str = ""
  gin_files: tuple[str, ...] = ()
  gin_bindings: tuple[str, ...] = ()
  needs: frozenset[str] = frozenset()
  semantic_ids: Mapping[str, Any] | None = None
  cf_method: str | None = None
  pretrain_method: str | None = None
  schedules: Mapping[str, str] = dataclasses.field(default_factory=dict)
  default_schedule: str = "cpu"
  anchors: tuple[Anchor, ...] = ()
  text_encoder: str = "minilm"

  def __post_init__(self):
    object.__setattr__(self, "needs", frozenset(self.needs))
    object.__setattr__(self, "gin_files", tuple(self.gin_files))
    object.__setattr__(self, "gin_bindings", tuple(self.gin_bindings))
    object.__setattr__(self, "anchors", tuple(self.anchors))

  @property
  def spec(self) -> FamilySpec:
    """The method's family."""
    return get_family(self.family)

  @property
  def kind(self) -> str:
    """The family's kind."""
    return self.spec.kind

  @property
  def all_needs(self) -> frozenset[str]:
    """The family's needs and the recipe's."""
    return self.spec.needs | self.needs

  @property
  def all_gin_files(self) -> tuple[str, ...]:
    """The family's gin files, then the recipe's."""
    return self.spec.gin_files + self.gin_files

  def schedule_file(self, schedule: str) -> tuple[str, str | None]:
    """`(schedule actually used, its gin file or None)` of a schedule.

    A method without the requested schedule runs the next shorter one it
    has (`cpu_xl` -> `cpu_long` -> `cpu`), else its `default_schedule`;
    count methods have none (`("-", None)`).
    """
    if self.kind == COUNT:
      return "-", None
    name: str | None = schedule
    while name is not None:
      if name in self.schedules:
        return name, self.schedules[name] or None
      name = SCHEDULE_FALLBACK.get(name)
    return self.default_schedule, self.schedules.get(
        self.default_schedule) or None


_FAMILIES: dict[str, FamilySpec] = {}
_METHODS: dict[str, MethodSpec] = {}
_ENCODERS: dict[str, str] = {}
_loaded = False


def _load_builtin() -> None:
  """Imports every family package of `recjax/models/` (each registers
  itself): a new family is a new folder, no list to edit."""
  global _loaded
  if _loaded:
    return
  _loaded = True
  package = importlib.import_module("recjax.models")
  found = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                 if m.ispkg)
  for name in sorted(found, key=lambda n: (
      BUILTIN_FAMILIES.index(n) if n in BUILTIN_FAMILIES
      else len(BUILTIN_FAMILIES), n)):
    importlib.import_module(f"recjax.models.{name}")


def register_family(spec: FamilySpec, *, replace: bool = False
                    ) -> FamilySpec:
  """Adds a family; `replace=True` overwrites one of the same name.

  Raises:
    ConfigError: the name is taken (and `replace` is False).
  """
  if spec.name in _FAMILIES and not replace and _FAMILIES[spec.name] != spec:
    raise ConfigError(f"model family {spec.name!r} is already registered; "
                      "pick another name or pass replace=True.")
  _FAMILIES[spec.name] = spec
  return spec


def register_method(spec: MethodSpec, *, replace: bool = False
                    ) -> MethodSpec:
  """Adds a runnable method of a registered family.

  Raises:
    ConfigError: unknown family, or the name is taken.
  """
  if spec.family not in _FAMILIES:
    raise ConfigError(f"method {spec.name!r}: family {spec.family!r} is not "
                      f"registered (known: {sorted(_FAMILIES)}); register "
                      "the family first.")
  if spec.name in _METHODS and not replace and _METHODS[spec.name] != spec:
    raise ConfigError(f"method {spec.name!r} is already registered; pick "
                      "another name or pass replace=True.")
  _METHODS[spec.name] = spec
  return spec


def register_item_encoder(name: str, stage: str, *,
                          replace: bool = False) -> None:
  """Adds a trained item encoder (e.g. SAID stage 1).

  A method with `text_encoder=name` gets its `TEXT_EMBEDDINGS` from
  `stage(dataset_dir, out_dir)`, which writes an embed-stage directory
  (`embeddings.npy`, `manifest.json`).

  Args:
    name: the encoder's name (`MethodSpec.text_encoder`).
    stage: dotted path of the stage function.
    replace: overwrite an encoder of the same name.

  Raises:
    ConfigError: the name is taken.
  """
  if name in _ENCODERS and not replace and _ENCODERS[name] != stage:
    raise ConfigError(f"item encoder {name!r} is already registered.")
  _ENCODERS[name] = stage


def item_encoder_stage(name: str) -> str | None:
  """The stage function (dotted path) of a trained item encoder, or None
  for a text encoder of `recjax.embed.named_encoders()`."""
  _load_builtin()
  return _ENCODERS.get(name)


def unregister(name: str) -> None:
  """Removes a method, or a family with its methods (tests)."""
  _METHODS.pop(name, None)
  if name in _FAMILIES:
    del _FAMILIES[name]
    for method in [m for m, s in _METHODS.items() if s.family == name]:
      del _METHODS[method]


def list_families() -> list[str]:
  """Names of the registered families, in registration order."""
  _load_builtin()
  builtin = [f for f in BUILTIN_FAMILIES if f in _FAMILIES]
  return builtin + [f for f in _FAMILIES if f not in BUILTIN_FAMILIES]


def family_specs() -> list[FamilySpec]:
  """Every registered family's spec, in `list_families()` order."""
  return [_FAMILIES[name] for name in list_families()]


def list_methods(kind: str | None = None) -> list[str]:
  """Names of the runnable methods (optionally of one kind)."""
  order = list_families()
  methods = sorted(_METHODS.values(),
                   key=lambda s: order.index(s.family))  # Stable.
  return [s.name for s in methods
          if kind is None or _FAMILIES[s.family].kind == kind]


def get_family(name: str) -> FamilySpec:
  """The spec of family `name`.

  Raises:
    ConfigError: unknown family (the message lists the known ones).
  """
  _load_builtin()
  if name not in _FAMILIES:
    raise ConfigError(f"unknown model family {name!r}; registered: "
                      f"{', '.join(list_families())}.")
  return _FAMILIES[name]


def get_method(name: str) -> MethodSpec:
  """The spec of method `name`.

  Raises:
    ConfigError: unknown method (the message lists the known ones).
  """
  _load_builtin()
  if name not in _METHODS:
    raise ConfigError(f"unknown method {name!r}; registered: "
                      f"{', '.join(list_methods())}.")
  return _METHODS[name]


def resolve(dotted: str) -> Any:
  """The object a dotted name names (`package.module.Class.method` too).

  Raises:
    ConfigError: nothing importable has that name.
  """
  parts = dotted.split(".")
  for cut in range(len(parts) - 1, 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:cut]))
    except ModuleNotFoundError:
      continue
    try:
      for attr in parts[cut:]:
        obj = getattr(obj, attr)
    except AttributeError:
      break
    return obj
  raise ConfigError(f"{dotted!r} names nothing importable; check the "
                    "spec's factory.")


def families_table() -> str:
  """A markdown table of the registered families and their methods.

  The README's family table is this output (a test keeps them equal):
  family, kind, paper, what recjax implements, the measured claim, status
  and its methods.
  """
  lines = ["| family | kind | paper | implemented | measured | status | "
           "methods |", "|---|---|---|---|---|---|---|"]
  for spec in family_specs():
    methods = ", ".join(f"`{m}`" for m in list_methods()
                        if _METHODS[m].family == spec.name)
    cells = [f"`{spec.name}`", spec.kind, spec.paper or "(recjax baseline)",
             spec.implements, spec.claim or "-", spec.status, methods]
    lines.append("| " + " | ".join(c.replace("|", "/") for c in cells)
                 + " |")
  return "\n".join(lines)

