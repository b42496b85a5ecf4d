"""Summarise the runs of a sweep: summary.csv, summary.md, sweep_convergence.png and sweep_<key>.png per swept number.

python scripts/plot_convergence.py multirun/2026-11-22/10-00-00 [--out folder]

The figures' names are ones no run writes, so pointing the script at a single run's folder leaves the run's own
convergence.png alone; there the tables are sweep_summary.csv/.md (a folder run writes its own summary.csv).
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
        rows, written = summarise(args.folder, args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(rows)} runs: wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
