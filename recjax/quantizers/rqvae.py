"""RQ-VAE semantic IDs as in TIGER, trained with optax under jit.

An MLP encoder maps an item embedding to a small latent (e.g. 384 -> 512 ->
256 -> 128 -> 32); L residual codebooks of K codes quantise it level by
level; an MLP decoder reconstructs the embedding from the sum of the chosen
codes. The loss is the reconstruction MSE plus, per level, the codebook
loss `|sg(r) - q|^2` and the commitment loss `beta * |r - sg(q)|^2`
(beta = 0.25). Gradients reach the encoder through a straight-through
estimator, or optionally the rotation trick (Fifty et al., 2024).

Codebooks are initialised by k-means on the initial latents / residuals of
all items, and after every epoch codes that no item in the epoch chose are
reset to random residuals of that level, so no level collapses.

One epoch (shuffle + minibatch steps + dead-code reset) is one jit-compiled
function; `fit` loops over epochs with a tqdm bar. `fit` also takes hooks
(`TrainHooks`) through which LETTER adds its regularisers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from recjax.quantizers import kmeans as km
from recjax.quantizers.base import Tokenizer
from recjax.quantizers.base import register

_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass
class RQVAEConfig:
  """RQ-VAE hyperparameters (defaults: TIGER's 3 x 256, latent 32).

  Attributes:
    num_levels: residual levels.
    codebook_size: codes per level.
    latent_dim: latent width.
    hidden_dims: encoder hidden widths (the decoder mirrors them).
    beta: commitment weight.
    learning_rate: AdamW learning rate.
    weight_decay: AdamW weight decay (not applied to codebooks).
    epochs: passes over the items.
    batch_size: items per step (capped at the number of items).
    kmeans_init: initialise codebooks by k-means on the initial residuals.
    kmeans_iters: Lloyd iterations of that initialisation.
    rotation_trick: rotation-and-rescale gradient instead of straight-through.
    dead_code_reset: reset codes unused in an epoch to random residuals.
    sinkhorn_last_level: Sinkhorn-balanced assignment at the last level
      during training (LETTER).
    sinkhorn_epsilon: Sinkhorn regularisation.
    progress: show a tqdm bar.
  """

  num_levels: int = 3
  codebook_size: int = 256
  latent_dim: int = 32
  hidden_dims: tuple[int, ...] = (512, 256, 128)
  beta: float = 0.25
  learning_rate: float = 1e-3
  weight_decay: float = 1e-4
  epochs: int = 200
  batch_size: int = 1024
  kmeans_init: bool = True
  kmeans_iters: int = 50
  rotation_trick: bool = False
  dead_code_reset: bool = True
  sinkhorn_last_level: bool = False
  sinkhorn_epsilon: float = 0.01
  progress: bool = True


class MLP(nn.Module):
  """Dense layers with ReLU between them (none after the last)."""

  dims: tuple[int, ...]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, d in enumerate(self.dims):
      x = nn.Dense(d, precision=_HIGHEST, name=f"dense_{i}")(x)
      if i < len(self.dims) - 1:
        x = nn.relu(x)
    return x


def _nets(config: RQVAEConfig, input_dim: int) -> tuple[MLP, MLP]:
  enc = MLP(tuple(config.hidden_dims) + (config.latent_dim,))
  dec = MLP(tuple(reversed(config.hidden_dims)) + (input_dim,))
  return enc, dec


def rotate_to(e: jax.Array, q: jax.Array) -> jax.Array:
  """Rotation trick: returns q in value, with gradient through a rotation.

  `e` is mapped onto `q` by the rotation taking e/|e| to q/|q| (two
  Householder-like terms) and the scale |q|/|e|, both treated as constants,
  so the gradient w.r.t. e is the rotated and rescaled gradient w.r.t. q.

  Args:
    e: `[n, d]` encoder outputs.
    q: `[n, d]` quantised vectors.

  Returns:
    `[n, d]` equal to q up to rounding.
  """
  sg = jax.lax.stop_gradient
  e_norm = jnp.linalg.norm(e, axis=-1, keepdims=True) + 1e-8
  q_norm = jnp.linalg.norm(q, axis=-1, keepdims=True) + 1e-8
  eh, qh = sg(e / e_norm), sg(q / q_norm)
  r = eh + qh
  r = sg(r / (jnp.linalg.norm(r, axis=-1, keepdims=True) + 1e-8))
  out = (e - 2.0 * jnp.sum(e * r, -1, keepdims=True) * r +
         2.0 * jnp.sum(e * eh, -1, keepdims=True) * qh)
  return sg(q_norm / e_norm) * out


def residual_quantize(z: jax.Array, codebooks: jax.Array,
                      last_assign: Callable[[jax.Array], jax.Array] | None
                      = None) -> dict[str, jax.Array]:
  """Quantises latents level by level.

  Args:
    z: `[n, d]` latents.
    codebooks: `[L, K, d]`.
    last_assign: maps last-level distances `[n, K]` to codes (e.g. Sinkhorn);
      None: nearest code.

  Returns:
    dict with `codes` int32 `[n, L]`, `quantized` (sum of codes) `[n, d]`,
    `residuals` `[L, n, d]` (input of each level), `chosen` `[L, n, d]`
    (chosen code vectors) and `last_distances` `[n, K]`.
  """
  sg = jax.lax.stop_gradient
  levels = codebooks.shape[0]
  r = z
  codes, residuals, chosen = [], [], []
  dist = None
  for lv in range(levels):
    dist = km.sq_distances(sg(r), codebooks[lv])
    if lv == levels - 1 and last_assign is not None:
      idx = last_assign(dist)
    else:
      idx = jnp.argmin(dist, axis=-1).astype(jnp.int32)
    q = codebooks[lv][idx]
    codes.append(idx)
    residuals.append(r)
    chosen.append(q)
    r = r - sg(q)
  return {"codes": jnp.stack(codes, axis=1),
          "quantized": sum(chosen),
          "residuals": jnp.stack(residuals),
          "chosen": jnp.stack(chosen),
          "last_distances": dist}


@dataclasses.dataclass
class TrainHooks:
  """Extensions of RQ-VAE training (used by LETTER).

  Attributes:
    init_params: `key -> dict` of extra trainable parameters.
    epoch_aux: `(params, key) -> aux`, computed once per epoch under jit.
    extra_loss: `(params, aux, batch_index, out, key) -> (loss, metrics)`;
      `out` holds `z`, `quantized`, `codes`, `chosen` of the batch.
  """

  init_params: Callable[[jax.Array], dict[str, Any]] | None = None
  epoch_aux: Callable[[Any, jax.Array], Any] | None = None
  extra_loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]] | None \
      = None


@register
class RQVAETokenizer(Tokenizer):
  """A trained RQ-VAE: encoder, decoder and codebooks."""

  method = "rqvae"
  config_cls = RQVAEConfig

  def __init__(self, config: RQVAEConfig, params: Any, input_dim: int):
    super().__init__(config, params, input_dim)
    self._enc, self._dec = _nets(config, input_dim)
    self._jit_encode = jax.jit(self._encode_fn)

  @property
  def codebook_sizes(self) -> tuple[int, ...]:
    cb = self.params["codebooks"]
    return (int(cb.shape[1]),) * int(cb.shape[0])

  def _encode_fn(self, params: Any, x: jax.Array):
    z = self._enc.apply({"params": params["encoder"]}, x)
    out = residual_quantize(z, params["codebooks"])
    x_hat = self._dec.apply({"params": params["decoder"]}, out["quantized"])
    return out["codes"], out["last_distances"], x_hat, out["quantized"]

  def _run(self, x: np.ndarray, chunk: int = 8192):
    parts = [self._jit_encode(self.params, jnp.asarray(x[i:i + chunk]))
             for i in range(0, len(x), chunk)]
    return [np.concatenate([np.asarray(p[j]) for p in parts])
            for j in range(4)]

  def encode_with_last_distances(self, x: np.ndarray):
    codes, dist, _, _ = self._run(x)
    return codes.astype(np.int32), dist

  def reconstruct(self, x: np.ndarray) -> np.ndarray:
    return self._run(x)[2]

  def quantized_latents(self, x: np.ndarray) -> np.ndarray:
    """Sum of the chosen code vectors `[n, latent_dim]`."""
    return self._run(x)[3]


def _init_params(config: RQVAEConfig, x: jax.Array, key: jax.Array,
                 hooks: TrainHooks) -> dict[str, Any]:
  enc, dec = _nets(config, x.shape[1])
  k_enc, k_dec, k_cb, k_km, k_extra = jax.random.split(key, 5)
  params = {
      "encoder": enc.init(k_enc, x[:1])["params"],
      "decoder": dec.init(k_dec, jnp.zeros((1, config.latent_dim)))["params"],
  }
  k = config.codebook_size
  if config.kmeans_init:
    r = enc.apply({"params": params["encoder"]}, x)
    books = []
    for key_l in jax.random.split(k_km, config.num_levels):
      cents, labels = km.kmeans(r, k, key_l, num_iters=config.kmeans_iters)
      books.append(cents)
      r = r - cents[labels]
    params["codebooks"] = jnp.stack(books)
  else:
    params["codebooks"] = jax.random.uniform(
        k_cb, (config.num_levels, k, config.latent_dim), minval=-1.0 / k,
        maxval=1.0 / k)
  if hooks.init_params is not None:
    params.update(hooks.init_params(k_extra))
  return params


def fit(x: np.ndarray, config: RQVAEConfig, key: jax.Array,
        hooks: TrainHooks | None = None, tokenizer_cls: type = RQVAETokenizer
        ) -> tuple[RQVAETokenizer, dict[str, float]]:
  """Trains an RQ-VAE on item embeddings.

  Args:
    x: float32 `[n, d]` embeddings.
    config: hyperparameters.
    key: PRNG key; the same key gives the same parameters bit for bit.
    hooks: optional LETTER-style extensions.
    tokenizer_cls: class of the returned tokenizer.

  Returns:
    (tokenizer, final training metrics).
  """
  hooks = hooks or TrainHooks()
  xj = jnp.asarray(x, jnp.float32)
  n = xj.shape[0]
  batch = min(config.batch_size, n)
  num_batches = n // batch
  k_init, k_train = jax.random.split(key)
  params = _init_params(config, xj, k_init, hooks)
  enc, dec = _nets(config, x.shape[1])
  wd_mask = {name: jax.tree_util.tree_map(
      lambda _, decay=name in ("encoder", "decoder"): decay, p)
             for name, p in params.items()}
  opt = optax.adamw(config.learning_rate, weight_decay=config.weight_decay,
                    mask=wd_mask)
  opt_state = opt.init(params)
  sg = jax.lax.stop_gradient
  levels, k = config.num_levels, config.codebook_size

  def last_assign(dist):
    plan = km.sinkhorn_log_plan(dist, config.sinkhorn_epsilon)
    return jnp.argmax(plan, axis=-1).astype(jnp.int32)

  def loss_fn(params, idx, aux, key):
    xb = xj[idx]
    z = enc.apply({"params": params["encoder"]}, xb)
    out = residual_quantize(
        z, params["codebooks"],
        last_assign if config.sinkhorn_last_level else None)
    res, chosen = out["residuals"], out["chosen"]
    codebook = jnp.mean(jnp.sum(jnp.mean((sg(res) - chosen) ** 2, -1), 0))
    commit = jnp.mean(jnp.sum(jnp.mean((res - sg(chosen)) ** 2, -1), 0))
    zq = out["quantized"]
    z_st = rotate_to(z, zq) if config.rotation_trick else z + sg(zq - z)
    x_hat = dec.apply({"params": params["decoder"]}, z_st)
    recon = jnp.mean((x_hat - xb) ** 2)
    loss = recon + codebook + config.beta * commit
    metrics = {"recon": recon, "codebook": codebook, "commit": commit}
    if hooks.extra_loss is not None:
      out["z"] = z
      extra, extra_metrics = hooks.extra_loss(params, aux, idx, out, key)
      loss = loss + extra
      metrics.update(extra_metrics)
    metrics["loss"] = loss
    return loss, (metrics, out["codes"], res)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  @jax.jit
  def run_epoch(params, opt_state, key):
    k_perm, k_aux, k_steps, k_reset = jax.random.split(key, 4)
    perm = jax.random.permutation(k_perm, n)[:num_batches * batch]
    batches = perm.reshape(num_batches, batch)
    aux = hooks.epoch_aux(params, k_aux) if hooks.epoch_aux else None

    def step(carry, inp):
      params, opt_state = carry
      idx, step_key = inp
      (_, (metrics, codes, res)), grads = grad_fn(params, idx, aux, step_key)
      updates, opt_state = opt.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      counts = jax.vmap(lambda c: jnp.bincount(c, length=k))(codes.T)
      return (params, opt_state), (metrics, counts, res)

    (params, opt_state), (metrics, counts, res) = jax.lax.scan(
        step, (params, opt_state),
        (batches, jax.random.split(k_steps, num_batches)))
    counts = jnp.sum(counts, axis=0)  # [L, K]
    if config.dead_code_reset:
      pool = jnp.transpose(res, (1, 0, 2, 3)).reshape(levels, -1,
                                                      config.latent_dim)
      pick = jax.random.randint(k_reset, (levels, k), 0, pool.shape[1])
      fresh = jnp.take_along_axis(pool, pick[..., None], axis=1)
      dead = (counts == 0)[..., None]
      params = dict(params)
      params["codebooks"] = jnp.where(dead, sg(fresh), params["codebooks"])
    metrics = jax.tree_util.tree_map(jnp.mean, metrics)
    metrics["dead_codes"] = jnp.sum(counts == 0, axis=1)
    return params, opt_state, metrics

  bar = tqdm.trange(config.epochs, desc="rqvae", disable=not config.progress,
                    unit="epoch")
  metrics: dict[str, Any] = {}
  for epoch, epoch_key in zip(bar, jax.random.split(k_train, config.epochs)):
    params, opt_state, metrics = run_epoch(params, opt_state, epoch_key)
    if config.progress and (epoch % 10 == 0 or epoch == config.epochs - 1):
      bar.set_postfix(loss=f"{float(metrics['loss']):.4g}",
                      recon=f"{float(metrics['recon']):.3g}",
                      dead=np.asarray(metrics["dead_codes"]).tolist())
  bar.close()
  final = {f"train_{k_}": (np.asarray(v).tolist() if np.ndim(v) else
                           float(v)) for k_, v in metrics.items()}
  return tokenizer_cls(config, params, x.shape[1]), final
