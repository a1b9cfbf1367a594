"""PyRTL hardware blocks (make_* functions); nmaccel.golden holds their integer twins."""
