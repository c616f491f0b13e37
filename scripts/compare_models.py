"""The zoo's comparisons: the paper's orderings as paired differences, and the seed-to-seed noise.

    python scripts/compare_models.py [--checkpoints checkpoints] [--out docs/results]

Reads the per-image files of ``python -m iwae.evaluate --per-image`` (``<name>.per-image.npz``) of the default
models and of the seed-2/3 models (``<checkpoints>/seeds/``), and writes ``zoo-comparison.md`` and ``seed-noise.json``
to --out. The explorer's results table computes the same seed noise from the same files (iwae/comparison.py).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae.checkpoints import read_metadata  # noqa: E402
from iwae.comparison import (  # noqa: E402
    ESTIMATORS,
    largest_seed_sd,
    paired_difference,
    read_per_image,
    zoo_seed_noise,
)
from iwae.zoo import NOISE_SEEDS, PAPER_ORDER, PROTOCOL, SEED_NOISE_MODELS  # noqa: E402

LABELS = {"exact": "exact NLL (quadrature)", "is": "NLL, IS k=5000"}


def budget_note(folder: Path, name: str) -> str:
    """Empty for a model trained with the protocol; else what differs (its epochs)."""
    epochs = read_metadata(folder / f"{name}.safetensors")["epochs"]
    return "" if epochs == PROTOCOL["epochs"] else f"`{name}`: {epochs} epochs, outside the equal budget"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    noise = zoo_seed_noise(args.checkpoints)
    for model in sorted(set(SEED_NOISE_MODELS) - {m for m, _ in noise}):
        print(f"{model}: a seed's per-image file is missing; no seed noise for it")
    noise_rows = [{"model": s.model, "estimator": LABELS[s.estimator], "seeds": list(NOISE_SEEDS),
                   "n_images": s.n_images, "nll_by_seed": s.nll_by_seed, "mean": s.mean, "sd": s.sd}
                  for s in noise.values()]
    (args.out / "seed-noise.json").write_text(json.dumps(noise_rows, indent=1))

    lines = ["# The zoo's comparisons", "",
             "Written by `python scripts/compare_models.py` from the per-image files of `python -m iwae.evaluate`. "
             "Test NLL in nats on the fixed binarized MNIST test set (seed 1234); all models trained with one protocol "
             "(iwae/zoo.py: 60 epochs, decay schedule, batch 100, Adam lr 1e-3, seed 1, dynamic binarization).", "",
             "## Seed-to-seed noise", "",
             "| model | estimator | images | NLL, seeds 1 / 2 / 3 | mean | sd |", "|---|---|---|---|---|---|"]
    for s in noise.values():
        lines.append(f"| `{s.model}` | {LABELS[s.estimator]} | {s.n_images:,} | "
                     f"{' / '.join(f'{v:.2f}' for v in s.nll_by_seed)} | {s.mean:.2f} | {s.sd:.2f} |")
    largest_sd = {est: largest_seed_sd(noise, est) for est in ESTIMATORS}
    lines += ["", "## The paper's ordering, paired over images", "",
              "Difference = NLL(worse) - NLL(better), mean over the same images with its standard error; it holds "
              "when positive. A finding needs it well outside the seed noise (more than twice the largest seed sd "
              "of that estimator).", "",
              "| better | worse | estimator | images | difference | SE | beyond 2 x seed sd | budget |",
              "|---|---|---|---|---|---|---|---|"]
    for better, worse in PAPER_ORDER:
        a, b = read_per_image(args.checkpoints, better), read_per_image(args.checkpoints, worse)
        if a is None or b is None:
            lines.append(f"| `{better}` | `{worse}` | (not evaluated) | | | | | |")
            continue
        note = "; ".join(n for n in (budget_note(args.checkpoints, better), budget_note(args.checkpoints, worse)) if n)
        for est, key in ESTIMATORS.items():
            d = paired_difference(a[key], b[key], better, worse, est)
            verdict = "yes" if d.mean > 2 * largest_sd[est] else ("no" if np.isfinite(largest_sd[est]) else "?")
            lines.append(f"| `{better}` | `{worse}` | {LABELS[est]} | {d.n_images:,} | {d.mean:+.3f} | {d.se:.3f} "
                         f"| {verdict} | {note or 'equal'} |")
    (args.out / "zoo-comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
