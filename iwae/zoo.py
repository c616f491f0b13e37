"""The shipped model zoo: one training protocol, the models trained with it, and the extra models outside it.

The equal-budget set compares objectives fairly (same epochs, schedule, batch, optimizer, seed, dynamic
binarization); seeds 2 and 3 of two of its models measure the seed-to-seed noise.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL = {"epochs": 60, "schedule": "decay", "batch_size": 100, "lr": 1e-3, "dataset": "mnist",
            "max_train_images": 0}
DEFAULT_SEED = 1
NOISE_SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class ZooModel:
    name: str
    objective: str
    k: int
    estimator: str = "standard"
    seed: int = DEFAULT_SEED
    epochs: int = PROTOCOL["epochs"]

    @property
    def equal_budget(self) -> bool:
        return self.epochs == PROTOCOL["epochs"]

    def train_args(self, out: str) -> list[str]:
        return ["--objective", self.objective, "--k", str(self.k), "--estimator", self.estimator,
                "--epochs", str(self.epochs), "--schedule", PROTOCOL["schedule"],
                "--batch-size", str(PROTOCOL["batch_size"]), "--lr", str(PROTOCOL["lr"]),
                "--seed", str(self.seed), "--out", out]


DEFAULT_MODELS = (
    ZooModel("vae-k1", "vae", 1),
    ZooModel("vae-k50", "vae", 50),
    ZooModel("iwae-k5", "iwae", 5),
    ZooModel("iwae-k50", "iwae", 50),
    ZooModel("iwae-k50-dreg", "iwae", 50, "dreg"),
)
EXTRA_MODELS = (ZooModel("vae-k1-200ep", "vae", 1, epochs=200),)
NOISE_MODELS = tuple(
    ZooModel(f"{m.name}-seed{s}", m.objective, m.k, m.estimator, seed=s)
    for m in DEFAULT_MODELS if m.name in ("vae-k1", "iwae-k5") for s in NOISE_SEEDS if s != DEFAULT_SEED
)
ALL_MODELS = {m.name: m for m in DEFAULT_MODELS + EXTRA_MODELS + NOISE_MODELS}

# The paper's ordering at equal budget (Burda et al. 2016, Table 1): (better, worse) by test NLL.
PAPER_ORDER = (("iwae-k50", "iwae-k5"), ("iwae-k5", "vae-k1"), ("iwae-k50", "vae-k50"))
SEED_NOISE_MODELS = ("vae-k1", "iwae-k5")
