"""The `popularity` family: the most popular training items for everyone."""

from recjax.models import registry
from recjax.models.popularity.model import PopularityModel
from recjax.models.popularity.model import evaluate
from recjax.models.popularity.model import fit_run

__all__ = ["PopularityModel", "evaluate", "fit_run"]

registry.register_family(registry.FamilySpec(
    name="popularity",
    kind=registry.COUNT,
    claim=('Office N@10 .0002, Beauty .0053: the floor.'),
    factory="recjax.models.popularity.model.fit_run",
    gin_files=("models/popularity.gin",),
    description=(
        "Every user gets the items that occur most often in the training "
        "sequences (ties: the smaller item index). The floor of the "
        "results table: a model below it has learned nothing about "
        "users."),
    implements="Item counts of the training sequences; both history "
    "policies.",
    assumes="Nothing to tune."))
registry.register_method(registry.MethodSpec(
    name="popularity", family="popularity",
    recipe="counts of the training sequences"))
