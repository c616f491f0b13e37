"""Train models of the zoo (iwae/zoo.py) one after another, resuming any that were interrupted.

    python scripts/train_zoo.py vae-k50 vae-k1-seed3 [--runs-dir runs] [--threads 1]

Each model trains into <runs-dir>/<name>.safetensors (resumable); copy finished ones into checkpoints/.
"""

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae.checkpoints import CheckpointError, read_metadata  # noqa: E402
from iwae.train import resume_path  # noqa: E402
from iwae.zoo import ALL_MODELS  # noqa: E402


def finished(out: Path, epochs: int) -> bool:
    try:
        return len(read_metadata(out)["history"]) >= epochs and not resume_path(out).exists()
    except (CheckpointError, FileNotFoundError, KeyError):
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", choices=sorted(ALL_MODELS))
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        model = ALL_MODELS[name]
        out = args.runs_dir / f"{name}.safetensors"
        cmd = [sys.executable, "-m", "iwae.train", *model.train_args(str(out)), "--threads", str(args.threads),
               "--quiet"]
        if resume_path(out).exists():
            cmd.append("--resume")
        elif finished(out, model.epochs):
            print(f"{name}: already trained", flush=True)
            continue
        print(f"{name}: {' '.join(cmd)}", flush=True)
        rc = subprocess.call(cmd)
        if rc:
            print(f"{name}: exit {rc}", flush=True)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
