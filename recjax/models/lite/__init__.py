"""The `lite` family: LITE-LLM4Rec's item encoder + sequence model."""

from recjax.models import registry
from recjax.models.lite.model import ITEM_ENCODERS
from recjax.models.lite.model import LiteConfig
from recjax.models.lite.model import LiteModel
from recjax.models.lite.model import LiteModule
from recjax.models.lite.model import TextBackbone
from recjax.models.lite.model import load_text_backbone
from recjax.models.lite.model import make_lite
from recjax.models.lite.model import tokenize_items

__all__ = ["ITEM_ENCODERS", "LiteConfig", "LiteModel", "LiteModule",
           "TextBackbone", "load_text_backbone", "make_lite",
           "tokenize_items"]

registry.register_family(registry.FamilySpec(
    name="lite",
    kind=registry.ITEM,
    claim=('Office N@10 .0389 ± .0021 (`cpu_long`), Beauty .0374 ± .0012 '
           '(88% of SASRec). Over SmolLM2 vectors (`lite_llm`): Office '
           '.0452 ± .0009, Beauty .0412 ± .0004; over SAID '
           'vectors (`said`) Office .0441 ± .0011.'),
    factory="recjax.models.lite.make_lite",
    description=(
        "An item-level encoder compresses each item's text into one "
        "vector, a causal sequence Transformer runs over the history's "
        "item vectors, and a linear head scores the whole catalog: no "
        "generation over text, no beam search."),
    paper="Wang et al., \"Rethinking Large Language Model Architectures "
    "for Sequential Recommendations\" (LITE-LLM4Rec)",
    implements="Frozen item vectors + projection, or the BERT item "
    "encoder fine-tuned in the model; full-softmax item head.",
    assumes="MiniLM (22M) stands in for the paper's LLM.",
    needs=frozenset({registry.TEXT_EMBEDDINGS}),
    gin_files=("models/lite.gin",),
    configurables=("LiteConfig", "make_lite")))
registry.register_method(registry.MethodSpec(
    name="lite", family="lite",
    recipe="frozen MiniLM item encoder, linear item head",
    schedules={"cpu": "schedules/lite_cpu.gin",
               "cpu_long": "schedules/lite_cpu_long.gin",
               "smoke": "schedules/lite_smoke.gin"}))
registry.register_method(registry.MethodSpec(
    name="lite_llm", family="lite",
    recipe=("frozen SmolLM2-135M item vectors (mean-pooled final hidden "
            "states of title, brand, categories), linear item head"),
    text_encoder="smollm2-mean",
    schedules={"cpu": "schedules/lite_cpu.gin",
               "cpu_long": "schedules/lite_cpu_long.gin",
               "smoke": "schedules/lite_smoke.gin"}))
