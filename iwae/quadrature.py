"""Exact log p(x) and p(z|x) by quadrature over the 2-D latent plane.

One implementation serves the evaluation CLI and the explorer's views:

1. A global grid of cell centres over [-R0, R0]^2 (spacing h0), shared by every image: the decoder's
   logits there do not depend on x, so log p(x|z_g) for a batch of images is one matrix product.
   This searches the whole square, so modes that q(z|x) never reaches are found.
2. The region grows (R0 -> R1 -> ... up to ``MAX_HALF_WIDTH``), per image, until the mass it leaves outside
   is negligible: an upper bound on that mass, over log p(x) inside, below ``OUTSIDE_NATS_TARGET`` nats.
   The bound is M + log P(z outside the square) under the prior, with M the largest log p(x|z) on the
   square's border and on far-field probe rings (radii from R0 to 1024, shared by all images). It relies on
   log p(x|z) outside the square not exceeding that maximum: the decoder's tanh units saturate, so log p(x|z)
   tends to a limit along every ray and the probes sample it; log p(x|z) <= 0 always.
3. Per image, cells that hold mass (log p(x, z) within ``MASS_NATS`` of the maximum) or may hide a
   narrow peak (large curvature within ``SEARCH_NATS``) are subdivided s x s, with s chosen from the
   local curvature so that the fine spacing is at most half the posterior's width there; then every cell is made
   at least half as fine as its neighbours (a narrow peak near a cell's edge spills into the next cell).
4. log p(x) = logsumexp over all points of log p(x, z) + log(cell area) (the midpoint rule).

Error estimate: in every cell within ``ACTIVE_NATS`` of the maximum, the trapezoidal rule on the same fine
spacing (the (s+1)^2 corners of the sub-cells) gives a second estimate of the cell's integral. The two composite
rules have errors of opposite signs, the midpoint's about half the trapezoid's, so |midpoint - trapezoid| over all
those cells bounds the midpoint rule's error and is about three times it. That holds cell by cell only roughly (the
midpoint's share of the difference is 0.24-0.40, not 1/3), and the signed differences of many cells can cancel, so
``CANCELLATION_ALLOWANCE`` times the sum of their absolute values is added. Cells where the rules disagree most are
subdivided further (up to ``RESOLUTION_PASSES`` times, every cell kept at least half as fine as its neighbours after
each pass, as in step 3) until the difference is below ``RESOLUTION_TARGET``. Added
to the estimate: the bound on the mass outside the region, and the mass of the cells below ``ACTIVE_NATS``
(counted by their centres only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import VAE, standard_normal_log_density

HALF_WIDTH = 6.0  # R0: the shared global grid covers [-R0, R0]^2
COARSE_SPACING = 0.075  # h0, on the global grid and wherever the region grows
GROWTH = (6.0, 9.0, 12.0, 18.0, 24.0, 36.0, 48.0)  # half-widths tried in turn; multiples of h0 apart
MAX_HALF_WIDTH = GROWTH[-1]
OUTSIDE_NATS_TARGET = 1e-3  # grow until the mass outside changes log p(x) by at most this (upper bound)
MASS_NATS = 12.0  # cells within this of the max log joint are refined where curvature asks for it
SEARCH_NATS = 30.0  # cells within this are refined too if their curvature suggests a hidden narrow peak
ACTIVE_NATS = 25.0  # cells within this get the trapezoidal second estimate; below, their whole mass is error
MAX_SUBDIVISION = 32
RESOLUTION_TARGET = 2e-3  # subdivide further until the two rules differ by at most this share of p(x)
RESOLUTION_PASSES = 6
RESOLUTION_COVERAGE = 0.9  # each pass subdivides the cells holding this share of the rules' disagreement
# Share of sum |midpoint - trapezoid| over the cells added to |sum|. With 0.02 (of 0, 0.02, 0.05, 0.1 tried) no
# estimate falls below the real error on the 200 hardest test images of iwae-k50 and iwae-k50-dreg. Without it,
# iwae-k50 image 8998's cells have absolute differences adding up to 39 times their signed sum, and its estimate was
# 12% short.
CANCELLATION_ALLOWANCE = 0.02
PROBE_RADII = (6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 18.0, 24.0, 30.0, 36.0, 48.0, 64.0, 128.0, 1024.0)
PROBE_ANGLES = 512


@dataclass
class GlobalGrid:
    """The decoder evaluated on the global grid of cell centres and on the far-field probe rings; shared by all
    images of one model."""

    centres: torch.Tensor  # (G, 2)
    logits: torch.Tensor  # (G, D) decoder logits
    softplus_sum: torch.Tensor  # (G,) sum_d softplus(logits)
    log_prior: torch.Tensor  # (G,)
    n: int  # the grid is n x n; index g = i * n + j with z = (x_i, y_j)
    spacing: float
    half_width: float
    probe_radius: torch.Tensor  # (P,) radius of each far-field probe point
    probe_logits: torch.Tensor  # (P, D)
    probe_softplus_sum: torch.Tensor  # (P,)


@dataclass
class QuadraturePoints:
    """Midpoint-rule points of a quadrature stage."""

    points: torch.Tensor  # (P, 2)
    log_joint: torch.Tensor  # (P,) log p(x, z) there
    log_area: torch.Tensor  # (P,) log cell area there


@dataclass
class Quadrature:
    log_px: float  # log p(x) by quadrature (midpoint rule)
    error_estimate: float  # nats: rules' difference (with cancellation allowance) + outside bound + coarse cells' mass
    outside_log_mass_bound: float  # log of an upper bound on the mass outside [-R, R]^2
    points: torch.Tensor  # (P, 2) every quadrature point used
    log_joint: torch.Tensor  # (P,) log p(x, z) there
    log_area: torch.Tensor  # (P,) log cell area there
    n_refined_cells: int
    finest_spacing: float
    half_width: float  # R: the region integrated is [-R, R]^2
    outside_nats: float  # the outside bound's effect on log p(x), nats (at most OUTSIDE_NATS_TARGET unless R is
    # MAX_HALF_WIDTH)
    first_stage: QuadraturePoints  # the points before the resolution passes (the same for any number of passes)


def axis_centres(n: int, spacing: float, half_width: float) -> torch.Tensor:
    return -half_width + spacing * (torch.arange(n, dtype=torch.float32) + 0.5)


@torch.no_grad()
def log_likelihood_from_logits(x: torch.Tensor, logits: torch.Tensor, softplus_sum: torch.Tensor) -> torch.Tensor:
    """log p(x|z_g) for images x (B, D) and logits (G, D): x . f - sum softplus(f).  -> (B, G)"""
    return x @ logits.T - softplus_sum


@torch.no_grad()
def decoder_table(model: VAE, z: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder logits and their softplus sums at points z (G, 2)."""
    logits = torch.cat([model.decode_logits(c) for c in z.split(chunk)])
    return logits, F.softplus(logits).sum(-1)


