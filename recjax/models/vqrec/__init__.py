"""The `vqrec` family: VQ-Rec, items as codes, transferable recommenders."""

from recjax.models import registry
from recjax.models.vqrec.factory import make_vqrec
from recjax.models.vqrec.model import VQRec
from recjax.models.vqrec.model import VQRecConfig
from recjax.models.vqrec.model import VQRecModel

__all__ = ["VQRec", "VQRecConfig", "VQRecModel", "make_vqrec"]

# VQ-Rec's codes: OPQ with 32 digits x 256 codes of the item text
# embedding, fitted on the training items ("strict"); no collision level.
_OPQ = {"method": "opq", "num_subspaces": 32, "codebook_size": 256,
        "collisions": "none", "fit_on": "train"}
_SCHEDULES = {"cpu": "schedules/vqrec_cpu.gin",
              "smoke": "schedules/vqrec_smoke.gin"}
_PAPER_OFFICE = registry.Anchor(
    dataset="Office", source="VQ-Rec (paper, Table 3)",
    provenance="published", metrics={"recall@10": 0.1240, "ndcg@10": 0.0792},
    protocol="Amazon 2018 Office (their filtering), leave-one-out, full "
    "ranking, pre-trained on five other Amazon categories, BERT text; "
    "recall = HR@10")

registry.register_family(registry.FamilySpec(
    name="vqrec",
    kind=registry.ITEM,
    claim=("Office, pre-trained on Beauty + Yelp: N@10 .0500 +- .0005 "
           "(3 seeds; seen excluded .0689, above SASRec's .0662), level "
           "with SASRec and markov; from scratch .0475 +- .0004 (3 "
           "seeds: transfer +5%, +10% seen excluded); remap "
           "variants within noise; zero-shot .0102 and cold-start .0176, "
           "below text kNN (.0329 / .0415)."),
    factory="recjax.models.vqrec.make_vqrec",
    description=(
        "A sequential recommender whose items are codes, not IDs: every "
        "item is 32 OPQ codes of its text embedding and its vector is the "
        "mean of its code embeddings, so any item with text is scored, "
        "seen in training or not. Pre-trained on several domains at once "
        "(InfoNCE with code-corrupted hard negatives), it transfers to a "
        "new catalog by re-assigning the target's codes to the pre-trained "
        "code embeddings and fine-tuning them, or ranks it zero-shot."),
    paper="Hou et al., WWW'23, \"Learning Vector-Quantized Item "
    "Representation for Transferable Sequential Recommenders\"",
    implements="OPQ codes fitted on training items (union of the sources "
    "for pre-training), the shared code-embedding input layer, post-LN "
    "encoder, cosine / tau scores, mixed-domain InfoNCE with masked "
    "duplicate targets and corrupted-code negatives, Gumbel-Sinkhorn code "
    "re-assignment (learned permutation, the released many-to-one remap, "
    "or none), frozen-encoder fine-tuning, zero-shot ranking.",
    assumes="MiniLM item embeddings (the paper: BERT); a CPU width of 128 "
    "(the paper: 300); pre-training batch 2048 (the paper: 8192).",
    needs=frozenset({registry.SEMANTIC_IDS, registry.TEXT_EMBEDDINGS}),
    gin_files=("models/vqrec.gin",),
    configurables=("VQRecConfig", "make_vqrec")))
registry.register_method(registry.MethodSpec(
    name="vqrec", family="vqrec",
    recipe="trained from scratch on the target (no pre-training)",
    semantic_ids=_OPQ, schedules=_SCHEDULES, anchors=(_PAPER_OFFICE,)))
registry.register_method(registry.MethodSpec(
    name="vqrec_pretrain", family="vqrec",
    recipe="mixed-domain InfoNCE pre-training (run on the merged sources)",
    gin_files=("recipes/vqrec_pretrain.gin",), semantic_ids=_OPQ,
    schedules={"cpu": "schedules/vqrec_pretrain_cpu.gin",
               "smoke": "schedules/vqrec_smoke.gin"}))
registry.register_method(registry.MethodSpec(
    name="vqrec_transfer", family="vqrec",
    recipe="pre-trained on the sources, learned code permutation, "
    "table fine-tuned with the encoder frozen",
    gin_files=("recipes/vqrec_transfer.gin",), semantic_ids=_OPQ,
    pretrain_method="vqrec_pretrain", schedules=_SCHEDULES,
    anchors=(_PAPER_OFFICE,)))
registry.register_method(registry.MethodSpec(
    name="vqrec_zeroshot", family="vqrec",
    recipe="the pre-trained model as it is, the target coded by the "
    "pre-training quantizer",
    gin_files=("recipes/vqrec_zeroshot.gin",), semantic_ids=_OPQ,
    pretrain_method="vqrec_pretrain",
    schedules={"cpu": "schedules/vqrec_zeroshot.gin",
               "smoke": "schedules/vqrec_zeroshot_smoke.gin"}))
