"""Drivers: PyRTL compiled-sim runner of the array (sim), Strassen tile driver (strassen_tile),
accelerator top driver (runner: PyRTL, Verilator or golden backend)."""