def probe_points() -> tuple[torch.Tensor, torch.Tensor]:
    """Far-field probe rings: PROBE_ANGLES points on each circle of PROBE_RADII.  -> (P, 2), radii (P,)"""
    theta = torch.arange(PROBE_ANGLES, dtype=torch.float64) * (2 * math.pi / PROBE_ANGLES)
    radii = torch.tensor(PROBE_RADII, dtype=torch.float64).repeat_interleave(PROBE_ANGLES)
    angles = theta.repeat(len(PROBE_RADII))
    return torch.stack([radii * torch.cos(angles), radii * torch.sin(angles)], -1).float(), radii.float()


@torch.no_grad()
def global_grid(model: VAE, half_width: float = HALF_WIDTH, spacing: float = COARSE_SPACING) -> GlobalGrid:
    n = int(round(2 * half_width / spacing))
    axis = axis_centres(n, spacing, half_width)
    centres = torch.cartesian_prod(axis, axis)  # (n*n, 2), row-major: g = i * n + j
    logits, softplus_sum = decoder_table(model, centres)
    probes, radii = probe_points()
    probe_logits, probe_softplus = decoder_table(model, probes)
    return GlobalGrid(centres, logits, softplus_sum, standard_normal_log_density(centres), n, spacing, half_width,
                      radii, probe_logits, probe_softplus)


@torch.no_grad()
def coarse_log_joint(grid: GlobalGrid, x: torch.Tensor) -> torch.Tensor:
    """log p(x, z_g) on the global grid for images x (B, D).  -> (B, G)"""
    return log_likelihood_from_logits(x, grid.logits, grid.softplus_sum) + grid.log_prior


