"""The `learn` family: LEARN's twin towers over frozen text embeddings."""

from recjax.models import registry
from recjax.models.learn.model import TRAIN_POSITIONS
from recjax.models.learn.model import DualEncoderConfig
from recjax.models.learn.model import DualEncoderModel
from recjax.models.learn.model import DualEncoderModule
from recjax.models.learn.model import make_dual_encoder

__all__ = ["TRAIN_POSITIONS", "DualEncoderConfig", "DualEncoderModel",
           "DualEncoderModule", "make_dual_encoder"]

registry.register_family(registry.FamilySpec(
    name="learn",
    kind=registry.ITEM,
    claim=('Office N@10 .0444 ± .0009 (`cpu_long`, 87% of SASRec), '
           'Beauty .0286 ± .0003 (2 seeds). Office over SmolLM2 vectors '
           '(`learn_llm`, 3 seeds) .0469 ± .0012 (+6%).'),
    factory="recjax.models.learn.make_dual_encoder",
    description=(
        "Items are embedded once by a frozen language model; one causal "
        "Transformer, shared by a user tower (over the history's item "
        "embeddings) and an item tower (over the item's own embedding), "
        "is trained with an in-batch softmax (logit scale 20)."),
    paper="Jia et al. (Kuaishou), AAAI'25, \"LEARN: Knowledge Adaptation "
    "from Large Language Model to Recommendation for Practical Industrial "
    "Application\"",
    implements="Frozen item text embeddings, shared causal towers with a "
    "tower embedding, in-batch softmax with duplicate targets masked.",
    assumes="MiniLM (22M) stands in for the paper's 7B LLM; tower sizes "
    "for Amazon-scale data.",
    needs=frozenset({registry.TEXT_EMBEDDINGS}),
    gin_files=("models/learn.gin",),
    configurables=("DualEncoderConfig", "make_dual_encoder")))
registry.register_method(registry.MethodSpec(
    name="learn", family="learn",
    recipe="frozen MiniLM item embeddings, in-batch softmax",
    schedules={"cpu": "schedules/learn_cpu.gin",
               "cpu_long": "schedules/learn_cpu_long.gin",
               "smoke": "schedules/learn_smoke.gin"}))
registry.register_method(registry.MethodSpec(
    name="learn_llm", family="learn",
    recipe=("frozen SmolLM2-135M item vectors (mean-pooled final hidden "
            "states), in-batch softmax"),
    text_encoder="smollm2-mean",
    schedules={"cpu": "schedules/learn_cpu.gin",
               "cpu_long": "schedules/learn_cpu_long.gin",
               "smoke": "schedules/learn_smoke.gin"}))
