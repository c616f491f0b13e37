"""Toy 2-D targets (Cremer, Morris & Duvenaud 2017, Figure 1): a Gaussian q fitted by the ELBO and by
the IWAE bound, and the implicit posterior q_IW of each, against a known target density.

Each target is an unnormalized log density log p~(z) on the plane with a display window and its exact
log normalizer log Z = log integral p~(z) dz (known in closed form for all four, so the grid quadrature
can be checked). The proposal is a **diagonal** Gaussian q(z) = N(mu, diag sigma^2), the same family as
the explorer's encoder; a full covariance could tilt but still not bend (banana), hollow out (ring) or
split (mixture), which is what q_IW shows it doing.

The bounds are those of ``iwae.bounds`` with log w(z) = log p~(z) - log q(z):
ELBO = E_q[log w] = log Z - KL(q || p) and L_K = E[log (1/K) sum_k w_k] <= log Z.
The fit maximizes either with reparameterized draws and Adam (DReG gradients by default), for a fixed
number of steps and a seed.
On a grid over the target's window, q_IW at K is computed by ``iwae.posterior.log_q_iw`` itself (the
window is wrapped in a ``posterior.ImageGrid`` whose "joint" is log p~ and whose "log p(x)" is log Z by
quadrature), and TV, KL and the q_IW integral self-check by ``posterior``'s functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import bounds, posterior
from .model import LOG_2PI, gaussian_log_density
from .rng import generator

RESOLUTION = 128  # grid points per side of the window
STEPS = 1000  # Adam steps per fit
DRAWS_PER_STEP = 256  # about this many draws of z per step: ceil(256 / K) independent K-sets, at least MIN_SETS
MIN_SETS = 4
LEARNING_RATE = 0.05  # Adam's, decayed exponentially to LEARNING_RATE * FINAL_LR_FACTOR at the last step
FINAL_LR_FACTOR = 0.05
ADAM_BETAS = (0.9, 0.99)  # a short second-moment memory: the early, large gradients must not shrink the late steps
ADAM_EPS = 1e-8  # torch.optim.Adam's default
N_S_DRAWS = 256  # M: draws of the K - 1 other weights shared by every grid point (posterior.log_q_iw)
EVAL_DRAWS = 1 << 16  # draws behind each reported bound: EVAL_DRAWS // K disjoint K-sets
K_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500)


# ------------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """An unnormalized 2-D density and the square window that shows it."""

    name: str  # registry key
    label: str  # for menus and titles
    description: str  # one line, with the parameters
    log_density: Callable[[torch.Tensor], torch.Tensor]  # log p~(z): (N, 2) -> (N,)
    score: Callable[[torch.Tensor], torch.Tensor]  # its gradient d log p~(z) / dz: (N, 2) -> (N, 2)
    centre: tuple[float, float]  # window centre
    side: float  # window side; holds all but a negligible part of the mass
    log_normalizer: float  # exact log Z = log integral p~(z) dz

    def window(self) -> tuple[tuple[float, float], tuple[float, float]]:
        h = self.side / 2
        return (self.centre[0] - h, self.centre[0] + h), (self.centre[1] - h, self.centre[1] + h)


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


# Gaussian: mean (0.5, -0.5), standard deviations (1.0, 0.5), no correlation (a diagonal q can match it).
GAUSS_MEAN, GAUSS_SD = (0.5, -0.5), (1.0, 0.5)


def _gaussian(z: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(GAUSS_MEAN, dtype=z.dtype)
    s = torch.tensor(GAUSS_SD, dtype=z.dtype)
    return -0.5 * (((z - m) / s) ** 2).sum(-1)


def _gaussian_score(z: torch.Tensor) -> torch.Tensor:
    return -(z - torch.tensor(GAUSS_MEAN, dtype=z.dtype)) / torch.tensor(GAUSS_SD, dtype=z.dtype) ** 2


# Banana: z1 ~ N(0, 1), z2 | z1 ~ N(A z1^2 - C, S^2). A shear of a Gaussian (Jacobian 1): Z = 2 pi S.
BANANA_A, BANANA_C, BANANA_S = 0.6, 1.2, 0.35


def _banana(z: torch.Tensor) -> torch.Tensor:
    z1, z2 = z[..., 0], z[..., 1]
    return -0.5 * z1**2 - 0.5 * ((z2 - BANANA_A * z1**2 + BANANA_C) / BANANA_S) ** 2


def _banana_score(z: torch.Tensor) -> torch.Tensor:
    z1, z2 = z[..., 0], z[..., 1]
    u = (z2 - BANANA_A * z1**2 + BANANA_C) / BANANA_S
    return torch.stack((-z1 + u * (2 * BANANA_A / BANANA_S) * z1, -u / BANANA_S), -1)


# Ring: radius R, radial standard deviation S. Z = 2 pi int_0^inf r exp(-(r - R)^2 / 2S^2) dr
#   = 2 pi [S^2 exp(-R^2 / 2S^2) + R S sqrt(2 pi) Phi(R / S)].
RING_R, RING_S = 2.0, 0.3


def _ring(z: torch.Tensor) -> torch.Tensor:
    r = torch.linalg.vector_norm(z, dim=-1)
    return -0.5 * ((r - RING_R) / RING_S) ** 2


def _ring_score(z: torch.Tensor) -> torch.Tensor:
    r = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    return -(r - RING_R) / RING_S**2 * z / r.clamp_min(torch.finfo(z.dtype).tiny)  # at r = 0: 0, as autograd's


# Mixture: equal weights, means (+-MIX_D, 0), isotropic standard deviation MIX_S; normalized (Z = 1).
MIX_D, MIX_S = 2.5, 0.6


def _mixture(z: torch.Tensor) -> torch.Tensor:
    d = torch.tensor([[-MIX_D, 0.0], [MIX_D, 0.0]], dtype=z.dtype)
    sq = ((z[..., None, :] - d) ** 2).sum(-1)  # (N, 2 components)
    return torch.logsumexp(-0.5 * sq / MIX_S**2, dim=-1) - math.log(2) - LOG_2PI - 2 * math.log(MIX_S)


def _mixture_score(z: torch.Tensor) -> torch.Tensor:
    diff = z[..., None, :] - torch.tensor([[-MIX_D, 0.0], [MIX_D, 0.0]], dtype=z.dtype)  # (N, 2 components, 2)
    responsibility = torch.softmax(-0.5 * (diff**2).sum(-1) / MIX_S**2, dim=-1)
    return -(responsibility[..., None] * diff).sum(-2) / MIX_S**2


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("gaussian", "Gaussian", f"N(({GAUSS_MEAN[0]}, {GAUSS_MEAN[1]}), diag({GAUSS_SD[0]}², {GAUSS_SD[1]}²))",
               _gaussian, _gaussian_score, GAUSS_MEAN, 8.0, LOG_2PI + math.log(GAUSS_SD[0] * GAUSS_SD[1])),
        Target("banana", "Banana", f"z₁ ~ N(0, 1), z₂ | z₁ ~ N({BANANA_A} z₁² − {BANANA_C}, {BANANA_S}²)",
               _banana, _banana_score, (0.0, 2.0), 9.0, LOG_2PI + math.log(BANANA_S)),
        Target("ring", "Ring", f"radius {RING_R}, radial standard deviation {RING_S}", _ring, _ring_score,
               (0.0, 0.0), 7.0,
               math.log(2 * math.pi * (RING_S**2 * math.exp(-0.5 * (RING_R / RING_S) ** 2)
                                       + RING_R * RING_S * math.sqrt(2 * math.pi) * _normal_cdf(RING_R / RING_S)))),
        Target("mixture", "Two-component mixture",
               f"½ N((−{MIX_D}, 0), {MIX_S}² I) + ½ N(({MIX_D}, 0), {MIX_S}² I)", _mixture, _mixture_score,
               (0.0, 0.0), 10.0, 0.0),
    )
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"K must be an integer of at least 1, got {k!r}")
    return int(k)


# ------------------------------------------------------------------------------------------------
# Fitting q


@dataclass
class GaussianFit:
    """q(z) = N(mu, diag sigma^2) fitted to a target by L_K (K = 1: the ELBO)."""

    target: str
    k: int  # the bound maximized: L_K; K = 1 is the ELBO
    seed: int
    steps: int
    sets: int  # independent K-sets per step (draws per step = sets * K)
    estimator: str  # gradient estimator: "dreg" or "standard"
    mu: torch.Tensor  # (2,)
    sigma: torch.Tensor  # (2,)
    trace: np.ndarray  # (steps,) the minibatch bound at every step

    @property
    def objective(self) -> str:
        return "ELBO" if self.k == 1 else f"IWAE, K = {self.k}"

    @property
    def logvar(self) -> torch.Tensor:
        return 2 * torch.log(self.sigma)


def sets_per_step(k: int) -> int:
    return max(MIN_SETS, math.ceil(DRAWS_PER_STEP / k))


def _reparameterize(mu: torch.Tensor, log_sigma: torch.Tensor, eps: torch.Tensor):
    """z = mu + sigma eps for standard normal ``eps`` (*, 2), and log q(z).  -> (*, 2), (*)"""
    z = mu + torch.exp(log_sigma) * eps
    log_q = -0.5 * (LOG_2PI + 2 * log_sigma + eps**2).sum(-1)  # = gaussian_log_density(z, mu, 2 log_sigma)
    return z, log_q


def _draw(mu: torch.Tensor, log_sigma: torch.Tensor, shape: tuple, generator: torch.Generator):
    """Reparameterized draws z = mu + sigma eps and log q(z).  -> (*shape, 2), (*shape)"""
    return _reparameterize(mu, log_sigma, torch.randn(*shape, 2, generator=generator))


class Adam:
    """torch.optim.Adam (LEARNING_RATE, ADAM_BETAS, eps ADAM_EPS) under torch's ExponentialLR, decaying to
    LEARNING_RATE * FINAL_LR_FACTOR at the last of ``steps`` steps, written out op for op on one parameter tensor:
    on a fit's 4 parameters the library's optimizer and scheduler bookkeeping cost more than the whole step (a fit
    took 0.5-0.9 s with them, 0.2-0.4 s without; tests/test_toy.py checks the two agree)."""

    def __init__(self, params: torch.Tensor, steps: int):
        self.params = params  # updated in place
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.lr = LEARNING_RATE
        self.gamma = FINAL_LR_FACTOR ** (1 / max(steps - 1, 1))
        self.count = 0

    def step(self, grad: torch.Tensor) -> None:
        """One descent step along ``grad``, then the learning rate's decay."""
        beta1, beta2 = ADAM_BETAS
        self.count += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2**self.count) ** 0.5).add_(ADAM_EPS)
        self.params.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - beta1**self.count))
        self.lr *= self.gamma


