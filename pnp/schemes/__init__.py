"""PnP schemes that carry the convergence monitor."""

from pnp.schemes.admm import ADMM
from pnp.schemes.agd import AGD
from pnp.schemes.base import Result, Scheme, Values
from pnp.schemes.pgd import PGD

__all__ = ["ADMM", "AGD", "PGD", "Result", "Scheme", "Values"]
