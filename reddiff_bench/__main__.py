"""``python -m reddiff_bench [overrides]``: a run or a sweep (the Hydra app, ``cli.main``).
``python -m reddiff_bench COMMAND [args]``: one of the other commands (``cli.COMMANDS``)."""

import importlib
import sys

from .cli import COMMANDS


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:  # Hydra overrides always hold '=' or start with '-'
        command = sys.argv.pop(1)
        sys.argv[0] = f"{sys.argv[0]} {command}"
        module = importlib.import_module(f".cli.{COMMANDS[command]}", __package__)
        sys.exit(module.main())
    if len(sys.argv) > 1 and sys.argv[1] in ("help", "commands"):
        print(__doc__ + "\n\nCommands: " + ", ".join(COMMANDS))
        sys.exit(0)
    importlib.import_module(".cli.main", __package__).main()


if __name__ == "__main__":
    main()
