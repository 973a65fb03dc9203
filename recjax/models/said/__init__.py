"""The `said` family: SAID's LLM-learned item vectors + a light recommender.

Stage 1 (`stage.said_stage`) learns, through the frozen SmolLM2-135M, one
embedding per item that the LM can read back as the item's text; stage 2
is the `lite` sequence model over those vectors, frozen (the same gin
model as `lite`, so the rows differ only in the item vectors).
"""

from recjax.models import registry
from recjax.models.said.model import SAIDConfig
from recjax.models.said.model import SAIDEmbedder
from recjax.models.said.model import SAIDModel
from recjax.models.said.stage import SAIDStageConfig
from recjax.models.said.stage import said_stage
from recjax.models.said.stage import tokenize_items

__all__ = ["SAIDConfig", "SAIDEmbedder", "SAIDModel", "SAIDStageConfig",
           "said_stage", "tokenize_items"]

registry.register_item_encoder("said", "recjax.models.said.said_stage")
registry.register_family(registry.FamilySpec(
    name="said",
    kind=registry.ITEM,
    claim="Not benchmarked yet.",
    factory="recjax.models.lite.make_lite",
    description=(
        "Each item ID gets a learnable embedding; a projector maps it to "
        "soft-prompt vectors of a frozen causal LM, trained so that the LM "
        "reproduces the item's text. The learned vectors, frozen, feed a "
        "light sequential recommender (LITE-LLM4Rec's sequence model)."),
    paper="Hu et al., \"Enhancing Sequential Recommendation via LLM-based "
    "Semantic Embedding Learning\" (SAID, WWW'24 companion)",
    implements="Stage 1 through SmolLM2-135M-Instruct in Flax (k=2 soft "
    "prompts, MLP projector); stage 2 = `lite` over the frozen vectors.",
    assumes="SmolLM2-135M stands in for the paper's 7B LLM; k, the "
    "projector and the prompt are ours (docs/said.md).",
    needs=frozenset({registry.TEXT_EMBEDDINGS, registry.LM_ASSET}),
    gin_files=("models/lite.gin",)))
registry.register_method(registry.MethodSpec(
    name="said", family="said",
    recipe="SAID stage-1 item vectors, frozen, in the `lite` model",
    text_encoder="said",
    schedules={"cpu": "schedules/lite_cpu.gin",
               "cpu_long": "schedules/lite_cpu_long.gin",
               "smoke": "schedules/lite_smoke.gin"}))
