"""``python -m reddiff_bench dashboard STUDY [--project P] [--entity E]``: a W&B Report of a study
(see ``study.dashboard``)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ConfigError
from ..study import dashboard
from ..study.dashboard import build_report, logged_in


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reddiff_bench dashboard",
                                     description=dashboard.__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--project", default="reddiff_bench")
    parser.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"))
    args = parser.parse_args(argv)
    try:
        if os.environ.get("WANDB_MODE", "offline") != "online" or not logged_in() or not args.entity:
            print("error: a W&B report needs a login and the network: run `wandb login` (or set WANDB_API_KEY), "
                  "set WANDB_MODE=online and --entity (or WANDB_ENTITY), upload the study's offline runs with "
                  "`wandb sync outputs/studies/<study>/*/*/*/wandb/offline-run-*`, then run this again. Nothing "
                  "was saved.", file=sys.stderr)
            return 2
        report = build_report(args.study, args.project, args.entity)
        report.save()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
