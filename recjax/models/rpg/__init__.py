"""The `rpg` family: long semantic IDs predicted in parallel (RPG)."""

from recjax.models import registry
from recjax.models.rpg.model import RPG
from recjax.models.rpg.model import RPGConfig
from recjax.models.rpg.model import RPGModel
from recjax.models.rpg.model import catalog_scores
from recjax.models.rpg.model import make_rpg

__all__ = ["RPG", "RPGConfig", "RPGModel", "catalog_scores", "make_rpg"]

# RPG's codes: the item text embedding, PCA-whitened, then OPQ with 32
# digits x 256 codes fitted on the training items; no collision level.
_OPQ = {"method": "opq", "num_subspaces": 32, "codebook_size": 256,
        "whiten": True, "collisions": "none", "fit_on": "train"}
_SCHEDULES = {"cpu": "schedules/rpg_cpu.gin",
              "full": "schedules/rpg_full.gin",  # The paper's; accelerator.
              "smoke": "schedules/rpg_smoke.gin"}
_PAPER_BEAUTY = registry.Anchor(
    dataset="Beauty", source="RPG (paper)", provenance="published",
    metrics={"recall@10": 0.0809, "ndcg@10": 0.0464},
    protocol="leave-one-out, history 50, full ranking (graph decoding); "
    "OpenAI text-embedding-3-large item embeddings (Hou et al.)")
_CORNAC_BEAUTY = registry.Anchor(
    dataset="Beauty", source="RPG (cornac's reproduction)",
    provenance="published", metrics={"recall@10": 0.0789, "ndcg@10": 0.0454},
    protocol="leave-one-out, history 50, full ranking")

registry.register_family(registry.FamilySpec(
    name="rpg",
    kind=registry.ITEM,
    claim=("Office N@10 over SmolLM2 codes (`rpg_llm`, 3 seeds, `cpu`, "
           "width 64) .0526 ± .0004, above SASRec (.0508 ± .0003) and `markov` "
           "(.0509); over MiniLM codes .0501 ± .0015 (tau 0.07 chosen on "
           "validation), 98% of them; mixed with `markov` .0613 ± .0008. "
           "The best generative family here (TIGER's best recipe .0398). "
           "Beauty (seed 0): width 128 .0445 over MiniLM codes, above "
           "SASRec (.0424), below `markov` (.0458) and the paper (.0464); "
           "width 64 .0387 (MiniLM) / .0371 (SmolLM2); with `markov` "
           ".0519 (width 128)."),
    factory="recjax.models.rpg.make_rpg",
    description=(
        "A generative recommender over long semantic IDs: every item has "
        "32 OPQ codes of its text embedding; a history is one position per "
        "item (the mean of its code embeddings), a small causal "
        "Transformer reads it, and one head per digit predicts every digit "
        "of the next item's ID at once. An item's score is the mean of its "
        "digits' log-probabilities, computed exactly over the catalog or by "
        "beams over a code-space item graph; both return real items only."),
    paper="Hou et al., KDD'25, \"Generating Long Semantic IDs in Parallel "
    "for Recommendation\"",
    implements="PCA-whitened OPQ codes fitted on training items, the "
    "shared code-embedding input layer, zero-initialised residual SiLU "
    "heads, cosine / tau cross-entropy tied to the input table, exact "
    "catalog scoring, graph-constrained decoding over an exact or IVF "
    "k-NN graph (best-first from popular items, neighbours' codes inline "
    "for large catalogs; `eval` / `infer --decoding graph`).",
    assumes="MiniLM or SmolLM2 (`rpg_llm`) item embeddings (the paper: "
    "OpenAI text-embedding-3-large); a CPU width of 64 (the paper: 448, "
    "the `full` schedule, for an accelerator).",
    needs=frozenset({registry.SEMANTIC_IDS, registry.TEXT_EMBEDDINGS}),
    gin_files=("models/rpg.gin",),
    configurables=("RPGConfig", "make_rpg")))
registry.register_method(registry.MethodSpec(
    name="rpg", family="rpg",
    recipe="32 x 256 OPQ codes, history 20 (recjax's protocol)",
    semantic_ids=_OPQ, schedules=_SCHEDULES,
    anchors=(_PAPER_BEAUTY, _CORNAC_BEAUTY)))
registry.register_method(registry.MethodSpec(
    name="rpg_len50", family="rpg",
    recipe="as `rpg`, history 50 (the paper's)",
    gin_bindings=("MAX_LENGTH = 50",),
    semantic_ids=_OPQ, schedules=_SCHEDULES,
    anchors=(_PAPER_BEAUTY, _CORNAC_BEAUTY)))
registry.register_method(registry.MethodSpec(
    name="rpg_llm", family="rpg",
    recipe=("as `rpg`, the codes of SmolLM2-135M item vectors "
            "(mean-pooled final hidden states) instead of MiniLM's"),
    text_encoder="smollm2-mean",
    semantic_ids=_OPQ, schedules=_SCHEDULES,
    anchors=(_PAPER_BEAUTY, _CORNAC_BEAUTY)))
