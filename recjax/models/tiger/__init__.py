"""The `tiger` family: a T5 encoder-decoder generating semantic IDs.

Methods: `tiger` (RQ-VAE semantic IDs), `letter_tiger` (LETTER's tokenizer
and temperature-scaled loss), `tiger_calrec` (CALRec-style contrastive
alignment) and `letter_tiger_calrec` (both).
"""

from recjax.models import registry
from recjax.models.tiger.model import EncoderDecoderModel
from recjax.models.tiger.model import make_encoder_decoder

__all__ = ["EncoderDecoderModel", "make_encoder_decoder"]

# TIGER's semantic IDs: 3 RQ-VAE levels x 256 codes + a collision level
# (user IDs hash to the task's `num_user_buckets`, 2000 by default).
_RQVAE = {"method": "rqvae", "num_levels": 3, "codebook_size": 256,
          "epochs": 200}
_LETTER = dict(_RQVAE, method="letter")
# The benchmark's schedules (recipes change the loss, not the schedule).
_SCHEDULES = {"cpu": "schedules/generative_cpu.gin",
              "cpu_long": "schedules/generative_cpu_long.gin",
              "cpu_xl": "schedules/generative_cpu_xl.gin",
              "full": "schedules/generative_full.gin",
              "smoke": "schedules/generative_smoke.gin"}
_TIGER_BEAUTY = registry.Anchor(
    dataset="Beauty", source="TIGER (paper)", provenance="published",
    metrics={"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648,
             "ndcg@10": 0.0384},
    protocol="leave-one-out, history 20, beam of 20 over all items "
    "(Rajput et al., Table 2)")

registry.register_family(registry.FamilySpec(
    name="tiger",
    kind=registry.GENERATIVE,
    claim=('Below SASRec and `markov` at CPU width: best recipe '
           '`letter_tiger_calrec` Office .0398 ± .0024 (`cpu_xl`, 78% of '
           'SASRec), Beauty .0268 (63%); paper TIGER Beauty .0384.'),
    factory="recjax.models.tiger.make_encoder_decoder",
    description=(
        "Items get semantic IDs (tuples of codebook indices quantised from "
        "their text embeddings); a T5 encoder-decoder reads the user token "
        "and the history's IDs and generates the next item's ID token by "
        "token, with a beam search constrained to the IDs of real items."),
    paper="Rajput et al., NeurIPS'23, \"Recommender Systems with "
    "Generative Retrieval\"",
    implements="RQ-VAE semantic IDs with a collision level, T5 1.1 "
    "encoder-decoder, hashed user tokens, exact on-device constrained beam "
    "search with per-user exclusion.",
    assumes="The paper's sizes in experiments/*.gin; the CPU schedules of "
    "the benchmark are narrower (2+2 layers, d_model 64).",
    needs=frozenset({registry.SEMANTIC_IDS, registry.TEXT_EMBEDDINGS}),
    gin_files=("models/tiger.gin",),
    configurables=("EncoderDecoderModel", "make_encoder_decoder")))
registry.register_method(registry.MethodSpec(
    name="tiger", family="tiger", recipe="RQ-VAE semantic IDs",
    semantic_ids=_RQVAE, schedules=_SCHEDULES, anchors=(_TIGER_BEAUTY,)))
registry.register_method(registry.MethodSpec(
    name="letter_tiger", family="tiger",
    recipe="LETTER semantic IDs (CF-aligned RQ-VAE) and a "
    "temperature-scaled generation loss (Wang et al., CIKM'24)",
    gin_files=("recipes/letter.gin",),
    needs=frozenset({registry.CF_EMBEDDINGS}),
    semantic_ids=_LETTER, cf_method="sasrec_recbole", schedules=_SCHEDULES))
registry.register_method(registry.MethodSpec(
    name="tiger_calrec", family="tiger",
    recipe="CALRec-style contrastive alignment of pooled history and "
    "target (Li et al., RecSys'24)",
    gin_files=("recipes/calrec.gin",), semantic_ids=_RQVAE,
    schedules=_SCHEDULES))
registry.register_method(registry.MethodSpec(
    name="letter_tiger_calrec", family="tiger",
    recipe="LETTER semantic IDs and loss plus CALRec alignment",
    gin_files=("recipes/letter.gin", "recipes/calrec.gin"),
    needs=frozenset({registry.CF_EMBEDDINGS}),
    semantic_ids=_LETTER, cf_method="sasrec_recbole", schedules=_SCHEDULES))
