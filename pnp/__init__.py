"""pnp: convergent plug-and-play image reconstruction on top of deepinv."""

from pnp.errors import ConfigError
from pnp.monitor import ConvergenceMonitor, History
from pnp.problems import Problem
from pnp.schemes import ADMM, PGD, Result, Scheme

__all__ = ["ADMM", "PGD", "ConfigError", "ConvergenceMonitor", "History", "Problem", "Result", "Scheme"]
