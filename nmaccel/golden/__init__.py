"""Bit-exact integer numpy models of the hardware (never imports nmaccel.hdl).

One golden module per hardware block, named like the block's module in nmaccel.hdl: decoder
(`nm_decode`), codebook (`codebook_decode`), pe (`lane_weight`, `pe_products`, `pe_step`), array
(`load_plan`, `array_tile`, `tile_cycles`, `tile_schedule`), epilogue (requantization), strassen
(exact Strassen), strassen_tile (Strassen tile on one array), top (host-stream twin).
Shared models: intops (wrap/saturate/round_shift), accum (accumulator widths), gemm (packed GEMM),
groupscale (fixed-point group scales), cyclemodel (`cycles`: exact cycle model).
Note: the functions `gemm` and `epilogue` re-exported here shadow their submodules as package
attributes; reach the modules with `from nmaccel.golden.gemm import ...` or
`importlib.import_module("nmaccel.golden.gemm")`.
"""
from nmaccel.golden.accum import accum_bits, check_accumulator
from nmaccel.golden.cyclemodel import cycles, utilization
from nmaccel.golden.epilogue import epilogue, quantize_multiplier, quantized_linear
from nmaccel.golden.gemm import gemm, gemm_csr, gemm_gather, prepare
from nmaccel.golden.groupscale import group_scaled_gemm, groupscale_params
from nmaccel.golden.intops import round_shift, saturate, wrap
from nmaccel.golden.strassen import strassen_bit_growth, strassen_gemm, strassen_matmul

__all__ = [
    "cycles", "utilization", "accum_bits", "check_accumulator", "epilogue", "quantize_multiplier", "quantized_linear", "gemm", "gemm_csr",
    "gemm_gather", "prepare", "group_scaled_gemm", "groupscale_params", "round_shift", "saturate",
    "wrap", "strassen_bit_growth", "strassen_gemm", "strassen_matmul",
]
