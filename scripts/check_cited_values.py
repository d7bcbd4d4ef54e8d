"""Check conf/published/cited_values.csv against clones of the repositories it cites: each row's
``quote`` must be on line ``line`` of ``file`` at the cited commit.

    python scripts/check_cited_values.py NVlabs/RED-diff=/path/to/clone DPS2022/diffusion-posterior-sampling=/path

Prints one line per row and exits 1 when a quote is not where the table says. (The configs'
values against the table are checked by tests/test_configs.py, which needs no clone.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

TABLE = Path(__file__).resolve().parents[1] / "conf" / "published" / "cited_values.csv"


def main(argv: list[str]) -> int:
    clones = dict(arg.split("=", 1) for arg in argv)
    table = pd.read_csv(TABLE, dtype=str, keep_default_na=False)
    bad = 0
    for row in table.itertuples():
        repo, commit = row.repo.split("@")
        if repo not in clones:
            print(f"skip  {repo} {row.file}:{row.line} (no clone given)")
            continue
        text = subprocess.run(["git", "-C", clones[repo], "show", f"{commit}:{row.file}"], capture_output=True,
                              text=True, check=True).stdout.splitlines()
        line = text[int(row.line) - 1] if int(row.line) <= len(text) else ""
        ok = row.quote.strip() in line
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'}   {repo} {row.file}:{row.line} {row.quote.strip()!r}"
              + ("" if ok else f" (the line is {line.strip()!r})"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
