"""SAID: item vectors learned through a frozen causal LM (a trained encoder).

Stage 1 (`stage.said_stage`) learns, through the frozen SmolLM2-135M, one
embedding per item that the LM can read back as the item's text. It is
registered as the trained item encoder "said", so any method can read its
vectors as text embeddings. The method `said` is stage 2: the `lite`
family's model over those vectors, frozen (the same gin model as `lite`,
so the rows differ only in the item vectors). This package defines no
family of its own.
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
registry.get_family("lite")  # Its method below needs the family loaded.
registry.register_method(registry.MethodSpec(
    name="said", family="lite",
    recipe="SAID stage-1 item vectors, frozen, in the `lite` model",
    text_encoder="said",
    schedules={"cpu": "schedules/lite_cpu.gin",
               "cpu_long": "schedules/lite_cpu_long.gin",
               "smoke": "schedules/lite_smoke.gin"}))
