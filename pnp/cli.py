"""What the entry points share at the command line: one ``error:`` line and exit status 2 for a user's mistake."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator

from hydra.errors import InstantiationException

from pnp.config import CONFIGS
from pnp.errors import ConfigError

EXIT_USER_ERROR, EXIT_DIVERGED = 2, 3


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn configuration mistakes into one ``error:`` line on stderr and exit status 2."""
    try:
        yield
    except (ConfigError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, ConfigError) else err
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def null_group_override(argv: list[str]) -> str | None:
    """``group=null`` for a config group: Hydra fails on it with a traceback before any job code runs; the way to
    drop a group is ``~group``."""
    for arg in argv:
        match = re.fullmatch(r"\+?([A-Za-z_]\w*)=(null|None)", arg)
        if match and (CONFIGS / match.group(1)).is_dir():
            return f"{arg}: to run without the {match.group(1)} group write ~{match.group(1)}"
    return None


def entry(main: Callable[[], None]) -> None:
    """Run a Hydra ``main`` after the checks Hydra cannot report as one line."""
    with user_errors():
        problem = null_group_override(sys.argv[1:])
        if problem:
            raise ConfigError(problem)
    main()
