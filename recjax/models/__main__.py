"""`python -m recjax.models [METHOD ...]`: what the registry holds.

Without arguments: the families table (the README's). With method names:
each method's family, kind, recipe, needs, gin files, schedules and
published anchors, i.e. what `benchmarks/quality.py --methods` would run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recjax.errors import RecjaxError
from recjax.models import registry


def describe(method: str) -> str:
  """A person-readable description of a registered method."""
  spec = registry.get_method(method)
  family = spec.spec
  lines = [f"{method}: {family.kind} method of the `{family.name}` family",
           f"  {family.description}"]
  if family.paper:
    lines.append(f"  paper: {family.paper}")
  lines.append(f"  recipe: {spec.recipe or '-'}")
  lines.append(f"  implements: {family.implements}")
  if family.assumes:
    lines.append(f"  assumes: {family.assumes}")
  lines.append(f"  needs: {', '.join(sorted(spec.all_needs)) or '-'}")
  lines.append(f"  gin files: {', '.join(spec.all_gin_files) or '-'}")
  for name in registry.SCHEDULES + (registry.SMOKE,):
    used, path = spec.schedule_file(name)
    lines.append(f"  schedule {name}: {used}"
                 + (f" ({path})" if path else ""))
  if spec.cf_method:
    lines.append(f"  CF embeddings from: {spec.cf_method}")
  for anchor in spec.anchors:
    values = ", ".join(f"{k} {v:.4f}" for k, v in anchor.metrics.items())
    lines.append(f"  anchor {anchor.dataset}: {anchor.source} "
                 f"({anchor.provenance}): {values}")
  if family.claim:
    lines.append(f"  measured: {family.claim}")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m recjax.models",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("methods", nargs="*",
                      help="registered methods to describe (default: the "
                      "families table)")
  args = parser.parse_args(argv)
  if not args.methods:
    print(registry.families_table())
    return 0
  try:
    print("\n\n".join(describe(m) for m in args.methods))
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
