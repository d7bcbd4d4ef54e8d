"""``python -m reddiff_bench fid-stats DIR --out FILE [--size 256] [--features] [--device auto]``:
the FID statistics of a folder of images (pytorch-fid's ``mu``/``sigma`` NPZ, this project's
Inception features), for ``metrics.fid_reference=FILE``; with ``--features`` also the features
themselves, for ``metrics.kid_reference=FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..metrics.weights import MetricUnavailable
from ..run.references import write_statistics
from ..run.settings import resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reddiff_bench fid-stats", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="the NPZ to write")
    parser.add_argument("--size", type=int, default=256, help="the side the images are resized and cropped to, as "
                                                              "a run's dataset.size (default 256)")
    parser.add_argument("--features", action="store_true", help="also store the features (KID needs them)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    try:
        wrote = write_statistics(Path(args.root).expanduser(), Path(args.out).expanduser(), size=args.size,
                                 device=resolve_device(args.device), features_too=args.features)
    except (ConfigError, MetricUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {wrote['path']}: {', '.join(wrote['keys'])} of {wrote['images']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
