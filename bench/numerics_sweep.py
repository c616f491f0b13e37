"""Numerics sweep: every core function the explorer calls, on the shipped models, checked for NaN and inf.

    python bench/numerics_sweep.py [--models vae-k1 iwae-k50 ...] [--images 10000] [--big-k 100000]
                                   [--big-k-images 40] [--threads 2] [--out bench/results]

Two parts per model:
1. every test image (``--images``, all 10,000 by default), at K = 1: latent means and standard deviations,
   decoded means at the means, the log weights with ELBO = L_1 = VAE-1 bound, the quadrature log p(x) and
   its error estimate (the same code as the evaluation CLI and the posterior grid);
2. a subset (``--big-k-images``: the extreme images of the shipped per-image results, the instructive
   images, then the first image of each digit, plus an all-black and an all-white image) at K = 1 and
   K = ``--big-k`` (100,000): the display grid (window, q, p(z|x), log p(x)), the proposal pool of
   pool_size_for(K) draws, q_IW at K, its integral, TV and KL to p, SIR from the pool, independent SIR draws
   and the L_K estimate from K fresh draws.
Part 2 is a subset because at K = 100,000 each image costs ~10^6 decoder passes (the pool alone is
4 (K - 1)); all 10,000 images would take days of these two cores.
3. with ``--all-images-big-k``: every test image at K = 1 and K = ``--big-k``, through what the Posteriors page
   computes from its grid: the display grid, q_IW on it (the app's estimator), its integral, TV and KL to p, the
   page's figures, and the K-draw reducers (L_K, ESS, SIR picks and their decoded images) on K log weights of
   draws from q discretized on that grid (exact log w at the cell centres: a draw's z moves at most half a
   cell). That costs one grid per image instead of K decoder passes (10^9 decoder passes per model, measured
   0.65 s per image on both cores, would be 1.8 hours per model); q_IW's 64 draws of K - 1 others at K = 100,000
   still make it ~1 s per image and model on one core. Resumable: progress is saved to ``--state`` after every
   ``--chunk`` images, and a rerun with the same arguments continues where it stopped.
Prints the counts of values checked and of non-finite ones, and writes the report to
``<out>/numerics-<date>.txt``. Exit status 1 if any value is not finite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iwae import bounds, figures, latent, posterior, quadrature, sir, testset  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402

SUBSET_SIR_DRAWS = 4  # independent SIR draws at the big K (each costs K decoder passes)


class Tally:
    """Counts checked values and non-finite ones, per (model, function, K)."""

    def __init__(self) -> None:
        self.rows: dict[tuple, list[int]] = {}

    def check(self, model: str, what: str, k: int, *values) -> None:
        row = self.rows.setdefault((model, what, k), [0, 0, 0])  # values, non-finite, calls
        for v in values:
            t = torch.as_tensor(v).double()
            row[0] += t.numel()
            row[1] += int((~torch.isfinite(t)).sum())
        row[2] += 1

    def to_json(self) -> list:
        return [[*key, *row] for key, row in self.rows.items()]

    @classmethod
    def from_json(cls, rows: list) -> "Tally":
        t = cls()
        t.rows = {tuple(r[:3]): list(r[3:]) for r in rows}
        return t

    def table(self) -> list[str]:
        head = ("model", "function", "K", "calls", "values", "non-finite")
        lines = [f"| {head[0]:<10} | {head[1]:<44} | {head[2]:>7} | {head[3]:>6} | {head[4]:>12} | {head[5]:>10} |",
                 "|" + "---|" * 6]
        for (model, what, k), (n, bad, calls) in self.rows.items():
            lines.append(f"| {model:<10} | {what:<44} | {k:>7} | {calls:>6} | {n:>12,} | {bad:>10} |")
        return lines

    @property
    def bad(self) -> int:
        return sum(r[1] for r in self.rows.values())

    @property
    def total(self) -> int:
        return sum(r[0] for r in self.rows.values())


def subset_indices(name: str, labels: np.ndarray, n: int) -> list[int]:
    """Extreme images first (lowest/highest log p(x), largest gap to the ELBO), the instructive ones, then the
    first image of each digit, up to n."""
    chosen: list[int] = []
    per_image = ROOT / "checkpoints" / f"{name}.per-image.npz"
    if per_image.is_file():
        d = np.load(per_image)
        lp, gap = d["log_px_quadrature"], d["log_px_quadrature"] - d["elbo"]
        chosen += [int(np.argmin(lp)), int(np.argmax(lp)), int(np.argmax(gap)), int(np.argmin(gap))]
    instructive = ROOT / "checkpoints" / "instructive-images.json"
    if instructive.is_file():
        raw = json.loads(instructive.read_text())
        chosen += [int(i) for key, idx in raw.items() if isinstance(idx, list) for i in idx]
    chosen += [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
    out: list[int] = []
    for i in chosen:
        if i not in out:
            out.append(i)
    return out[:n]


@torch.no_grad()
def full_test_set(name: str, model, images: torch.Tensor, tally: Tally, grid) -> None:
    mu, sd = latent.latent_means(model, images)
    tally.check(name, "latent means and sd (encoder)", 1, mu, sd)
    tally.check(name, "decoded means at mu(x)", 1, latent.decode_means(model, mu))
    gen = torch.Generator().manual_seed(0)
    for start in range(0, len(images), 1000):
        lw = model.log_weights(images[start : start + 1000], 1, gen).log_w
        tally.check(name, "log weights; ELBO, L_1, VAE-1 bound", 1, lw, bounds.elbo(lw), bounds.iwae_bound(lw),
                    bounds.vae_k_bound(lw))
    log_px, err = quadrature.log_px_batch(model, grid, images, progress=tqdm(total=len(images), desc=f"{name} "
                                                                             "quadrature", leave=False).update)
    tally.check(name, "quadrature log p(x) and error estimate", 1, log_px, err)


@torch.no_grad()
def one_image(name: str, model, grid, x: torch.Tensor, k: int, tally: Tally, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    g = posterior.image_grid(model, grid, x)
    tally.check(name, "display grid: log q, log p(x,z), log p(x)", k, g.log_q, g.log_joint, g.log_px, g.log_px_error)
    pool = posterior.proposal_pool(model, x, posterior.pool_size_for(k), gen)
    tally.check(name, "proposal pool (z, log w)", k, pool.z, pool.log_w)
    log_qiw = posterior.log_q_iw(g, pool, k, generator=gen)
    tally.check(name, "q_IW from the pool, its integral", k, log_qiw, g.mass(log_qiw))
    tally.check(name, "q_IW, others drawn on the grid (the app's)", k, posterior.log_q_iw_on_grid(g, k, gen))
    tally.check(name, "TV and KL(p || q_IW)", k, posterior.total_variation(g.log_posterior, log_qiw, g.log_area),
                posterior.kl_divergence(g.log_posterior, log_qiw, g.log_area))
    draws = sir.sir_from_pool(pool.z, pool.log_w, k, 100, gen)
    tally.check(name, "SIR from the pool (100 draws), ESS", k, draws.z, draws.ess)
    draws = sir.sir_sample(model, x, k, SUBSET_SIR_DRAWS, gen)
    tally.check(name, f"independent SIR ({SUBSET_SIR_DRAWS} draws), ESS, decoded", k, draws.z, draws.ess,
                latent.decode_means(model, draws.z))
    lw = torch.cat(list(bounds.iter_log_weight_chunks(model, x[None], k, gen)), dim=1)
    tally.check(name, "L_K from K fresh draws", k, bounds.iwae_bound(lw))


def write_report(lines: list[str], out: Path, stem: str) -> None:
    """Print the report and write it to <out>/<stem>-<date>.txt."""
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{datetime.datetime.now():%Y-%m-%d-%H%M}.txt"
    path.write_text(text + "\n")
    print(f"wrote {path}")


GRID_SIR_DRAWS = 16  # SIR picks decoded per image and K in part 3 (the Resampling page shows 16)


def figure_values(*figs) -> list[np.ndarray]:
    """The numeric arrays a figure sends to the browser (x, y, z of every trace)."""
    out = []
    for fig in figs:
        for trace in fig.data:
            for attr in ("x", "y", "z"):
                v = getattr(trace, attr, None)
                if v is not None:
                    out.append(np.asarray(v, dtype=np.float64))
    return out


@torch.no_grad()
def grid_image_big_k(name: str, model, grid, x: torch.Tensor, ks: tuple[int, ...], tally: Tally,
                     gen: torch.Generator) -> None:
    """Part 3 for one image: the Posteriors page's grid computations and figures, and the K-draw reducers on
    draws from q discretized on the grid, at each K in ks."""
    g = posterior.image_grid(model, grid, x)
    tally.check(name, "display grid: log q, log p(x,z), log p(x), q and p mass", 0, g.log_q, g.log_joint, g.log_px,
                g.log_px_error, g.mass(g.log_q), g.mass(g.log_posterior))
    tally.check(name, "TV(q, p), KL(p || q)", 0, posterior.total_variation(g.log_posterior, g.log_q, g.log_area),
                posterior.kl_divergence(g.log_posterior, g.log_q, g.log_area))
    q_cells = torch.softmax(g.log_q.double(), 0)
    for k in ks:
        if k == 1 or posterior.q_resolved(g):
            log_qiw = posterior.log_q_iw_on_grid(g, k, gen)
        else:  # as the app does when q is narrower than the grid resolves
            pool = posterior.proposal_pool(model, x, posterior.pool_size_for(k), gen)
            log_qiw = posterior.log_q_iw(g, pool, k, generator=gen)
        tally.check(name, "q_IW as the app computes it, integral, TV, KL", k, log_qiw, g.mass(log_qiw),
                    posterior.total_variation(g.log_posterior, log_qiw, g.log_area),
                    posterior.kl_divergence(g.log_posterior, log_qiw, g.log_area))
        cells = torch.multinomial(q_cells, k, replacement=True, generator=gen)
        log_w = g.log_w[cells][None]  # (1, K)
        weights = bounds.normalized_weights(log_w.double())
        picks = torch.multinomial(weights[0], GRID_SIR_DRAWS, replacement=True, generator=gen)
        z = g.points[cells[picks]]
        tally.check(name, "K draws on the grid: L_K, VAE-K, ESS, SIR, decoded", k, bounds.iwae_bound(log_w),
                    bounds.vae_k_bound(log_w), sir.effective_sample_size(weights), z, latent.decode_means(model, z))
        fixed, moving = figures.posterior_figures(g.x_axis.numpy(), g.y_axis.numpy(), g.to_image(g.log_q),
                                                  g.to_image(log_qiw), g.to_image(g.log_posterior), k,
                                                  q_draws=g.points[cells[:100]].numpy(), sir_draws=z.numpy(),
                                                  mu=g.mu.numpy(), sigma=g.sigma.numpy())
        tally.check(name, "Posteriors page figures (every trace's x, y, z)", k, *figure_values(fixed, moving))


def all_images_big_k(args, images: torch.Tensor) -> int:
    """Part 3 over every test image, resumable from args.state."""
    key = {"models": args.models, "images": len(images), "big_k": args.big_k}
    state = json.loads(args.state.read_text()) if args.state.is_file() else {}
    if state.get("key") != key:
        state = {"key": key, "done": {}, "rows": [], "seconds": 0.0}
    tally = Tally.from_json(state["rows"])
    for name in [] if args.report_only else args.models:
        model = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors").model.eval()
        grid = quadrature.global_grid(model)
        start = state["done"].get(name, 0)
        bar = tqdm(total=len(images), initial=start, desc=f"{name} all images, K = 1 and {args.big_k:,}")
        for chunk in range(start, len(images), args.chunk):
            t = time.time()
            for i in range(chunk, min(chunk + args.chunk, len(images))):
                grid_image_big_k(name, model, grid, images[i], (1, args.big_k), tally,
                                 torch.Generator().manual_seed(i))
                bar.update()
            state["done"][name] = min(chunk + args.chunk, len(images))
            state["rows"], state["seconds"] = tally.to_json(), state["seconds"] + time.time() - t
            tmp = args.state.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, args.state)  # an interruption loses at most one chunk
        bar.close()
    lines = [f"# numerics sweep, part 3, {datetime.datetime.now():%Y-%m-%d %H:%M}: `python bench/numerics_sweep.py "
             f"{' '.join(sys.argv[1:])}`", "",
             f"Test images in order, per model, at K = 1 and K = {args.big_k:,} (K = 0: the per-image grid, "
             "independent of K). K draws: from q discretized on the image's 128 x 128 display grid.",
             "Images done per model: " + ", ".join(f"{m} {state['done'].get(m, 0):,} of {len(images):,}"
                                                   for m in args.models) + ".",
             f"{state['seconds']:.0f} s of computation in all.", "",
             *tally.table(), "", f"{tally.total:,} values checked, {tally.bad} not finite."]
    write_report(lines, args.out, "numerics-all-images")
    return 1 if tally.bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vae-k1", "iwae-k50"])
    p.add_argument("--images", type=int, default=10_000, help="test images for part 1")
    p.add_argument("--big-k", type=int, default=100_000)
    p.add_argument("--big-k-images", type=int, default=40, help="test images for part 2 (plus black and white)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--all-images-big-k", action="store_true",
                   help="run part 3 (every image at K = 1 and the big K, from the display grid) instead of 1 and 2")
    p.add_argument("--state", type=Path, default=ROOT / "bench" / "results" / "numerics-all-images-state.json",
                   help="part 3's progress file (resumed when the arguments match)")
    p.add_argument("--chunk", type=int, default=100, help="part 3: images between saves of the progress file")
    p.add_argument("--report-only", action="store_true",
                   help="part 3: write the report of the progress saved so far, computing nothing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    all_images, labels = testset.load()
    images, labels_np = all_images[: args.images], labels.numpy()
    if args.all_images_big_k:
        return all_images_big_k(args, images)
    tally = Tally()
    started = time.time()
    lines = [f"# numerics sweep {datetime.datetime.now():%Y-%m-%d %H:%M}: `python bench/numerics_sweep.py "
             f"{' '.join(sys.argv[1:])}`", ""]
    for name in args.models:
        ckpt = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors")
        model = ckpt.model.eval()
        grid = quadrature.global_grid(model)
        t = time.time()
        full_test_set(name, model, images, tally, grid)
        lines.append(f"{name}: part 1 on {len(images):,} test images at K = 1 in {time.time() - t:.0f} s")
        subset = subset_indices(name, labels_np, args.big_k_images)
        extremes = {"all black": torch.zeros(images.shape[1]), "all white": torch.ones(images.shape[1])}
        xs = [(f"#{i}", all_images[i]) for i in subset] + list(extremes.items())
        t = time.time()
        for j, (_label, x) in enumerate(tqdm(xs, desc=f"{name} subset", leave=False)):
            for k in (1, args.big_k):
                one_image(name, model, grid, x, k, tally, seed=j)
        lines.append(f"{name}: part 2 on {len(xs)} images ({', '.join(lbl for lbl, _ in xs)}) at K = 1 and "
                     f"K = {args.big_k:,} in {time.time() - t:.0f} s")
    lines += ["", *tally.table(), "",
              f"{tally.total:,} values checked, {tally.bad} not finite; {time.time() - started:.0f} s in all."]
    write_report(lines, args.out, "numerics")
    return 1 if tally.bad else 0


if __name__ == "__main__":
    sys.exit(main())
