"""Find the test images that make the lesson, from the shipped models (not hand-picked).

    python scripts/find_instructive_images.py [--vae checkpoints/vae-k1.safetensors]
        [--iwae checkpoints/iwae-k50.safetensors] [--images 10000] [--out checkpoints/instructive-images.json]

- multimodal: the true posterior p(z|x) of either model has separate regions (cells within 6 nats of the
  maximum log joint on the global quadrature grid, connected components) and the second holds >= 5%
  of the mass; ranked by that share;
- largest_gap: the largest log p(x) - ELBO under the VAE (quadrature; ELBO from 100 draws of q);
- vae_iwae_disagree: the largest |log p_VAE(x) - log p_IWAE(x)| (both by quadrature).
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae import quadrature as quad  # noqa: E402
from iwae import testset  # noqa: E402
from iwae.bounds import sample_log_weights  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402

TOP = 12
SECOND_MODE_SHARE = 0.05


def analyse(model, x: torch.Tensor, batch: int = 250) -> dict:
    grid = quad.global_grid(model)
    log_px, second_share, elbo = [], [], []
    gen = torch.Generator().manual_seed(0)
    for start in tqdm(range(0, len(x), batch), desc="images", leave=False):
        xb = x[start : start + batch]
        jb = quad.coarse_log_joint(grid, xb)
        for i in range(len(xb)):
            log_px.append(quad.refine(model, grid, xb[i], jb[i]).log_px)
            shares = quad.posterior_modes(grid, jb[i])
            second_share.append(shares[1] if len(shares) > 1 else 0.0)
        elbo.append(sample_log_weights(model, xb, 100, gen).mean(-1))
    return {"log_px": torch.tensor(log_px), "second": torch.tensor(second_share), "elbo": torch.cat(elbo)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", type=Path, default=Path("checkpoints/vae-k1.safetensors"))
    p.add_argument("--iwae", type=Path, default=Path("checkpoints/iwae-k50.safetensors"))
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--out", type=Path, default=Path("checkpoints/instructive-images.json"))
    args = p.parse_args()
    x, labels = testset.load()
    x = x[: args.images]
    vae, iwae = load_checkpoint(args.vae), load_checkpoint(args.iwae)
    a, b = analyse(vae.model, x), analyse(iwae.model, x)

    second = torch.maximum(a["second"], b["second"])
    multimodal = [i for i in second.argsort(descending=True).tolist() if second[i] >= SECOND_MODE_SHARE][:TOP]
    gap = a["log_px"] - a["elbo"]
    largest_gap = gap.argsort(descending=True)[:TOP].tolist()
    disagree_by = (a["log_px"] - b["log_px"]).abs()
    disagree = disagree_by.argsort(descending=True)[:TOP].tolist()

    def describe(i: int) -> dict:
        return {
            "label": int(labels[i]),
            "second_mode_share": {vae.name: round(float(a["second"][i]), 4),
                                  iwae.name: round(float(b["second"][i]), 4)},
            "log_px": {vae.name: round(float(a["log_px"][i]), 3), iwae.name: round(float(b["log_px"][i]), 3)},
            "gap_log_px_minus_elbo": {vae.name: round(float(gap[i]), 3),
                                      iwae.name: round(float(b["log_px"][i] - b["elbo"][i]), 3)},
        }

    chosen = sorted(set(multimodal + largest_gap + disagree))
    result = {
        "protocol": (
            f"first {len(x)} images of the fixed binarized MNIST test set; models {vae.name} and {iwae.name}; "
            "log p(x) by quadrature; ELBO = mean of 100 log weights; multimodal = a second region of "
            f"cells within 6 nats of the max log joint holding >= {SECOND_MODE_SHARE:.0%} of the mass"
        ),
        "multimodal": multimodal,
        "largest_gap": largest_gap,
        "vae_iwae_disagree": disagree,
        "details": {str(i): describe(i) for i in chosen},
        "counts": {"multimodal_images": int((second >= SECOND_MODE_SHARE).sum()), "images": len(x)},
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "details"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
