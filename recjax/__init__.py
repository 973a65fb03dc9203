"""recjax: generative recommendation in JAX/Flax, in the style of T5X/SeqIO."""

__version__ = "0.1.0"
