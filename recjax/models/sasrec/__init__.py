"""The `sasrec` family: SASRec, a causal Transformer over item IDs."""

from recjax.models import registry
from recjax.models.sasrec.model import LOSSES
from recjax.models.sasrec.model import NORMS
from recjax.models.sasrec.model import POSITIONS
from recjax.models.sasrec.model import TRAIN_POSITIONS
from recjax.models.sasrec.model import SASRec
from recjax.models.sasrec.model import SASRecConfig
from recjax.models.sasrec.model import SASRecModel
from recjax.models.sasrec.model import make_sasrec

__all__ = ["LOSSES", "NORMS", "POSITIONS", "TRAIN_POSITIONS", "SASRec",
           "SASRecConfig",
           "SASRecModel", "make_sasrec"]

# RecBole 1.2.1's SASRec on Office, measured on this machine with the same
# data and protocol (leave-one-out, history 20, all items).
_RECBOLE_OFFICE = registry.Anchor(
    dataset="Office", source="RecBole 1.2.1 SASRec",
    provenance="measured here",
    metrics={"recall@5": 0.0667, "ndcg@5": 0.0385, "recall@10": 0.1050,
             "ndcg@10": 0.0509},
    protocol="leave-one-out, history 20, full ranking over all items")

registry.register_family(registry.FamilySpec(
    name="sasrec",
    kind=registry.ITEM,
    claim=('`sasrec_recbole` Office N@10 .0509 ± .0003 (3 seeds) = '
           "RecBole 1.2.1's .0509 on the same data; Beauty .0424 ± "
           '.0002.'),
    factory="recjax.models.sasrec.make_sasrec",
    description=(
        "A causal self-attention encoder over the item IDs of a history; "
        "the state at the last position scores every catalog item through "
        "the tied item embedding. The usual comparison point on the Amazon "
        "data sets of TIGER and LETTER, and the source of LETTER's "
        "collaborative item embeddings."),
    paper="Kang & McAuley, ICDM'18, \"Self-Attentive Sequential "
    "Recommendation\"",
    implements="Pre-LN (paper) or post-LN (RecBole) encoder, full-softmax "
    "or one-negative BCE loss, every-position or last-position training, "
    "item-embedding export.",
    assumes="RecBole's defaults (hidden 64, 2 layers x 2 heads, FFN 256, "
    "GELU, dropout 0.5).",
    gin_files=("models/sasrec.gin",),
    configurables=("SASRecConfig", "make_sasrec")))
registry.register_method(registry.MethodSpec(
    name="sasrec", family="sasrec",
    recipe="the original SASRec: pre-LN, a loss at every position",
    schedules={"cpu": "schedules/sasrec_cpu.gin",
               "smoke": "schedules/sasrec_smoke.gin"},
    anchors=(_RECBOLE_OFFICE,)))
registry.register_method(registry.MethodSpec(
    name="sasrec_recbole", family="sasrec",
    recipe="RecBole's recipe: post-LN, every prefix, batch 2048, "
    "validation each epoch",
    gin_files=("recipes/sasrec_recbole.gin",),
    schedules={"cpu": "schedules/sasrec_recbole_cpu.gin",
               "smoke": "schedules/sasrec_smoke.gin"},
    anchors=(_RECBOLE_OFFICE,)))