@torch.no_grad()
def _dreg_gradient(t: Target, params: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The DReG estimate of the gradient of L_K in (mu, log sigma), written out (no autograd graph): the surrogate
    sum_k w~_k^2 log w(z_k) with q's parameters stopped inside log q has d log w / dz = score(z) + eps / sigma, and
    dz/dmu = 1, dz/dlog sigma = sigma eps. Returns it (mean over the sets) and the log weights, (S, K)."""
    z, log_q = _reparameterize(params[:2], params[2:], eps)  # (S, K, 2), (S, K)
    sigma = torch.exp(params[2:])
    log_w = t.log_density(z) - log_q
    per_draw = bounds.normalized_weights(log_w)[..., None] ** 2 * (t.score(z) + eps / sigma)  # (S, K, 2)
    return torch.cat((per_draw.sum(1).mean(0), (per_draw * sigma * eps).sum(1).mean(0))), log_w


def _standard_gradient(t: Target, params: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Autograd of L_K (mean over the sets) through the reparameterized draws and logsumexp, q's parameters live
    in log q; and the log weights, (S, K)."""
    live = params.detach().requires_grad_(True)
    z, log_q = _reparameterize(live[:2], live[2:], eps)
    log_w = t.log_density(z) - log_q
    (gradient,) = torch.autograd.grad(bounds.iwae_bound(log_w).mean(), live)
    return gradient, log_w.detach()


def fit_gaussian(
    target: str | Target,
    k: int,
    steps: int = STEPS,
    seed: int = 0,
    on_step: Callable[[int, int, float], None] | None = None,
    estimator: str = "dreg",
) -> GaussianFit:
    """Maximize L_K (K = 1: the ELBO) over q = N(mu, diag sigma^2) by Adam on reparameterized draws.

    Start: mu = window centre + N(0, (side / 8)^2 I), sigma = side / 20, drawn from the seed and the
    target only, so the ELBO fit and every IWAE fit of a seed start from the same q (the small random
    offset breaks the symmetry of the ring and the mixture, whose centre is a poor stationary point).
    Gradient estimator: ``"dreg"`` (Tucker et al. 2019: sum_k w~_k^2 d log w_k/dz_k dz_k/dphi with q's
    parameters stopped inside log q; at K = 1 the "sticking the landing" estimator), whose variance
    vanishes as q approaches a target it can match, or ``"standard"`` (autograd through logsumexp),
    whose signal-to-noise ratio falls with K (Rainforth et al. 2018). Both are unbiased for the
    gradient of L_K, so they share its optima. Deterministic for a seed. ``on_step(step, steps, bound)``
    is called after every step (step = 1 .. steps) with that step's minibatch bound."""
    t = target if isinstance(target, Target) else get_target(target)
    k = _check_k(k)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if estimator not in bounds.ESTIMATORS:
        raise ValueError(f"estimator must be one of {bounds.ESTIMATORS}, got {estimator!r}")
    init = generator("toy-init", t.name, seed)
    mu0 = torch.tensor(t.centre, dtype=torch.float32) + t.side / 8 * torch.randn(2, generator=init)
    params = torch.cat((mu0, torch.full((2,), math.log(t.side / 20))))  # (mu, log sigma)
    gen = generator("toy-fit", t.name, k, seed)
    adam = Adam(params, steps)
    sets = sets_per_step(k)
    gradient = _dreg_gradient if estimator == "dreg" else _standard_gradient
    trace = np.empty(steps, dtype=np.float32)
    for step in range(steps):
        eps = torch.randn(sets, k, 2, generator=gen)
        ascent, log_w = gradient(t, params, eps)
        adam.step(-ascent)
        trace[step] = bounds.iwae_bound(log_w).mean().item()
        if on_step is not None:
            on_step(step + 1, steps, float(trace[step]))
    mu, log_sigma = params[:2], params[2:]
    return GaussianFit(t.name, k, seed, steps, sets, estimator, mu.clone(), torch.exp(log_sigma), trace)


@torch.no_grad()
def estimate_bound(target: str | Target, fit: GaussianFit, k: int, seed: int = 0, draws: int = EVAL_DRAWS):
    """L_K of q (K = 1: the ELBO) from ``draws // K`` disjoint K-sets: (mean, standard error)."""
    t = target if isinstance(target, Target) else get_target(target)
    k = _check_k(k)
    gen = generator("toy-bound", t.name, fit.k, k, seed)
    sets = max(2, draws // k)
    z, log_q = _draw(fit.mu, torch.log(fit.sigma), (sets, k), gen)
    per_set = bounds.iwae_bound((t.log_density(z) - log_q).double())  # (S,)
    return per_set.mean().item(), (per_set.std() / math.sqrt(sets)).item()


# ------------------------------------------------------------------------------------------------
# Densities on the window


def window_grid(target: str | Target, fit: GaussianFit, resolution: int = RESOLUTION) -> posterior.ImageGrid:
    """The target's window as a ``posterior.ImageGrid`` for q = ``fit``: log_joint = log p~(z), log_px =
    log Z by quadrature on the grid (midpoint rule), log_px_error = its change against the grid of every
    other point (twice the spacing); so ``log_posterior`` is the target normalized on the grid."""
    t = target if isinstance(target, Target) else get_target(target)
    x_axis, y_axis, spacing = posterior.window_axes(t.centre, t.side, resolution)
    points = torch.cartesian_prod(x_axis, y_axis)  # (n*n, 2), g = i n + j
    log_joint = t.log_density(points)
    area = 2 * math.log(spacing)
    log_z = torch.logsumexp(log_joint.double() + area, 0).item()
    coarse = log_joint.reshape(resolution, resolution)[::2, ::2].double()
    log_z_coarse = torch.logsumexp(coarse.reshape(-1) + area + 2 * math.log(2), 0).item()
    return posterior.ImageGrid(
        x_axis=x_axis, y_axis=y_axis, points=points, spacing=spacing,
        log_q=gaussian_log_density(points, fit.mu, fit.logvar), log_joint=log_joint,
        log_px=log_z, log_px_error=abs(log_z - log_z_coarse), mu=fit.mu, sigma=fit.sigma,
    )


def gaussian_pool(target: str | Target, fit: GaussianFit, size: int, generator: torch.Generator) -> posterior.Pool:
    """``size`` draws from q and their log weights log p~(z) - log q(z)."""
    t = target if isinstance(target, Target) else get_target(target)
    with torch.no_grad():
        z, log_q = _draw(fit.mu, torch.log(fit.sigma), (size,), generator)
        return posterior.Pool(z, t.log_density(z) - log_q)


@dataclass
class FitView:
    """One fitted q on the window: its densities, distances to the target and bounds."""

    fit: GaussianFit
    log_q: np.ndarray  # (n_y, n_x) log q(z)
    log_qiw: np.ndarray  # (n_y, n_x) log q_IW(z) at K, not renormalized
    mass_q: float  # integral of q over the window
    mass_qiw: float  # integral of q_IW over the window: the self-check, ~1 (and = mass_q at K = 1)
    tv_q: float  # TV(q, target) on the grid
    tv_qiw: float  # TV(q_IW, target)
    kl_q: float  # KL(target || q), nats
    kl_qiw: float  # KL(target || q_IW)
    elbo: tuple[float, float]  # (estimate, standard error)
    l_k: tuple[float, float]  # L_K at the result's K


@dataclass
class ToyResult:
    """Everything the toy figure and its numbers need, for one target, K and seed."""

    target: str
    label: str
    k: int
    seed: int
    resolution: int
    x_axis: np.ndarray  # (n,)
    y_axis: np.ndarray  # (n,)
    log_target: np.ndarray  # (n_y, n_x) log p(z), normalized by quadrature on the grid
    log_z: float  # log Z by quadrature on the grid
    log_z_error: float  # its change against half the resolution
    log_z_exact: float
    pool_size: int  # draws from q behind the q_IW estimate
    n_s_draws: int  # M draws of the K - 1 other weights
    elbo_fit: FitView  # q fitted by the ELBO
    iwae_fit: FitView  # q fitted by L_K


def fit_view(
    target: str | Target,
    fit: GaussianFit,
    k: int,
    seed: int = 0,
    resolution: int = RESOLUTION,
    n_draws: int = N_S_DRAWS,
) -> tuple[posterior.ImageGrid, FitView]:
    """q and q_IW at K of one fit on the target's window, with TV, KL, integrals and the bounds."""
    t = target if isinstance(target, Target) else get_target(target)
    k = _check_k(k)
    g = window_grid(t, fit, resolution)
    gen = generator("toy-qiw", t.name, fit.k, k, seed)
    pool = gaussian_pool(t, fit, posterior.pool_size_for(k), gen)
    log_qiw = posterior.log_q_iw(g, pool, k, n_draws, gen)
    view = FitView(
        fit=fit,
        log_q=g.to_image(g.log_q).astype(np.float32),
        log_qiw=g.to_image(log_qiw).astype(np.float32),
        mass_q=g.mass(g.log_q),
        mass_qiw=g.mass(log_qiw),
        tv_q=posterior.total_variation(g.log_posterior, g.log_q, g.log_area),
        tv_qiw=posterior.total_variation(g.log_posterior, log_qiw, g.log_area),
        kl_q=posterior.kl_divergence(g.log_posterior, g.log_q, g.log_area),
        kl_qiw=posterior.kl_divergence(g.log_posterior, log_qiw, g.log_area),
        elbo=estimate_bound(t, fit, 1, seed),
        l_k=estimate_bound(t, fit, k, seed),
    )
    return g, view


def compare(
    target: str,
    k: int,
    seed: int = 0,
    steps: int = STEPS,
    resolution: int = RESOLUTION,
    on_step: Callable[[int, int, float], None] | None = None,
    elbo_fit: GaussianFit | None = None,
    iwae_fit: GaussianFit | None = None,
) -> ToyResult:
    """Cremer et al.'s Figure 1 for one target: q fitted by the ELBO and by L_K, and q_IW at K of each.

    Fits are made here unless given (the page caches them separately; a given fit must match the target
    and its K). ``on_step`` sees both fits as one run of 2 * steps steps. At K = 1 the two fits coincide."""
    t = get_target(target)
    k = _check_k(k)

    def shifted(offset: int):
        if on_step is None:
            return None
        return lambda step, _total, bound: on_step(offset + step, 2 * steps, bound)

    if elbo_fit is None:
        elbo_fit = fit_gaussian(t, 1, steps, seed, shifted(0))
    if iwae_fit is None:
        iwae_fit = elbo_fit if k == 1 else fit_gaussian(t, k, steps, seed, shifted(steps))
    if (elbo_fit.target, elbo_fit.k, iwae_fit.target, iwae_fit.k) != (t.name, 1, t.name, k):
        raise ValueError("the given fits do not match the target and K")
    g, elbo_view = fit_view(t, elbo_fit, k, seed, resolution)
    _, iwae_view = fit_view(t, iwae_fit, k, seed, resolution)
    return ToyResult(
        target=t.name, label=t.label, k=k, seed=seed, resolution=resolution,
        x_axis=g.x_axis.numpy(), y_axis=g.y_axis.numpy(),
        log_target=g.to_image(g.log_posterior).astype(np.float32),
        log_z=g.log_px, log_z_error=g.log_px_error, log_z_exact=t.log_normalizer,
        pool_size=posterior.pool_size_for(k), n_s_draws=N_S_DRAWS,
        elbo_fit=elbo_view, iwae_fit=iwae_view,
    )
