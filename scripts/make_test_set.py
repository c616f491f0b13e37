"""Regenerate checkpoints/mnist-test-binarized.npz from the MNIST files and check its hash.

    python scripts/make_test_set.py [--data-dir ../shared/data/mnist] [--out PATH]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae import testset  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, default=testset.DEFAULT_PATH)
    args = p.parse_args()
    images, labels = testset.build(args.data_dir)
    digest = testset.save(images, labels, args.out)
    print(f"wrote {args.out}: {len(images)} images, sha256 of packed bits + labels {digest}")
    if testset.PACKED_SHA256 and digest != testset.PACKED_SHA256:
        print(f"MISMATCH: the recorded value is {testset.PACKED_SHA256}", file=sys.stderr)
        return 1
    print("matches the recorded sha256" if testset.PACKED_SHA256 else "no recorded sha256 to compare with")
    return 0


if __name__ == "__main__":
    sys.exit(main())
