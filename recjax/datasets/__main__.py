"""`python -m recjax.datasets NAME --out DIR [--opt key=value ...]`.

Builds a canonical dataset directory and prints its statistics, e.g.

  python -m recjax.datasets movielens_100k --out runs/data/ml100k
  python -m recjax.datasets amazon_lcrec --out runs/data/office \
      --opt data_dir=../shared/data/amazon-office --opt category=Office
"""

from __future__ import annotations

import argparse
import ast
import sys

from recjax import datasets
from recjax import quiet
from recjax.datasets import stage
from recjax.errors import RecjaxError


def _value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m recjax.datasets",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("name", choices=datasets.NAMES)
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--opt", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="loader/preprocessing option (repeatable)")
  quiet.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  quiet.configure_logging()
  kwargs = {}
  for opt in args.opt:
    if "=" not in opt:
      parser.error(f"--opt {opt!r}: expected KEY=VALUE")
    k, v = opt.split("=", 1)
    kwargs[k] = _value(v)
  try:
    ds = stage.prepare(args.name, args.out, **kwargs)
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(stage.format_statistics(ds))
  return 0


if __name__ == "__main__":
  sys.exit(main())
