"""Signal-to-noise ratio of the standard IWAE and the DReG gradient estimators against K, for a trained model.

    python scripts/gradient_snr.py --checkpoint checkpoints/iwae-k50.safetensors --images 8 --repeats 1000 \\
        --ks 1 3 10 30 100 300 1000 --seed 0 --threads 1 --out checkpoints/gradient-snr.json

For each estimator and K, the gradient of the IWAE training loss (``iwae.bounds.training_loss``) on the first
``--images`` images of the shipped binarized test set is drawn ``--repeats`` times with fresh z; per parameter
element SNR = |mean| / std over the repeats, summarized (mean and median over elements) for the encoder and the
decoder (``iwae.snr``). The JSON (protocol + one record per estimator and K) is written atomically and read by
the Bounds page.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae import snr, testset  # noqa: E402
from iwae.bounds import ESTIMATORS  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402
from iwae.data import TEST_BINARIZATION_SEED  # noqa: E402


def write_json_atomic(data: dict, path: Path) -> None:
    """Temporary file in the same folder, fsync, rename: never a partial file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/iwae-k50.safetensors"))
    p.add_argument("--images", type=int, default=8, help="the first N images of the binarized test set")
    p.add_argument("--repeats", type=int, default=100, help="gradient draws M per estimator and K")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 3, 10, 30, 100, 300, 1000])
    p.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--test-set", type=Path, default=testset.DEFAULT_PATH, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path("checkpoints") / snr.DEFAULT_FILE)
    args = p.parse_args(argv)
    if args.images < 1 or args.repeats < 2 or min(args.ks) < 1:
        p.error("need --images >= 1, --repeats >= 2 and every K >= 1")
    torch.set_num_threads(args.threads)

    ckpt = load_checkpoint(args.checkpoint)
    images, _ = testset.load(args.test_set)
    indices = list(range(min(args.images, len(images))))
    x = images[indices]
    ks = sorted(set(args.ks))
    meta = ckpt.metadata
    protocol = {
        "checkpoint": ckpt.name,
        "checkpoint_training": f"objective {meta.get('objective')}, k = {meta.get('k')}, estimator "
                               f"{meta.get('estimator')}, {meta.get('epochs')} epochs",
        "images": indices,
        "binarization": f"the shipped binarized MNIST test set ({testset.DEFAULT_PATH.name}: binarized once, "
                        f"torch seed {TEST_BINARIZATION_SEED})",
        "repeats": args.repeats,
        "seed": args.seed,
        "seeding": "one torch.Generator per K seeded with iwae.snr.k_seed(seed, K), the same for both "
                   "estimators (common random numbers); the repeats draw from it in turn",
        "summary": snr.FIGURE_STATISTIC,
        "statistics": "mean and median over the group's parameter elements; the figure uses the "
                      f"{snr.FIGURE_STATISTIC}",
        "snr": "per parameter element |mean| / std over the repeats (std with M - 1); elements constant over "
               "the repeats (exactly-zero gradients of pixels that are off in every chosen image) left out",
        "gradient": "autograd of iwae.bounds.training_loss(model, x, 'iwae', K, estimator) on the fixed images "
                    "(the batch-mean loss the training uses); encoder = q's network (phi), decoder = p(x|z) (theta)",
        "noise_floor": round(snr.noise_floor(args.repeats), 5),
        "noise_floor_note": "sqrt(2 / (pi M)): the expected estimate for an element whose true SNR is 0",
        "threads": args.threads,
        "device": "cpu",
        "command": "python scripts/gradient_snr.py "
                   + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
    }

    total = len(args.estimators) * len(ks) * args.repeats
    results = []
    start = time.perf_counter()
    with tqdm(total=total, desc="gradient draws", unit="draw", dynamic_ncols=True) as bar:
        def on_result(r: dict) -> None:
            results.append(r)
            bar.write(f"{r['estimator']:>8} K={r['k']:>5}: encoder SNR median {r['encoder']['median']:.4f} "
                      f"mean {r['encoder']['mean']:.4f} | decoder median {r['decoder']['median']:.3f} "
                      f"mean {r['decoder']['mean']:.3f} | {r['seconds']:.1f} s")

        def on_repeat() -> None:
            bar.update(1)

        for estimator in args.estimators:
            for k in ks:
                bar.set_postfix_str(f"{estimator} K={k}")
                snr.snr_against_k(ckpt.model, x, [k], args.repeats, args.seed, [estimator], on_repeat, on_result)
    protocol["seconds"] = round(time.perf_counter() - start, 1)
    data = snr.validate({"format": snr.FORMAT, "protocol": protocol, "results": results})
    write_json_atomic(data, args.out)
    print(f"wrote {args.out} ({protocol['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
