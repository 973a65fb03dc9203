"""`python -m recjax.models`: the registered families, as a markdown table."""

from recjax.models import registry

if __name__ == "__main__":
  print(registry.families_table())
