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
    for name in ("decoder-calls", "decoder-vjp", "encoder-calls", "encoder-vjp"):  # latent priors
        what = name.replace("-calls", " pass").replace("-vjp", " VJP")
        parser.add_argument(f"--seconds-per-{name}", type=float, help=f"latent priors: seconds per image of one {what}")
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
            seconds, what = estimate.seconds_per_call(first, device)
            timed = ", ".join(f"{value:.4g} s per {key}" for key, value in seconds.items() if value)
            print(f"measured on {device}: {what}: {timed}, per image at batch size {first.batch_size}")
        else:
            seconds = {key: getattr(args, f"seconds_per_{key}") for key in estimate.COSTS}
        table = estimate.estimate(jobs, seconds)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table.to_markdown(index=False, floatfmt=".4g"))
    source = f"timed on {device}" if args.measure else "at the given seconds per call"
    print(f"\ntotal: {table['hours'].sum():.4g} device-hours over {len(table)} job(s), {source} "
          f"(network and autoencoder calls only; divide by the number of GPUs that share the sweep)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