@torch.no_grad()
def log_joint_at(model: VAE, x: torch.Tensor, z: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """log p(x, z) for one image x (D,) at points z (P, 2).  -> (P,)

    The quadrature's own float32 evaluation, not ``VAE.log_joint`` (which agrees to about 1e-4 nats): its error
    estimates were validated with exactly these numerics (docs/findings.md, "Quadrature accuracy")."""
    out = []
    for c in z.split(chunk):
        logits = model.decode_logits(c)
        out.append(log_likelihood_from_logits(x, logits, F.softplus(logits).sum(-1)) + standard_normal_log_density(c))
    return torch.cat(out) if out else torch.zeros(0)


def _curvature(j2d: torch.Tensor) -> torch.Tensor:
    """Largest absolute second difference along either axis, per cell (borders: one-sided 0)."""
    curv = torch.zeros_like(j2d)
    dx = (j2d[2:, :] - 2 * j2d[1:-1, :] + j2d[:-2, :]).abs()
    dy = (j2d[:, 2:] - 2 * j2d[:, 1:-1] + j2d[:, :-2]).abs()
    curv[1:-1, :] = torch.maximum(curv[1:-1, :], dx)
    curv[:, 1:-1] = torch.maximum(curv[:, 1:-1], dy)
    return torch.nan_to_num(curv, nan=0.0, posinf=1e6)


def _subdivision(curv: torch.Tensor, oversample: int = 1) -> torch.Tensor:
    """Powers of two s with fine spacing h0/s <= posterior width / oversample, width ~ h0 / sqrt(curvature): the
    midpoint rule on a Gaussian of width sigma at spacing sigma is already exact to ~1e-8 (relative)."""
    need = oversample * curv.clamp(min=0).sqrt()
    s = torch.ones_like(need, dtype=torch.int64)
    while True:
        grow = (s < need) & (s < MAX_SUBDIVISION * oversample)
        if not grow.any():
            return s
        s = torch.where(grow, s * 2, s)


def _balanced(s: torch.Tensor) -> torch.Tensor:
    """Subdivision levels (n, n) raised so that every cell is at least half as fine as each of its 8 neighbours.
    A peak narrower than h0 near a cell's edge spills into the neighbour, whose centre, corners and curvature can all
    miss it: without this the neighbour stays coarse, both rules agree there on a value far too small, and the
    missing mass goes unnoticed (iwae-k50 test image 6172: 0.086 nats; scripts/quadrature_accuracy.py)."""
    s = s.double()[None, None]
    while True:
        needed = torch.floor(F.max_pool2d(s, 3, stride=1, padding=1) / 2)
        raised = torch.maximum(s, needed)
        if torch.equal(raised, s):
            return s[0, 0].long()
        s = raised


def log_prior_outside_square(half_width: float) -> float:
    """log of an upper bound on P(z outside [-R, R]^2) under N(0, I): 4 P(z_1 > R)."""
    return math.log(4.0) + float(torch.special.log_ndtr(torch.tensor(-half_width, dtype=torch.float64)))


def _log1p_exp(d: float) -> float:
    return d + math.log1p(math.exp(-d)) if d > 0 else math.log1p(math.exp(d))


@dataclass
class _Region:
    """The coarse log joint on [-R, R]^2 at spacing h0, for one image."""

    j2d: torch.Tensor  # (n, n) log p(x, z) at the cell centres
    axis: torch.Tensor  # (n,)
    half_width: float


def _border_log_likelihood(region: _Region) -> float:
    """The largest log p(x|z) on the border cells of the region."""
    axis = region.axis
    border = torch.cat([region.j2d[0], region.j2d[-1], region.j2d[:, 0], region.j2d[:, -1]])
    z_border = torch.cat([
        torch.stack([axis[0].expand_as(axis), axis], -1), torch.stack([axis[-1].expand_as(axis), axis], -1),
        torch.stack([axis, axis[0].expand_as(axis)], -1), torch.stack([axis, axis[-1].expand_as(axis)], -1),
    ])
    return (border - standard_normal_log_density(z_border)).max().item()


def _outside_bound(region: _Region, probe_ll: torch.Tensor, probe_radius: torch.Tensor) -> float:
    """log of an upper bound on the mass of p(x, z) outside the region (see the module's docstring)."""
    far = probe_ll[probe_radius >= region.half_width]
    top = max(_border_log_likelihood(region), far.max().item() if len(far) else -math.inf)
    return min(top, 0.0) + log_prior_outside_square(region.half_width)


@torch.no_grad()
def _grow(model: VAE, x: torch.Tensor, region: _Region, half_width: float, spacing: float) -> _Region:
    """The region extended to [-half_width, half_width]^2: the old cells kept, the new ring evaluated."""
    n_old = len(region.axis)
    pad = int(round((half_width - region.half_width) / spacing))
    n, half_width = n_old + 2 * pad, region.half_width + pad * spacing  # whole cells: the old centres are kept
    axis = axis_centres(n, spacing, half_width)
    j2d = torch.empty(n, n)
    inner = torch.zeros(n, n, dtype=torch.bool)
    inner[pad : pad + n_old, pad : pad + n_old] = True
    j2d[inner] = region.j2d.reshape(-1)
    ring = torch.cartesian_prod(axis, axis)[~inner.reshape(-1)]
    j2d[~inner] = log_joint_at(model, x, ring)
    return _Region(j2d, axis, half_width)


def _cell_rules(model: VAE, x: torch.Tensor, cells: torch.Tensor, level: int, h0: float):
    """Midpoint sub-points of ``cells`` (C, 2) at level s > 1 and the trapezoid estimate of each cell.
    -> midpoint points (C s^2, 2), their log joint, log of each cell's trapezoid integral (C,)"""
    offs = (torch.arange(level, dtype=torch.float32) + 0.5) / level - 0.5
    mid = (cells[:, None, :] + torch.cartesian_prod(offs, offs)[None] * h0).reshape(-1, 2)
    corner_offs = torch.arange(level + 1, dtype=torch.float32) / level - 0.5
    corners = (cells[:, None, :] + torch.cartesian_prod(corner_offs, corner_offs)[None] * h0).reshape(-1, 2)
    j_corner = log_joint_at(model, x, corners).reshape(len(cells), -1)
    trapezoid = torch.logsumexp((j_corner + _trapezoid_log_weights(level)).double(), 1) + 2 * math.log(h0 / level)
    return mid, log_joint_at(model, x, mid), trapezoid


def _trapezoid_log_weights(level: int) -> torch.Tensor:
    w1 = torch.ones(level + 1)
    w1[0] = w1[-1] = 0.5
    return torch.outer(w1, w1).log().reshape(-1)  # (s+1)^2, row-major like cartesian_prod


def _coarse_trapezoid(model: VAE, x: torch.Tensor, region: _Region, chosen: torch.Tensor) -> torch.Tensor:
    """The trapezoid estimate of each chosen coarse cell (flat indices into the n x n region) from the corners of
    the cells, each corner evaluated once however many chosen cells share it.  -> (C,) log integrals"""
    n, h0 = len(region.axis), (region.axis[1] - region.axis[0]).item()
    i, j = chosen // n, chosen % n
    corner_ids = torch.stack([i * (n + 1) + j, i * (n + 1) + j + 1, (i + 1) * (n + 1) + j,
                              (i + 1) * (n + 1) + j + 1], -1)  # (C, 4), row-major (i, j) like cartesian_prod
    unique, inverse = torch.unique(corner_ids, return_inverse=True)
    corner_axis = torch.cat([region.axis - h0 / 2, region.axis[-1:] + h0 / 2])
    z = torch.stack([corner_axis[unique // (n + 1)], corner_axis[unique % (n + 1)]], -1)
    j_corner = log_joint_at(model, x, z)[inverse]  # (C, 4)
    return torch.logsumexp((j_corner + _trapezoid_log_weights(1)).double(), 1) + 2 * math.log(h0)


@torch.no_grad()
def refine(model: VAE, grid: GlobalGrid, x: torch.Tensor, j_coarse: torch.Tensor, oversample: int = 1,
           passes: int | None = None) -> Quadrature:
    """Adaptive quadrature for one image x (D,), given its log joint on the global grid (G,). ``oversample`` > 1
    refines that many times finer, to a resolution target oversample^4 times smaller (a reference pass for checking
    the error estimate). ``passes`` caps the resolution passes (default RESOLUTION_PASSES * oversample): with 0 the
    result is the first stage alone, about a third of the time, without the error estimate's resolution target."""
    h0 = grid.spacing
    region = _Region(j_coarse.reshape(grid.n, grid.n), axis_centres(grid.n, h0, grid.half_width), grid.half_width)
    probe_ll = log_likelihood_from_logits(x[None], grid.probe_logits, grid.probe_softplus_sum)[0]
    log_area0 = 2 * math.log(h0)
    for half_width in (r for r in GROWTH if r > grid.half_width):
        log_px_coarse = torch.logsumexp(region.j2d.reshape(-1).double(), 0).item() + log_area0
        if _log1p_exp(_outside_bound(region, probe_ll, grid.probe_radius) - log_px_coarse) <= OUTSIDE_NATS_TARGET:
            break
        region = _grow(model, x, region, half_width, h0)

    j2d = region.j2d
    centres = torch.cartesian_prod(region.axis, region.axis)
    j_flat = j2d.reshape(-1)
    top = j_flat.max()
    curv = _curvature(j2d)
    wanted = (j2d >= top - MASS_NATS) | ((j2d >= top - SEARCH_NATS) & (curv > 4.0))
    s = _balanced(torch.where(wanted, _subdivision(curv, oversample), torch.ones_like(curv, dtype=torch.int64)))
    s = s.reshape(-1)
    active = (j_flat >= top - ACTIVE_NATS) | (s > 1)
    inactive_log_mass = (torch.logsumexp(j_flat[~active].double(), 0).item() + log_area0 if (~active).any()
                         else -math.inf)
    cells = _Cells(model, x, region, active.nonzero()[:, 0], s[active])
    first_stage = _stage_points(centres[~active], j_flat[~active], log_area0, cells)
    max_level, target = MAX_SUBDIVISION * oversample, RESOLUTION_TARGET / oversample**4
    for _ in range(RESOLUTION_PASSES * oversample if passes is None else passes):  # where the two rules disagree most
        log_px = torch.logaddexp(torch.logsumexp(cells.mid, 0), torch.tensor(inactive_log_mass, dtype=torch.float64))
        share = torch.exp(cells.mid - log_px) - torch.exp(cells.trap - log_px)  # (C,) signed, of p(x)
        if share.sum().abs() <= target:
            break
        worst = _largest_shares(share.abs(), RESOLUTION_COVERAGE) & (cells.level < max_level)
        if not worst.any():
            break
        cells.subdivide(worst)
        cells.balance()

    final = _stage_points(centres[~active], j_flat[~active], log_area0, cells)
    log_px = torch.logsumexp((final.log_joint + final.log_area).double(), 0).item()
    # Composite rules: the per-cell edge terms of their errors cancel between neighbours (so the totals are compared,
    # not the cells), and the two errors have opposite signs, so the difference bounds the midpoint rule's error (it is
    # about three times that error: the trapezoid's is about -2 times the midpoint's).
    difference = torch.exp(cells.mid - log_px) - torch.exp(cells.trap - log_px)  # (C,) signed, of p(x)
    resolution_share = abs(difference.sum().item()) + CANCELLATION_ALLOWANCE * difference.abs().sum().item()
    outside = _outside_bound(region, probe_ll, grid.probe_radius)
    outside_nats = _log1p_exp(outside - log_px)
    coarse_nats = _log1p_exp(inactive_log_mass - log_px) if math.isfinite(inactive_log_mass) else 0.0
    return Quadrature(
        log_px=log_px,
        error_estimate=math.log1p(resolution_share) + outside_nats + coarse_nats,
        outside_log_mass_bound=outside,
        points=final.points,
        log_joint=final.log_joint,
        log_area=final.log_area,
        n_refined_cells=int((cells.level > 1).sum()),
        finest_spacing=h0 / cells.level.max().item() if len(cells.level) else h0,
        half_width=region.half_width,
        outside_nats=outside_nats,
        first_stage=first_stage,
    )


def _stage_points(coarse_points: torch.Tensor, coarse_joint: torch.Tensor, log_area0: float,
                  cells: _Cells) -> QuadraturePoints:
    """The coarse cells left as they are and the active cells' midpoint points at their current levels."""
    points, log_joint, log_area = cells.points()
    return QuadraturePoints(torch.cat([coarse_points, points]), torch.cat([coarse_joint, log_joint]),
                            torch.cat([torch.full((len(coarse_points),), log_area0), log_area]))


def refine_image(model: VAE, grid: GlobalGrid, x: torch.Tensor, oversample: int = 1,
                 passes: int | None = None) -> Quadrature:
    """``refine`` for one image x (D,), its log joint on the global grid computed here."""
    return refine(model, grid, x, coarse_log_joint(grid, x[None])[0], oversample, passes)


def _largest_shares(share: torch.Tensor, coverage: float) -> torch.Tensor:
    """The fewest cells whose shares add up to ``coverage`` of the total, largest first.  -> (C,) bool"""
    order = torch.argsort(share, descending=True)
    cumulative = torch.cumsum(share[order], 0)
    count = int(torch.searchsorted(cumulative, coverage * cumulative[-1]).item()) + 1
    chosen = torch.zeros_like(share, dtype=torch.bool)
    chosen[order[:count]] = True
    return chosen


class _Cells:
    """The active coarse cells of one image, each at its own subdivision level, with both rules' integrals."""

    def __init__(self, model: VAE, x: torch.Tensor, region: _Region, index: torch.Tensor, level: torch.Tensor):
        self.model, self.x, self.region = model, x, region
        self.h0 = (region.axis[1] - region.axis[0]).item()
        self.index, self.level = index, level.clone()  # flat cell indices into the region (C,), levels (C,)
        self.centres = torch.cartesian_prod(region.axis, region.axis)[index]
        self.mid = torch.empty(len(index), dtype=torch.float64)  # log midpoint-rule integral per cell
        self.trap = torch.empty(len(index), dtype=torch.float64)  # log trapezoid-rule integral per cell
        self.groups: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # level, cells, points, j
        self._compute(torch.ones(len(index), dtype=torch.bool))

    def _compute(self, chosen: torch.Tensor) -> None:
        for level in torch.unique(self.level[chosen]).tolist():
            which = (chosen & (self.level == level)).nonzero()[:, 0]
            if level == 1:  # the midpoint is the coarse centre, already known
                mid, j_mid = self.centres[which], self.region.j2d.reshape(-1)[self.index[which]]
                trap = _coarse_trapezoid(self.model, self.x, self.region, self.index[which])
            else:
                mid, j_mid, trap = _cell_rules(self.model, self.x, self.centres[which], level, self.h0)
            area = 2 * math.log(self.h0 / level)
            self.mid[which] = torch.logsumexp(j_mid.double().reshape(len(which), -1), 1) + area
            self.trap[which] = trap
            self.groups.append((level, which, mid, j_mid))

    def subdivide(self, chosen: torch.Tensor) -> None:
        self.level[chosen] *= 2
        self._compute(chosen)

    def balance(self) -> None:
        """Raise cells until each is at least half as fine as its neighbours (``_balanced``), after a resolution
        pass: a cell beside a peak's refined cells can hold a third of the mass while the two rules agree there by
        chance (iwae-k50 test image 8072: error 4e-3 nats under an estimate of 2e-3)."""
        n = len(self.region.axis)
        i, j = self.index // n, self.index % n  # balanced on the active cells' bounding box only: far cheaper
        i0, j0 = i.min().item(), j.min().item()
        levels = torch.ones(i.max().item() - i0 + 1, j.max().item() - j0 + 1, dtype=torch.int64)
        levels[i - i0, j - j0] = self.level
        balanced = _balanced(levels)[i - i0, j - j0]
        raised = balanced > self.level
        if raised.any():
            self.level = torch.maximum(self.level, balanced)
            self._compute(raised)

    def points(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Midpoint-rule points of every cell at its final level.  -> (P, 2), log joint (P,), log area (P,)"""
        pts, joint, area = [], [], []
        for level, which, mid, j_mid in self.groups:
            current = (self.level[which] == level).repeat_interleave(level * level)
            pts.append(mid[current])
            joint.append(j_mid[current])
            area.append(torch.full((int(current.sum()),), 2 * math.log(self.h0 / level)))
        if not pts:
            return torch.zeros(0, 2), torch.zeros(0), torch.zeros(0)
        return torch.cat(pts), torch.cat(joint), torch.cat(area)


@torch.no_grad()
def log_px_batch(model: VAE, grid: GlobalGrid, x: torch.Tensor, batch: int = 256, progress=None) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Quadrature log p(x) and its error estimate for many images (N, D).  -> (N,), (N,)"""
    log_px, err = torch.empty(len(x), dtype=torch.float64), torch.empty(len(x), dtype=torch.float64)
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        jb = coarse_log_joint(grid, xb)
        for i in range(len(xb)):
            q = refine(model, grid, xb[i], jb[i])
            log_px[start + i], err[start + i] = q.log_px, q.error_estimate
        if progress is not None:
            progress(len(xb))
    return log_px, err


@torch.no_grad()
def posterior_modes(grid: GlobalGrid, j_coarse: torch.Tensor, nats: float = 6.0) -> list[float]:
    """Separate regions of the posterior on the global grid: connected sets of cells whose log joint is
    within ``nats`` of the maximum. Returns each region's share of the mass, largest first."""
    from scipy import ndimage

    j2d = j_coarse.reshape(grid.n, grid.n)
    labels, count = ndimage.label((j2d >= j2d.max() - nats).numpy())
    weights = torch.softmax(j_coarse.double(), 0).reshape(grid.n, grid.n).numpy()
    shares = ndimage.sum(weights, labels, index=range(1, count + 1))
    return sorted((float(s) for s in shares), reverse=True)
