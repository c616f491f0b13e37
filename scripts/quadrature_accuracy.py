"""Check the quadrature's error estimates against a much finer second computation.

    python scripts/quadrature_accuracy.py checkpoints/iwae-k50.safetensors [--images 200] [--deeper 3]
                                          [--out docs/results]

Per model: the test images with the largest error estimates in ``<name>.per-image.npz`` (the evaluation's), each
integrated twice: as the evaluation does, and from a 3x finer global grid (9x the starting points, so other cells,
other subdivisions and another region search). The real error is their difference. For the first ``--deeper`` images
a third pass adds 2x finer subdivision and a 16x smaller resolution target (``quadrature.refine(..., oversample=2)``,
up to minutes an image): it shows that the finer reference has converged. Progress is saved after every image
(``<out>/quadrature-accuracy-<name>.json``, tied to the per-image file it chose from), so an interrupted check
resumes; the summary goes to ``<out>/quadrature-accuracy-<name>.md``.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae import quadrature as quad  # noqa: E402
from iwae import testset  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals  # noqa: E402
from iwae.evaluate import per_image_path  # noqa: E402

FINER_SPACING = quad.COARSE_SPACING / 3
DEEPER_OVERSAMPLE = 2


def summary(rows: list[dict], name: str, source: str) -> str:
    est = np.array([r["estimate"] for r in rows])
    real = np.array([r["real_error"] for r in rows])
    ratio = est / np.maximum(real, 1e-12)
    return "\n".join([
        f"## `{name}`: {len(rows)} images with the largest error estimates ({source})", "",
        f"- real error (|quadrature - finer pass|): max {real.max():.2e}, median {np.median(real):.2e} nats; "
        f"images with real error >= 0.01 nats: {int((real >= 0.01).sum())}",
        f"- error estimate: max {est.max():.2e}, median {np.median(est):.2e} nats",
        f"- estimate / real error: min {ratio.min():.2f}, median {np.median(ratio):.2f}, max {ratio.max():.1f}; "
        f"estimate below the real error on {int((est < real).sum())} images; within 10x on "
        f"{int((ratio <= 10).sum())} of {len(rows)}",
        f"- the finer pass's own error estimates: max {max(r['reference_estimate'] for r in rows):.1e} nats",
        deeper_line(rows),
        f"- region grown beyond [-6, 6]^2 on {sum(r['half_width'] > quad.HALF_WIDTH for r in rows)} images", "",
    ])


def deeper_line(rows: list[dict]) -> str:
    deeper = [r for r in rows if "deeper_reference" in r]
    if not deeper:
        return "- no deeper pass"
    moved = max(abs(r["deeper_reference"] - r["reference"]) for r in deeper)
    return (f"- deeper pass (2x finer subdivision, 16x smaller target) on {len(deeper)} images: it moves the finer "
            f"reference by at most {moved:.1e} nats")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--deeper", type=int, default=3, help="images that also get the deeper reference pass")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    flush_denormals()
    args.out.mkdir(parents=True, exist_ok=True)
    x = testset.load()[0]
    for path in args.checkpoints:
        model = load_checkpoint(path).model
        name = path.name.removesuffix(".safetensors")
        with np.load(per_image_path(path), allow_pickle=False) as f:
            recorded = f["quadrature_error"]
        chosen = [int(i) for i in np.argsort(-recorded)[: args.images]]
        source = hashlib.sha256(recorded.tobytes()).hexdigest()  # the evaluation the images were chosen from
        progress = args.out / f"quadrature-accuracy-{name}.json"
        state = json.loads(progress.read_text()) if progress.is_file() else {}
        if state.get("source") != source or state.get("images") != chosen:
            state = {"source": source, "images": chosen, "rows": []}
        grid, fine = quad.global_grid(model), quad.global_grid(model, spacing=FINER_SPACING)
        started = time.time()
        for i in state["images"][len(state["rows"]):]:
            q = quad.refine_image(model, grid, x[i])
            j_fine = quad.coarse_log_joint(fine, x[i][None])[0]
            ref = quad.refine(model, fine, x[i], j_fine)
            row = {"image": i, "recorded_estimate": float(recorded[i]), "log_px": q.log_px,
                   "estimate": q.error_estimate, "reference": ref.log_px, "reference_estimate": ref.error_estimate,
                   "real_error": abs(q.log_px - ref.log_px), "half_width": q.half_width}
            if len(state["rows"]) < args.deeper:
                row["deeper_reference"] = quad.refine(model, fine, x[i], j_fine, oversample=DEEPER_OVERSAMPLE).log_px
            state["rows"].append(row)
            progress.write_text(json.dumps(state, indent=1))
            print(f"{name} image {i}: estimate {q.error_estimate:.2e}, real {abs(q.log_px - ref.log_px):.2e} "
                  f"({len(state['rows'])}/{len(state['images'])}, {time.time() - started:.0f} s)", flush=True)
        text = summary(state["rows"], name, "estimates recorded by the evaluation in the per-image file")
        progress.with_suffix(".md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
