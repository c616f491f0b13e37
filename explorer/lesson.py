"""The guided lesson: the story of Burda et al. (2016) and Cremer et al. (2017) told in steps with the shipped models.

Each step is a complete state (which view, which models, which image, which K) with two to four sentences and one
question for the class. The image of a step is never a written index: it is named by a rule over the computation behind
the instructive presets (``checkpoints/instructive-images.json``, scripts/find_instructive_images.py) and the
evaluation's per-image numbers (``<model>.per-image.npz``), so retrained models keep a working lesson; the reason is
shown with the image. No Streamlit here (explorer.lesson_ui draws the steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import downloads, presets
from . import state as state_mod

# How a step chooses its image (rule name -> what it means, shown to the class with the image).
TYPICAL = "typical"  # log p(x) under the left model closest to its median over the evaluated test images
MULTIMODAL = "multimodal"  # presets: the largest share of the true posterior's mass in a second mode
LARGEST_GAP = "largest_gap"  # presets: the largest log p(x) - ELBO under the VAE
DISAGREE = "vae_iwae_disagree"  # presets: the largest |log p_VAE(x) - log p_IWAE(x)|
RULES = (TYPICAL, MULTIMODAL, LARGEST_GAP, DISAGREE)

# The views a step can show (explorer.lesson_ui draws each; the page each one opens in the full explorer).
VIEW_PAGES = {
    "latent": "pages/latent.py",
    "posterior_q": "pages/posteriors.py",
    "posterior_k": "pages/posteriors.py",
    "resampling": "pages/resampling.py",
    "bounds": "pages/bounds.py",
    "estimator": "pages/posteriors.py",
    "snr": "pages/bounds.py",
    "toy": "pages/toy.py",
}


@dataclass(frozen=True)
class Step:
    title: str
    view: str  # one of VIEW_PAGES
    models: tuple[str, str]  # preferred (left, right) checkpoint names; the nearest available pair otherwise
    image: str  # one of RULES
    k: int  # one of state.K_CHOICES (for "toy": one of iwae.toy.K_CHOICES)
    text: str  # two to four sentences (markdown, $...$ mathematics)
    question: str  # one question to put to the class
    toy_target: str = "mixture"  # the toy view's target


VAE_IWAE = ("vae-k1", "iwae-k50")

STEPS: tuple[Step, ...] = (
    Step(
        "Two latent spaces", "latent", VAE_IWAE, TYPICAL, 50,
        "Each dot is the encoder's mean $\\mu(x)$ for one test image, coloured by its digit, for a **VAE** (trained "
        "on the ELBO) and an **IWAE** (trained on $\\mathcal{L}_{50}$), same network and same budget. The black ring "
        "is the image we follow through the lesson.",
        "Both models squeeze 784 pixels into two numbers: which one separates the digits better, and why might a "
        "different training bound change the encoder at all?",
    ),
    Step(
        "The encoder's guess against the truth", "posterior_q", VAE_IWAE, TYPICAL, 1,
        "Left of each pair: the encoder's Gaussian $q(z|x)$. Right: the true posterior $p(z|x)$, computed exactly "
        "because $z$ has two dimensions. The ELBO punishes every bit of $q$ that falls where $p$ is small, so the "
        "VAE's $q$ hides inside $p$; the IWAE's $q$ is allowed to spread.",
        "Which model's q would you rather draw samples from to cover p(z|x), and which one looks more "
        "'confident'?",
    ),
    Step(
        "Raising K carries q_IW from q to p", "posterior_k", VAE_IWAE, TYPICAL, 10,
        "Draw $K$ samples from $q$, keep one with probability proportional to its weight $w = p(x,z)/q(z|x)$: the "
        "kept sample has the density $q_{IW}$. At $K = 1$ it is $q$; **move K in the sidebar** and watch it "
        "approach $p(z|x)$ and the total variation distance fall.",
        "At K = 1000, whose q_IW matches p better, and what can q_IW never do, however large K is?",
    ),
    Step(
        "A posterior with two modes", "posterior_k", VAE_IWAE, MULTIMODAL, 1000,
        "For this image the true posterior has a second mode (the reason is printed above). A single Gaussian "
        "$q$ can cover only one; resampling from $K = 1000$ of its draws recovers the other mode only where $q$ "
        "puts some draws near it: compare the two models' distances to $p$ below the figures.",
        "Why does q_IW recover a mode that q itself barely reaches, and what happens if q reaches it not at all?",
    ),
    Step(
        "Resampling weights bad proposals away", "resampling", VAE_IWAE, LARGEST_GAP, 100,
        "Each picture decodes one latent draw. On the left of each model, plain draws from $q(z|x)$; on the right, "
        "sampling-importance-resampling at $K = 100$. This is the image whose ELBO falls furthest below "
        "$\\log p(x)$: $q$ wanders to latents that decode to the wrong digit. The weights remove them only where "
        "some of the $K$ draws land on the right digit: compare the two models.",
        "Which draws did the weights throw away, and what does the effective sample size tell you about how many "
        "proposals really counted?",
    ),
    Step(
        "The bound climbs to log p(x)", "bounds", VAE_IWAE, DISAGREE, 50,
        "$\\mathcal{L}_K$ against $K$ for one image, with the exact $\\log p(x)$ as a dashed line: every bound stays "
        "below it and rises with $K$ (Burda et al.'s Theorem 1). This image is the one where the two models' "
        "$\\log p(x)$ differ most.",
        "The IWAE trains on L_50: is its advantage a tighter bound on the same model, or a better model, and how "
        "could you tell the two apart here?",
    ),
    Step(
        "The mean of the log is not the log of the mean", "estimator", VAE_IWAE, TYPICAL, 50,
        "One draw of $K = 50$ log weights, sorted. The ELBO estimate averages the logs (dashed); $\\mathcal{L}_K$ "
        "takes the log of the average weight (solid), computed stably as $\\max + \\log\\sum e^{\\log w - \\max} - "
        "\\log K$. A few large weights dominate the average: the effective sample size counts them.",
        "Why must the log of the mean be at least the mean of the log, and why not compute it as "
        "log(mean(exp(log w)))?",
    ),
    Step(
        "The price: a noisier encoder gradient, and DReG", "snr", ("iwae-k50", "iwae-k50-dreg"), TYPICAL, 50,
        "A tighter bound is not a better training signal for the encoder: with the standard IWAE gradient its "
        "signal-to-noise ratio falls like $1/\\sqrt{K}$ while the decoder's rises (Rainforth et al. 2018). The "
        "doubly reparameterized estimator DReG (Tucker et al. 2019) removes the noisy score-function term.",
        "If the encoder's gradient becomes pure noise at large K, what does the IWAE's q end up trained by?",
    ),
    Step(
        "Toy targets: the same story in the open", "toy", VAE_IWAE, TYPICAL, 100,
        "A known 2-D density stands in for the posterior. A Gaussian $q$ fitted by the ELBO sits inside one "
        "component; fitted by $\\mathcal{L}_{100}$ it spreads over both, and its $q_{IW}$ covers the target "
        "(Cremer et al. 2017, Figure 1).",
        "Which objective would you choose to train an encoder whose samples you will reweight, and which one if you "
        "must use q(z|x) alone?",
    ),
)


@dataclass(frozen=True)
class ImageChoice:
    index: int  # test-set index
    reason: str  # why this image, in words


def step_models(step: Step, names: Sequence[str]) -> tuple[str, str]:
    """The step's preferred pair, each model replaced by the default pair's when it is not loaded."""
    default = state_mod.default_models(list(names))
    a = step.models[0] if step.models[0] in names else default[0]
    if step.models[1] in names and step.models[1] != a:
        return a, step.models[1]
    others = [n for n in (*default, *names) if n != a]
    return a, others[0] if others else a


def _fmt_models(values: Mapping, fmt: str) -> str:
    return ", ".join(f"{name} {fmt.format(float(v))}" for name, v in values.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))


def typical_image(directory: Path, model: str, excluded: set[int], n_images: int) -> ImageChoice:
    """The image whose quadrature log p(x) under ``model`` is closest to the median over its evaluated images, among
    those in no preset group; without per-image numbers, the first test image in no preset group."""
    numbers = downloads.per_image_numbers(Path(directory) / f"{model}.safetensors")
    if numbers is not None:
        log_px = numbers["log_px_quadrature"][:n_images]
        ok = np.isfinite(log_px)
        ok[[i for i in excluded if i < len(ok)]] = False
        if ok.any():
            median = float(np.median(log_px[np.isfinite(log_px)]))
            candidates = np.flatnonzero(ok)
            i = int(candidates[np.argmin(np.abs(log_px[candidates] - median))])
            return ImageChoice(i, f"a typical image: its log p(x) = {log_px[i]:.1f} nats under {model} is the "
                                  f"median of {int(np.isfinite(log_px).sum()):,} test images (quadrature)")
    i = next(j for j in range(n_images) if j not in excluded)
    return ImageChoice(i, "the first test image in no instructive-preset group (no per-image evaluation found)")


def choose_image(rule: str, directory: Path | str, models: tuple[str, str], n_images: int) -> ImageChoice:
    """The image a rule names for the shipped models. A preset group that is absent falls back to the typical
    image, saying so."""
    directory = Path(directory)
    groups = presets.load_instructive(directory, n_images)
    details = presets.instructive_details(directory)
    excluded = {i for idx in groups.values() for i in idx}
    if rule not in RULES:
        raise ValueError(f"unknown image rule {rule!r}")
    if rule == TYPICAL or not groups.get(rule):
        typical = typical_image(directory, models[0], excluded, n_images)
        if rule == TYPICAL:
            return typical
        return ImageChoice(typical.index, f"no '{presets.INSTRUCTIVE_GROUPS[rule]}' preset computed yet; "
                                          f"instead {typical.reason}")
    i = groups[rule][0]
    d = details.get(i, {})
    what = presets.INSTRUCTIVE_GROUPS[rule]
    if rule == MULTIMODAL:
        why = _fmt_models(d.get("second_mode_share", {}), "{:.0%}")
        why = f"second mode's share of the posterior mass: {why}" if why else ""
    elif rule == LARGEST_GAP:
        why = _fmt_models(d.get("gap_log_px_minus_elbo", {}), "{:.1f}")
        why = f"log p(x) − ELBO in nats: {why}" if why else ""
    else:
        why = _fmt_models(d.get("log_px", {}), "{:.1f}")
        why = f"log p(x) in nats: {why}" if why else ""
    return ImageChoice(i, f"ranked first for '{what}' by scripts/find_instructive_images.py"
                          + (f" ({why})" if why else ""))


def parse_step(raw, n_steps: int = len(STEPS)) -> tuple[int, str | None]:
    """The 1-based step number from the URL's ``step`` value: (step, None), or (1, a warning) when invalid."""
    if raw is None or str(raw).strip() == "":
        return 1, None
    text = str(raw).strip()
    if text.isdigit() and 1 <= int(text) <= n_steps:
        return int(text), None
    return 1, f"URL parameter step={text!r} ignored (the lesson has steps 1 to {n_steps}); showing step 1."
