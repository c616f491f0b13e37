"""Rewrite the training command recorded in checkpoints' metadata in its portable form (no folder of the machine it
was trained on; every setting that shapes the weights spelled out). The weights are not touched.

    python scripts/portable_commands.py checkpoints/*.safetensors
"""

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae.checkpoints import read_metadata, update_metadata  # noqa: E402
from iwae.train import parse_args, portable_command  # noqa: E402


def main() -> int:
    for name in sys.argv[1:]:
        path = Path(name)
        meta = read_metadata(path)
        t = meta["training"]
        recorded = shlex.split(t["command"])[3:]  # after "python -m iwae.train"
        args = parse_args(recorded)  # every setting as the run was started (its defaults included)
        args.out = Path("checkpoints") / path.name
        command = portable_command(args)
        if command != t["command"]:
            update_metadata(path, {"training": {**t, "command": command}})
            print(f"{path}: {t['command']}\n  -> {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
