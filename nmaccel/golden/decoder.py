"""Golden twin of the N:M index decoder (nmaccel.hdl.decoder): integer numpy, never imports hdl."""
import numpy as np


def nm_decode(x, idx, dense, m_max):
    """Decoder twin: x (..., m_max), idx (n_max,) -> (..., n_max): x[l] if dense else x[idx[l]]."""
    idx = np.asarray(idx, dtype=np.int64)
    sel = np.arange(idx.size) if dense else idx
    safe = np.where(sel < m_max, sel, 0)
    return np.where(sel < m_max, np.asarray(x, dtype=np.int64)[..., safe], 0)
