"""Convert a guided-diffusion (ADM) checkpoint into a diffusers directory.

    python -m reddiff_bench convert-adm CHECKPOINT OUT_DIR --image_size 256 --num_channels 256 \\
        --num_res_blocks 2 --attention_resolutions 32,16,8 --num_head_channels 64 --learn_sigma True \\
        --resblock_updown True --use_scale_shift_norm True [--diffusion_steps 1000 ...]

Flags take guided-diffusion's own names; flags that are not model flags (``--diffusion_steps``,
``--noise_schedule``, ``--use_fp16``...) are accepted and, except the schedule ones, ignored.
``UNet2DModel.from_pretrained(OUT_DIR)`` then loads the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from ..priors.adm import convert_checkpoint


def parse_flags(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise SystemExit(f"error: expected a --flag, got {arg!r}")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise SystemExit(f"error: flag --{name} has no value")
            value = argv[i + 1]
            i += 1
        flags[name] = value
        i += 1
    return flags


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    checkpoint, out_dir, flags = Path(argv[0]), Path(argv[1]), parse_flags(argv[2:])
    if not checkpoint.is_file():
        print(f"error: checkpoint {checkpoint} does not exist", file=sys.stderr)
        return 2

    try:
        written = convert_checkpoint(checkpoint, flags, out_dir)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written} (UNet2DModel.from_pretrained('{written}'))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
