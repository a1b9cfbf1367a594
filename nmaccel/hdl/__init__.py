"""PyRTL hardware blocks (make_* functions); nmaccel.golden.blocks holds their integer twins."""
from nmaccel.hdl.config import ArrayConfig, RuntimeConfig  # noqa: F401
