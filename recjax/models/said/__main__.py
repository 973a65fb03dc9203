"""`python -m recjax.models.said`: runs SAID stage 1 on a dataset."""

from recjax.models.said.stage import main

if __name__ == "__main__":
  main()
