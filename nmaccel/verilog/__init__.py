"""Verilog side: export, Verilator builds and harnesses (cosim), formal, synthesis, tool lookup."""
