"""Execution backends beyond the golden model and the FPGA: `gpu` (torch/cuSPARSELt/Triton, extra [gpu])."""
