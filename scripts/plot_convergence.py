"""Overlay the convergence curves of every run of a sweep and write summary.csv / summary.md.

python scripts/plot_convergence.py multirun/2026-11-22/10-00-00 [--out folder]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pnp.errors import ConfigError
from pnp.sweep import summarise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a Hydra multirun folder (or any folder of runs)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the folder)")
    args = parser.parse_args()
    try:
        rows = summarise(args.folder, args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.folder
    print(f"{len(rows)} runs: wrote {out / 'convergence.png'}, {out / 'summary.csv'}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
