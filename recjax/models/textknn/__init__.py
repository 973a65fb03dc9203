"""The `textknn` family: text nearest neighbours of the last item."""

from recjax.models import registry
from recjax.models.textknn.model import TextKNN
from recjax.models.textknn.model import TextKNNModel
from recjax.models.textknn.model import make_textknn

__all__ = ["TextKNN", "TextKNNModel", "make_textknn"]

registry.register_family(registry.FamilySpec(
    name="textknn",
    kind=registry.ITEM,
    claim=("Seen items excluded, N@10 Office .0454 (87% of `markov`), "
           "Beauty .0375 (78%), ML-100K .0195: text alone, untrained."),
    factory="recjax.models.textknn.make_textknn",
    description=(
        "Every item is ranked by the cosine similarity of its text "
        "embedding to that of the user's most recent item; nothing is "
        "trained. The bar of text-only and zero-shot ranking (VQ-Rec's "
        "zero-shot transfer must clear it) and the simplest model that "
        "scores items never seen in training."),
    paper="(recjax baseline)",
    implements="Cosine nearest neighbours of the last history item over "
    "frozen text embeddings; both history policies.",
    assumes="MiniLM item embeddings; nothing to tune.",
    needs=frozenset({registry.TEXT_EMBEDDINGS}),
    gin_files=("models/textknn.gin",),
    configurables=("make_textknn",)))
registry.register_method(registry.MethodSpec(
    name="textknn", family="textknn",
    recipe="MiniLM neighbours of the last item, no training",
    schedules={"cpu": "schedules/textknn.gin",
               "smoke": "schedules/textknn_smoke.gin"}))
