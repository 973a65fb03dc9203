"""Tests of recjax.models.registry and the family layout."""

import ast
import pathlib

import pytest

from recjax.errors import ConfigError
from recjax.models import registry

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS = REPO / "recjax" / "models"


def test_lists_cover_the_builtin_families_and_methods():
  assert registry.list_families()[:6] == [
      "popularity", "markov", "sasrec", "tiger", "learn", "lite"]
  assert set(registry.list_methods()) >= {
      "popularity", "markov", "sasrec", "sasrec_recbole", "tiger",
      "letter_tiger", "tiger_calrec", "letter_tiger_calrec", "learn",
      "lite"}
  assert registry.list_methods(registry.COUNT) == ["popularity", "markov"]
  assert set(registry.list_methods(registry.GENERATIVE)) == {
      "tiger", "letter_tiger", "tiger_calrec", "letter_tiger_calrec"}


def test_every_spec_is_complete_and_resolvable():
  for name in registry.list_families():
    spec = registry.get_family(name)
    assert (MODELS / name / "__init__.py").exists(), name
    assert spec.description and spec.implements, name
    assert callable(registry.resolve(spec.factory)), spec.factory
    for gin_file in spec.gin_files:
      assert (REPO / "gin_configs" / gin_file).exists(), gin_file
  for name in registry.list_methods():
    method = registry.get_method(name)
    for gin_file in method.all_gin_files:
      assert (REPO / "gin_configs" / gin_file).exists(), gin_file
    if method.cf_method:
      assert registry.get_method(method.cf_method).kind == registry.ITEM
      assert registry.CF_EMBEDDINGS in method.all_needs
    if method.kind == registry.GENERATIVE:
      assert method.semantic_ids["method"] in ("rqvae", "letter")
    for anchor in method.anchors:  # What a paper reports, of these four.
      assert {"recall@10", "ndcg@10"} <= set(anchor.metrics) <= {
          "recall@5", "ndcg@5", "recall@10", "ndcg@10"}, anchor


def test_no_family_imports_another():
  families = set(registry.list_families())
  for name in families:
    for path in (MODELS / name).rglob("*.py"):
      tree = ast.parse(path.read_text())
      for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module:
          targets = [node.module] + [f"{node.module}.{a.name}"
                                     for a in node.names]
        elif isinstance(node, ast.Import):
          targets = [a.name for a in node.names]
        for target in targets:
          parts = target.split(".")
          if parts[:2] == ["recjax", "models"] and len(parts) > 2:
            assert parts[2] in (name, "base", "layers", "losses",
                                "registry"), (path, target)


def test_errors_name_what_is_known():
  with pytest.raises(ConfigError, match=r"unknown method 'nope'; "
                     r"registered: popularity, markov"):
    registry.get_method("nope")
  with pytest.raises(ConfigError, match=r"unknown model family 'nope'"):
    registry.get_family("nope")
  with pytest.raises(ConfigError, match=r"family 'ghost' is not registered"):
    registry.register_method(registry.MethodSpec(name="x", family="ghost"))
  with pytest.raises(ConfigError, match=r"kind='neural'; use one of"):
    registry.FamilySpec(name="x", kind="neural", factory="a.b",
                        description="d")
  with pytest.raises(ConfigError, match="already registered"):
    registry.register_family(registry.FamilySpec(
        name="sasrec", kind=registry.COUNT, factory="a.b", description="d"))


def test_register_and_unregister_a_toy_family():
  spec = registry.FamilySpec(name="toy_registry", kind=registry.ITEM,
                             factory="recjax.models.popularity.model."
                             "PopularityModel.fit", description="toy")
  registry.register_family(spec)
  try:
    registry.register_method(registry.MethodSpec(
        name="toy_registry_m", family="toy_registry",
        schedules={"cpu": "schedules/x.gin"}))
    assert "toy_registry" in registry.list_families()
    method = registry.get_method("toy_registry_m")
    assert method.kind == registry.ITEM
    assert method.schedule_file("cpu") == ("cpu", "schedules/x.gin")
    # No longer schedule: the next shorter one it has.
    assert method.schedule_file("cpu_xl") == ("cpu", "schedules/x.gin")
    assert registry.get_method("markov").schedule_file("cpu") == ("-", None)
  finally:
    registry.unregister("toy_registry")
  assert "toy_registry" not in registry.list_families()
  assert "toy_registry_m" not in registry.list_methods()


def test_command_line_describes_methods_and_prints_the_table(capsys):
  from recjax.models import __main__ as cli  # pylint: disable=g-import-not-at-top
  assert cli.main([]) == 0
  assert capsys.readouterr().out.strip() == registry.families_table()
  assert cli.main(["tiger", "sasrec_recbole"]) == 0
  out = capsys.readouterr().out
  assert "tiger: generative method of the `tiger` family" in out
  assert "anchor Beauty: TIGER (paper) (published)" in out
  assert "schedule cpu_xl: cpu (schedules/sasrec_recbole_cpu.gin)" in out
  assert cli.main(["nope"]) == 2
  assert "unknown method 'nope'; registered: popularity" in (
      capsys.readouterr().err)
