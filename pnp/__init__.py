"""pnp: convergent plug-and-play image reconstruction on top of deepinv."""

from pnp.errors import ConfigError
from pnp.guarantees import Guarantee
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor, History
from pnp.problems import Problem
from pnp.schemes import ADMM, AGD, PGD, Result, Scheme
from pnp.weights import pretrained

__all__ = [
    "ADMM",
    "AGD",
    "PGD",
    "ConfigError",
    "ConvergenceMonitor",
    "Guarantee",
    "History",
    "Problem",
    "Result",
    "Scheme",
    "load_image",
    "pretrained",
]
