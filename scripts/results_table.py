"""Print the README's results table (markdown) from the shipped checkpoints' metadata.

    python scripts/results_table.py [checkpoints/*.safetensors]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.results import seed_noise_note  # noqa: E402  (no Streamlit: the explorer's caption, worded once)
from iwae.checkpoints import CheckpointError, read_metadata  # noqa: E402
from iwae.comparison import zoo_seed_noise  # noqa: E402
from iwae.zoo import ALL_MODELS, DEFAULT_MODELS, EXTRA_MODELS, PROTOCOL  # noqa: E402

ORDER = tuple(m.name for m in DEFAULT_MODELS + EXTRA_MODELS)
REFERENCES = (  # published numbers, in the IS column (their estimator); not computed here
    "| *Burda et al. 2016, Table 1 (50-D latent)* | VAE | 1 | 3,280 | | | | *86.76* | | | | |",
    "| *Burda et al. 2016, Table 1 (50-D latent)* | VAE | 50 | 3,280 | | | | *86.35* | | | | |",
    "| *Burda et al. 2016, Table 1 (50-D latent)* | IWAE | 5 | 3,280 | | | | *85.54* | | | | |",
    "| *Burda et al. 2016, Table 1 (50-D latent)* | IWAE | 50 | 3,280 | | | | *84.78* | | | | |",
    "| *Davidson et al. 2018 (2-D Gaussian VAE; IS k=500)* | VAE | 1 | | | | | *135.73* | *137.08* | | | |",
    "| *Davidson et al. 2018 (2-D hyperspherical VAE; IS k=500)* | S-VAE | 1 | | | | | *132.50* | | | | |",
)


OLD_QUADRATURE_MARK = "†"


def old_quadrature(metrics: dict) -> str:
    """A mark for exact NLLs from the earlier fixed-region quadrature (its protocol does not grow the region)."""
    return "" if "grown per image" in metrics.get("protocol", "") else OLD_QUADRATURE_MARK


def row(path: Path) -> str:
    meta = read_metadata(path)
    m, t = meta["metrics"], meta.get("training", {})
    name = path.name.removesuffix(".safetensors")
    budget = ("equal" if meta["epochs"] == PROTOCOL["epochs"] and name in ALL_MODELS and ALL_MODELS[name].equal_budget
              else "**outside**")
    hours = t.get("seconds", 0) / 3600
    if not m:
        return (f"| `{name}` | {meta['objective']} | {meta['k']} | {meta['epochs']} | {budget} | {hours:.2f} h "
                "| (not evaluated) |||||")
    return (
        f"| `{name}` | {meta['objective'].upper()}{' (DReG)' if meta['estimator'] == 'dreg' else ''} | {meta['k']} "
        f"| {meta['epochs']} | {budget} | {hours:.2f} h | **{m['nll_quadrature']:.2f}**{old_quadrature(m)} "
        f"| {m['nll_is5000']:.2f} ± {m['nll_is_sem']:.2f} | {-m['elbo']:.2f} | {-m['l5']:.2f} | {-m['l50']:.2f} "
        f"| {m['active_units']} |"
    )


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or [
        Path("checkpoints") / f"{n}.safetensors" for n in ORDER if (Path("checkpoints") / f"{n}.safetensors").exists()
    ]
    print("| model | objective | K | epochs | budget | training time | NLL, quadrature (exact) | "
          "NLL, IS k=5000 | -ELBO | -L_5 | -L_50 | active units |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    marked = False
    for p in paths:
        try:
            print(row(p))
            marked |= bool(old_quadrature(read_metadata(p).get("metrics") or {}))
        except CheckpointError as exc:
            print(f"| `{p.name}` | unreadable: {exc} |||||||||||")
    for r in REFERENCES:
        print(r)
    note = seed_noise_note(zoo_seed_noise(paths[0].parent if paths else Path("checkpoints")))
    if note:
        print(f"\n{note}")
    if marked:
        print(f"\n{OLD_QUADRATURE_MARK} exact NLL from the earlier quadrature over the fixed square [-6, 6]^2, which "
              "undercounts log p(x) on images whose posterior reaches beyond it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
