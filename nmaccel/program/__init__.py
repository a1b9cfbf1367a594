"""Host-stream programs for the accelerator top (nmaccel.hdl.top's protocol).

encoder: `encode_gemm` lays a PackedWeights matrix and INT8 activations (+ an `EpilogueSpec`)
out as a `Program` (per job header and activation words, the weight / group-scale / epilogue
body, the whole host word stream); `decode_outputs` turns the top's output words back into the
(T, N) result. Every record is written through its table in nmaccel.arch.layout.
"""
from nmaccel.program.encoder import (EpilogueSpec, Program, decode_outputs, encode_gemm,
                                     epilogue_params, group_layout)

__all__ = ["encode_gemm", "decode_outputs", "Program", "EpilogueSpec", "epilogue_params", "group_layout"]
