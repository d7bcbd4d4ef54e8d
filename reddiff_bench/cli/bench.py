"""``python -m reddiff_bench bench``: each solver's cost against the floor of its network calls,
and how cost grows with the image side and the batch (see ``study.bench``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from ..run.settings import resolve_device
from ..study import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reddiff_bench bench", description=bench.__doc__.splitlines()[0])
    parser.add_argument("--model", default="adm_ffhq256", help="a known ADM checkpoint's architecture (random weights)")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--solvers", default=",".join(bench.solver_names("pixel")),
                        help="the floor's solvers (default: every pixel solver)")
    parser.add_argument("--scaling", default="reddiff,dps,pgdm,ddrm", help="the solvers of the scaling rows")
    parser.add_argument("--sides", default="32,64,128")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="write the rows here (CSV)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = resolve_device(args.device)
    unknown = set(args.solvers.split(",")) - set(bench.solver_names("pixel"))
    if unknown:
        parser.error(f"unknown or latent solver(s) {sorted(unknown)}: the floor runs on a pixel ADM; conf/solver/ has "
                     f"the pixel solvers {bench.solver_names('pixel')}")
    rows = bench.floor_rows(args.model, args.solvers.split(","), args.side, args.batch, args.steps, args.repeats,
                            device)
    rows += bench.scaling_rows(args.model, args.scaling.split(","), args.side, args.batch,
                               [int(v) for v in args.sides.split(",")], [int(v) for v in args.batches.split(",")],
                               args.steps, device)
    frame = pd.DataFrame(rows)
    frame["device"], frame["model"] = str(device), f"{args.model} (random weights)"
    floor = frame[frame["kind"] == "floor"][["solver", "calls", "solve_seconds", "floor_seconds", "time_ratio",
                                             "peak_mem_mb", "floor_mem_mb", "mem_ratio"]]
    print(f"Solvers against the floor of their network calls: {args.model} architecture (random weights), "
          f"{args.side}x{args.side}, batch {args.batch}, {args.steps} steps, {device}:\n")
    print(floor.to_markdown(index=False, floatfmt=".4g"))
    time_ok = bool((floor["time_ratio"].dropna() <= 1.05).all())
    mem_ok = bool((floor["mem_ratio"].dropna() <= 1.1).all())
    print(f"\ntime within 1.05x of the floor: {'yes' if time_ok else 'NO'}; "
          f"memory within 1.1x: {'yes' if mem_ok else 'NO'}")
    scaling = frame[frame["kind"] != "floor"].pivot_table(index=["kind", "side", "batch"], columns="solver",
                                                          values="seconds_per_image")
    print("\nSeconds per image against the image side and the batch size:\n")
    print(scaling.reset_index().to_markdown(index=False, floatfmt=".4g"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False, float_format="%.6g")
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
