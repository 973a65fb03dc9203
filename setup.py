"""Install recjax: `pip install -e .[test]` (tests), `.[bench]` (peers)."""

import setuptools

_RUNTIME = [
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2",
    "orbax-checkpoint>=0.11",
    "seqio>=0.0.19",
    "tensorflow-datasets>=4.9",
    # TFDS builders defined inside a package need it; TFDS does not declare it.
    "importlib_resources>=6",
    "gin-config>=0.5",
    "clu>=0.0.12",
    # clu's TensorBoard writer imports it; TensorFlow 2.21 no longer pulls it.
    "tensorboard>=2.16",
    "tokenizers>=0.19",
    "safetensors>=0.4",
    # Reads and dequantises GGUF causal LMs (the pinned SmolLM2).
    "gguf>=0.17",
    "numpy>=1.26",
    "tqdm>=4.66",
    "matplotlib>=3.8",
]

_TEST = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
    "ruff>=0.6",
]

# Peer implementations measured in the same run by benchmarks/ and parity
# tests. torch==2.13.0 is the CPU build that lies on this machine's disk.
_BENCH = [
    "torch==2.13.0",
    "transformers>=4.40",
    # transformers needs it to load GGUF files (the SmolLM2 parity fixture).
    "accelerate>=1.0",
    "sentence-transformers>=3.0",
]

setuptools.setup(
    name="recjax",
    version="0.1.0",
    description="Generative recommendation in JAX/Flax, T5X/SeqIO style.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # `recjax/tasks` and `recjax/gin_configs` link to the repository's
    # top-level `tasks/` and `gin_configs/`: the wheel installs them under
    # the recjax namespace (no top-level `tasks` package to collide with).
    packages=setuptools.find_packages(include=["recjax", "recjax.*"]),
    package_data={"recjax": ["py.typed", "gin_configs/*/*.gin"]},
    install_requires=_RUNTIME,
    extras_require={"test": _TEST, "bench": _BENCH},
)
