"""The `markov` family: item-to-item transitions of the training sequences."""

from recjax.models import registry
from recjax.models.markov.model import DECAYS
from recjax.models.markov.model import MarkovConfig
from recjax.models.markov.model import TransitionModel
from recjax.models.markov.model import evaluate
from recjax.models.markov.model import fit_run

__all__ = ["DECAYS", "MarkovConfig", "TransitionModel", "evaluate", "fit_run"]

registry.register_family(registry.FamilySpec(
    name="markov",
    kind=registry.COUNT,
    claim=("Office N@10 .0509 (= tuned SASRec .0509), Beauty .0458 "
           "(above SASRec .0424), ML-100K .0640 (above SASRec .0573): "
           "the bar every learned model must clear."),
    factory="recjax.models.markov.model.fit_run",
    gin_files=("models/markov.gin",),
    configurables=("MarkovConfig",),
    description=(
        "A first-order Markov chain: C[a, b] counts how often item b "
        "directly follows item a in the training sequences, and a user's "
        "score of b is the decayed sum of C[h, b] over the last history "
        "items h (popularity breaks ties). Seconds on a CPU, nothing "
        "learned by gradient descent: the sequential bar every learned "
        "model must clear."),
    implements="Transition counts, history decay chosen on validation "
    "NDCG@10 from {0, .25, .5, .75, 1}, both history policies.",
    assumes="A recjax baseline, not a paper's method."))
registry.register_method(registry.MethodSpec(
    name="markov", family="markov",
    recipe="transition counts, decay chosen on validation"))
