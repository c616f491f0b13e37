"""Signal-to-noise ratio of the IWAE gradient estimators against K (Rainforth et al. 2018; Tucker et al. 2019).

For a model, a fixed set of images x and an estimator of the gradient of L_K ("standard": autograd through
logsumexp; "dreg": Tucker et al.'s doubly reparameterized encoder gradient), the gradient of the batch-mean
training loss (``bounds.training_loss``, the code the training runs) is drawn M times with fresh z, and per
parameter element

    SNR = |mean over the M repeats| / std over the M repeats   (std with M - 1 in the denominator).

The elements are summarized separately for the encoder's parameters (phi, the inference network) and the
decoder's (theta) by the mean and the median over elements. The figure uses the median (``FIGURE_STATISTIC``):
the per-element SNRs are heavy-tailed (a few nearly deterministic elements have SNRs in the hundreds), so the
mean follows a handful of elements while the median describes the typical one.

Elements whose gradient is exactly the same in every repeat are left out and counted ("constant"): their SNR is
0/0 or x/0. In practice these are the encoder's first-layer weights of pixels that are 0 in every chosen image
(their gradient is exactly 0).

The estimate is biased upwards for small SNRs: an element whose true SNR is 0 is estimated at about
sqrt(2 / (pi M)) (``noise_floor``), so M must be large enough for a falling SNR to stay above that floor.

At K = 1 the normalized weight is 1, so the DReG encoder gradient is the "sticking the landing" gradient of
Roeder et al. (2017): the score-function term d log q / d phi is dropped. Its decoder gradient is the standard
one at every K; with the same draws (the default here: both estimators use the same seed for each K) the two
decoder SNRs are equal up to rounding.

The M repeats run one after another and only running moments (Welford, float64) are kept: memory is that of one
gradient evaluation plus four vectors of the parameter count, whatever M.

No Streamlit here. ``load_snr`` reads and validates the JSON written by ``scripts/gradient_snr.py``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .bounds import ESTIMATORS, training_loss
from .model import VAE

GROUPS = ("encoder", "decoder")  # parameter groups: the inference network phi and the generative network theta
STATISTICS = ("mean", "median")  # summaries over a group's elements
FIGURE_STATISTIC = "median"  # the summary the figure shows
FORMAT = "iwae-explorer/gradient-snr/1"
DEFAULT_FILE = "gradient-snr.json"  # in the checkpoint folder, beside the models
SCRIPT_COMMAND = (
    "python scripts/gradient_snr.py --checkpoint checkpoints/iwae-k50.safetensors --images 8 --repeats 1000 "
    "--ks 1 3 10 30 100 300 1000 --seed 0 --threads 1 --out checkpoints/gradient-snr.json"
)
PROTOCOL_KEYS = ("checkpoint", "images", "binarization", "repeats", "seed", "summary", "snr", "gradient")
RESULT_KEYS = ("estimator", "k", "encoder", "decoder", "seconds")
GROUP_KEYS = ("mean", "median", "elements", "constant")


class SNRFileError(RuntimeError):
    """A gradient-SNR file cannot be used: missing, not JSON, or lacking / mistyping a key (the message says which)."""


# ------------------------------------------------------------------------------------------------
# Running moments and the SNR of one set of gradient draws


class RunningMoments:
    """Per-element mean and variance of a stream of equally shaped vectors (Welford's update, float64)."""

    def __init__(self, size: int):
        self.count = 0
        self.mean = torch.zeros(size, dtype=torch.float64)
        self._m2 = torch.zeros(size, dtype=torch.float64)  # sum of squared deviations from the running mean
        self._first: torch.Tensor | None = None
        self._varies = torch.zeros(size, dtype=torch.bool)  # an element differed from its first value

    def add(self, values: torch.Tensor) -> None:
        v = values.detach().reshape(-1).to(torch.float64)
        if self._first is None:
            self._first = v.clone()
        else:
            self._varies |= v != self._first
        self.count += 1
        delta = v - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (v - self.mean)

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation with count - 1 in the denominator; exactly 0 where every value was the same."""
        if self.count < 2:
            raise ValueError("the standard deviation needs at least 2 draws")
        std = (self._m2 / (self.count - 1)).clamp_min(0).sqrt()
        return torch.where(self._varies, std, torch.zeros_like(std))


def snr_from_moments(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """|mean| / std for the elements with std > 0 (the others are left out).  (P,), (P,) -> (P',)"""
    keep = std > 0
    return mean[keep].abs() / std[keep]


def snr(samples: torch.Tensor) -> torch.Tensor:
    """Per-element SNR of M draws of a vector, |mean| / std (M - 1 in the denominator); constant elements are
    left out.  (M, P) -> (P',)"""
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"expected (M >= 2, P) draws, got shape {tuple(samples.shape)}")
    moments = RunningMoments(samples.shape[1])
    for row in samples:
        moments.add(row)
    return snr_from_moments(moments.mean, moments.std)


def noise_floor(repeats: int) -> float:
    """The SNR estimate of an element whose true mean is 0: E|mean of M draws| / std = sqrt(2 / (pi M)).

    Estimated SNRs near this value are not resolved from 0 by M repeats (the estimate of a small SNR s is about
    |s + N(0, 1/M)|, biased upwards), so more repeats are needed to follow a falling SNR below it.
    """
    return math.sqrt(2.0 / (math.pi * repeats))


def summarize(mean: torch.Tensor, std: torch.Tensor) -> dict:
    """Mean and median over elements of the SNR, and how many elements entered and were left out."""
    values = snr_from_moments(mean, std)
    n = int(values.numel())
    return {
        "mean": float(values.mean()) if n else math.nan,
        "median": float(values.median()) if n else math.nan,
        "elements": n,
        "constant": int(mean.numel() - n),
    }


# ------------------------------------------------------------------------------------------------
# Gradient draws from the training loss


@dataclass
class GradientMoments:
    estimator: str
    k: int
    repeats: int
    mean: dict[str, torch.Tensor]  # group -> (P_group,) float64, the mean gradient over the repeats
    std: dict[str, torch.Tensor]  # group -> (P_group,) float64
    seconds: float

    def summary(self) -> dict[str, dict]:
        return {g: summarize(self.mean[g], self.std[g]) for g in GROUPS}


def _grad_model(model: VAE) -> VAE:
    """A private copy with gradients switched on: the caller's model (often a frozen, shared checkpoint) is not
    touched."""
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def gradient_moments(
    model: VAE,
    x: torch.Tensor,
    estimator: str,
    k: int,
    repeats: int,
    generator: torch.Generator,
    on_repeat: Callable[[], None] | None = None,
) -> GradientMoments:
    """Draw the gradient of the IWAE training loss ``repeats`` times (fresh z each time from ``generator``;
    x fixed) and keep its per-element mean and std, for the encoder's and the decoder's parameters.

    The gradient is that of ``bounds.training_loss(model, x, "iwae", k, estimator)``, i.e. of -mean_x L_K
    (standard) or its DReG surrogate; the SNR does not depend on the sign or the 1/B scale.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if k < 1 or repeats < 2:
        raise ValueError(f"need k >= 1 and repeats >= 2, got k={k}, repeats={repeats}")
    m = _grad_model(model)
    params = {"encoder": list(m.encoder.parameters()), "decoder": list(m.decoder.parameters())}
    flat = [p for g in GROUPS for p in params[g]]
    sizes = [sum(p.numel() for p in params[g]) for g in GROUPS]
    moments = {g: RunningMoments(n) for g, n in zip(GROUPS, sizes, strict=True)}
    start = time.perf_counter()
    for _ in range(repeats):
        loss, _ = training_loss(m, x, "iwae", k, estimator, generator)
        grads = torch.autograd.grad(loss, flat)  # the z hook of DReG fires here as in loss.backward()
        vector = torch.cat([g.reshape(-1) for g in grads])
        for g, part in zip(GROUPS, vector.split(sizes), strict=True):
            moments[g].add(part)
        if on_repeat is not None:
            on_repeat()
    return GradientMoments(
        estimator, k, repeats,
        mean={g: moments[g].mean for g in GROUPS},
        std={g: moments[g].std for g in GROUPS},
        seconds=time.perf_counter() - start,
    )


def k_seed(seed: int, k: int) -> int:
    """The generator seed for one K: the same for every estimator (common random numbers), different per K."""
    return (int(seed) * 1_000_003 + int(k)) % (2**63)


def snr_against_k(
    model: VAE,
    x: torch.Tensor,
    ks: Sequence[int],
    repeats: int,
    seed: int,
    estimators: Iterable[str] = ESTIMATORS,
    on_repeat: Callable[[], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """One record per (estimator, K): {"estimator", "k", "encoder": summary, "decoder": summary, "seconds"}."""
    results = []
    for estimator in estimators:
        for k in ks:
            gen = torch.Generator().manual_seed(k_seed(seed, k))
            gm = gradient_moments(model, x, estimator, int(k), repeats, gen, on_repeat)
            record = {"estimator": estimator, "k": int(k), **gm.summary(), "seconds": round(gm.seconds, 3)}
            results.append(record)
            if on_result is not None:
                on_result(record)
    return results


# ------------------------------------------------------------------------------------------------
# The JSON file


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def validate(raw, where: str = "gradient-SNR data") -> dict:
    """Check the structure written by ``scripts/gradient_snr.py``; raise SNRFileError naming the first problem."""

    def bad(what: str):
        raise SNRFileError(f"{where}: {what}")

    if not isinstance(raw, Mapping):
        bad(f"expected a JSON object, got {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        bad(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
    protocol = raw.get("protocol")
    if not isinstance(protocol, Mapping):
        bad("'protocol' is missing or not an object")
    missing = [key for key in PROTOCOL_KEYS if key not in protocol]
    if missing:
        bad(f"'protocol' lacks the keys {missing}")
    if not _is_count(protocol["repeats"]) or protocol["repeats"] < 2:
        bad(f"protocol 'repeats' must be an integer >= 2, got {protocol['repeats']!r}")
    if protocol["summary"] not in STATISTICS:
        bad(f"protocol 'summary' must be one of {STATISTICS}, got {protocol['summary']!r}")
    if not isinstance(protocol["images"], list) or not all(_is_count(i) for i in protocol["images"]):
        bad("protocol 'images' must be a list of test-image indices")
    results = raw.get("results")
    if not isinstance(results, list) or not results:
        bad("'results' is missing, not a list, or empty")
    seen = set()
    for i, r in enumerate(results):
        if not isinstance(r, Mapping):
            bad(f"results[{i}] is not an object")
        missing = [key for key in RESULT_KEYS if key not in r]
        if missing:
            bad(f"results[{i}] lacks the keys {missing}")
        if r["estimator"] not in ESTIMATORS:
            bad(f"results[{i}]: estimator must be one of {ESTIMATORS}, got {r['estimator']!r}")
        if not _is_count(r["k"]) or r["k"] < 1:
            bad(f"results[{i}]: k must be a positive integer, got {r['k']!r}")
        if (r["estimator"], r["k"]) in seen:
            bad(f"results[{i}]: ({r['estimator']}, K={r['k']}) appears twice")
        seen.add((r["estimator"], r["k"]))
        if not _is_number(r["seconds"]):
            bad(f"results[{i}]: seconds must be a number, got {r['seconds']!r}")
        for group in GROUPS:
            s = r[group]
            if not isinstance(s, Mapping) or any(key not in s for key in GROUP_KEYS):
                bad(f"results[{i}].{group} must be an object with the keys {list(GROUP_KEYS)}")
            for stat in STATISTICS:
                if not _is_number(s[stat]) or not s[stat] >= 0:  # also rejects NaN
                    bad(f"results[{i}].{group}.{stat} must be a number >= 0, got {s[stat]!r}")
            if not _is_count(s["elements"]) or not _is_count(s["constant"]):
                bad(f"results[{i}].{group}: 'elements' and 'constant' must be counts")
    return dict(raw)


def load_snr(path: Path | str) -> dict:
    """Read and validate a gradient-SNR JSON file: {"format", "protocol", "results"}. Raises SNRFileError."""
    path = Path(path)
    if not path.is_file():
        raise SNRFileError(f"{path}: no such file; make it with `{SCRIPT_COMMAND}`")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SNRFileError(f"{path}: not readable JSON ({exc})") from None
    return validate(raw, str(path))


def series(data: Mapping, estimator: str, group: str, statistic: str = FIGURE_STATISTIC) -> tuple[list, list]:
    """(ks, snrs) of one estimator and parameter group, sorted by K."""
    rows = sorted((r for r in data["results"] if r["estimator"] == estimator), key=lambda r: r["k"])
    return [r["k"] for r in rows], [r[group][statistic] for r in rows]
