"""``python -m reddiff_bench estimate [--seconds-per-nfe S --seconds-per-vjp S | --measure] OVERRIDES``:
the device-hours of a run or sweep before it runs (see ``study.estimate``)."""

from __future__ import annotations

import argparse
import sys

import torch

from ..errors import ConfigError
from ..run.settings import compose
from ..study import estimate
from ..study.sweeps import expand_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reddiff_bench estimate",
                                     description=estimate.__doc__.splitlines()[0],
                                     epilog="Other arguments are Hydra overrides, as for python -m reddiff_bench.")
    parser.add_argument("--seconds-per-nfe", type=float, help="seconds of one forward call per image")
    parser.add_argument("--seconds-per-vjp", type=float, help="seconds of one backward pass per image")
    parser.add_argument("--measure", action="store_true", help="time the model here (its device: cuda when present)")
    args, overrides = parser.parse_known_args(argv)
    if not args.measure and (args.seconds_per_nfe is None or args.seconds_per_vjp is None):
        parser.error("give --seconds-per-nfe and --seconds-per-vjp, or --measure")
    try:
        jobs = expand_sweep(overrides)
        device = None
        if args.measure:
            first = compose(jobs[0])
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            s_nfe, s_vjp, what = estimate.seconds_per_call(first, device)
            print(f"measured on {device}: {what}: {s_nfe:.4g} s per forward call and {s_vjp:.4g} s per backward "
                  f"pass, per image at batch size {first.batch_size}")
        else:
            s_nfe, s_vjp = args.seconds_per_nfe, args.seconds_per_vjp
        table = estimate.estimate(jobs, s_nfe, s_vjp)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table.to_markdown(index=False, floatfmt=".4g"))
    source = f"timed on {device}" if args.measure else "at the given seconds per call"
    print(f"\ntotal: {table['hours'].sum():.4g} device-hours over {len(table)} job(s), {source} "
          f"(network calls only; divide by the number of GPUs that share the sweep)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
