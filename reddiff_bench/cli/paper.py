"""Regenerate the paper: run the studies of ``experiments/`` and build their tables and figures.

    python -m reddiff_bench paper run [--scale offline|paper] [--study NAME ...] [--full] [-- OVERRIDES]
    python -m reddiff_bench paper tables [--scale offline|paper] [--study NAME ...]
    python -m reddiff_bench paper list

``run`` runs or resumes every sweep of each study (re-running resumes: finished jobs solve
nothing), gathers their rows into ``experiments/<study>/<scale>/`` and builds the tables and
figures; ``tables`` rebuilds tables, figures and the studies' READMEs from the committed rows
alone, in seconds. At the ``paper`` scale (ImageNet / FFHQ, ADM checkpoints) the data and
checkpoints are checked before anything runs; Hydra overrides after ``--`` reach every sweep
(e.g. ``-- hydra/launcher=gpus`` or ``hydra/launcher=slurm hydra.launcher.partition=gpu``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..study import studies as studies_module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m reddiff_bench paper", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("command", choices=["run", "tables", "list"])
    parser.add_argument("--scale", choices=["offline", "paper"],
                        help="run: offline (default) or paper; tables: both unless given")
    parser.add_argument("--study", action="append", help="a study of experiments/ (default: all of them)")
    parser.add_argument("--full", action="store_true", help="also the sweeps a study runs only on request "
                                                            "(the full Gaussian-mixture grid: hours on a CPU)")
    parser.add_argument("--experiments", type=Path, help="the studies' folder (default: experiments/ of the checkout)")
    args = parser.parse_args(argv)
    if args.experiments is not None:
        if not args.experiments.is_dir():
            parser.error(f"--experiments {args.experiments} is not a folder")
        studies_module.EXPERIMENTS = args.experiments.resolve()

    names = args.study or studies_module.studies()
    if args.command == "list":
        for name in names:
            spec = studies_module.load_spec(name)
            print(f"{name}: {spec['title']} (scales: {', '.join(spec['scales'])})")
        return 0
    start = time.perf_counter()
    status = 0
    scales = [args.scale or "offline"] if args.command == "run" else ([args.scale] if args.scale else
                                                                       list(studies_module.SCALES))
    try:
        if args.command == "run":
            for name in names:
                if scales[0] == "paper":
                    studies_module.preflight(name, "paper")
            for name in names:
                status = max(status, studies_module.run_study(name, scales[0], args.full, extra))
        for name in names:
            for scale in scales:
                if scale not in studies_module.load_spec(name)["scales"]:
                    continue
                written = studies_module.build(name, scale)
                if written:
                    print(f"{name}/{scale}: {len(written)} table and figure files in "
                          f"{studies_module.data_dir(name, scale)}")
            print(f"{name}: {studies_module.write_readme(name)}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"({time.perf_counter() - start:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
