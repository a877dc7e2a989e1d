"""Op lowerings: one registry (LOWERINGS, TFLite op name -> function) filled by these modules."""
from edgekit.lower.base import LOWERINGS, Alias, KernelCall  # noqa: F401
from edgekit.lower import activations, conv, dwconv, elementwise, fc, pool, shape  # noqa: F401  (register lowerings)
