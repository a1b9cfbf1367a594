"""Drivers: PyRTL compiled-sim runner of the array (sim), accelerator top driver (runner)."""
