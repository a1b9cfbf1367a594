"""Golden twin of the codebook decoder (nmaccel.hdl.codebook): integer numpy, never imports hdl."""
import numpy as np


def codebook_decode(table, codes, codebook_bits):
    """Codebook twin: table (2**codebook_bits,) INT8 levels, codes -> levels."""
    codes = np.asarray(codes, dtype=np.int64) & ((1 << codebook_bits) - 1)
    return np.asarray(table, dtype=np.int64)[codes]
