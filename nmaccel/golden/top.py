"""Golden twin of the accelerator top (nmaccel.hdl.top): the host stream protocol decoder.

`run_stream(top_cfg, words)` decodes a host word stream exactly as the hardware does (header,
activation records, weight records, group-scale and epilogue records, each read through its
table in nmaccel.arch.layout) and returns the output words the hardware sends, computing every
tile with the PE twins of nmaccel.golden.pe (wrapped register widths), accumulating K tiles in
`acc_bits` and applying nmaccel.golden.epilogue. The encoder is nmaccel.program.encoder.
"""
import numpy as np

from nmaccel.arch import layout
from nmaccel.arch.config import MODES, TopConfig
from nmaccel.errors import require
from nmaccel.golden import pe as gpe
from nmaccel.golden.epilogue import epilogue as golden_epilogue
from nmaccel.golden.intops import wrap


class _Reader:
    """Host words -> records: `record(lay)` reads the next lay.words(h) words through `lay`."""

    def __init__(self, words, h):
        self.words, self.h, self.pos = list(words), h, 0

    def record(self, lay):
        nwords = lay.words(self.h)
        require(self.pos + nwords <= len(self.words),
                f"host stream ends inside a record (word {self.pos} of {len(self.words)}): "
                "the stream is truncated")
        w = np.array(self.words[self.pos:self.pos + nwords], dtype=np.uint64 if self.h <= 64 else object)
        self.pos += nwords
        return layout.record_at(lay.from_words(w[None], self.h), 0)


def decode_header(top_cfg, hdr):
    """Check decoded header fields against what the top elaborates; returns them as ints."""
    hdr = {k: int(v) for k, v in hdr.items()}
    a = top_cfg.array
    require(hdr["mode"] < len(MODES) and MODES[hdr["mode"]] in a.modes,
            f"header mode code {hdr['mode']} is not elaborated")
    require(1 <= hdr["n_keep"] <= hdr["m_group"] and hdr["n_keep"] <= a.n_max
            and hdr["m_group"] <= a.m_max, f"header N:M {hdr['n_keep']}:{hdr['m_group']} unsupported")
    for k, cap in (("n_steps", top_cfg.t_max), ("n_kt", top_cfg.k_tiles_max), ("n_nt", top_cfg.n_tiles_max)):
        require(1 <= hdr[k] <= cap, f"header {k}={hdr[k]} outside 1..{cap}")
    require(hdr["n_steps"] * hdr["n_kt"] <= top_cfg.act_depth,
            f"header n_steps x n_kt = {hdr['n_steps']} x {hdr['n_kt']} exceeds the activation buffer "
            f"({top_cfg.act_depth} entries)")
    return hdr


def tile_outputs(top_cfg, hdr, x, wrecs):
    """Array twin of one K tile: x (n_steps, rows, tps, m_max), decoded weight records (array row
    rows-1 first) -> column sums (n_steps, cols, tps) int64."""
    a = top_cfg.array
    mode = MODES[hdr["mode"]]
    int4, cbk = mode == "int4", mode == "codebook"
    dense = hdr["n_keep"] == hdr["m_group"]
    R, C = a.rows, a.cols
    lanes = [rec["lane"] for rec in wrecs[::-1]]                       # array row 0 first
    code, index, keep = (np.stack([ln[k] for ln in lanes]).reshape(R, C, a.n_max)
                         for k in ("code", "index", "keep"))
    tables = (np.stack([rec["table"] for rec in wrecs[::-1]]).reshape(R, C, a.cb_entries)
              if cbk else None)
    y = np.zeros((x.shape[0], C, a.tokens_per_step), dtype=np.int64)
    for c in range(C):
        psum = np.zeros((x.shape[0], a.tokens_per_step), dtype=np.int64)
        for r in range(R):
            w = gpe.lane_weight(code[r, c] & ((1 << a.weight_bits) - 1), keep[r, c],
                               None if tables is None else tables[r, c], cbk, a)
            psum = gpe.pe_step(a, w, index[r, c], x[:, r], psum, int4, dense)
        y[:, c] = psum
    return y


def run_stream(top_cfg, words):
    """Decode a host word stream (one or more jobs) -> the output words the top sends."""
    require(isinstance(top_cfg, TopConfig), f"top_cfg must be a TopConfig, got {type(top_cfg).__name__}")
    a, H = top_cfg.array, top_cfg.host_bits
    rd = _Reader(words, H)
    hdr_lay, gs_lay = layout.header_layout(top_cfg), layout.groupscale_layout(top_cfg)
    ep_lay, out_lay = layout.epilogue_layout(top_cfg), layout.output_layout(top_cfg)
    out = []
    while rd.pos < len(rd.words):
        hdr = decode_header(top_cfg, rd.record(hdr_lay))
        mode = MODES[hdr["mode"]]
        ns, nkt, nnt = hdr["n_steps"], hdr["n_kt"], hdr["n_nt"]
        tps = 2 if mode == "int4" else 1
        act_lay = layout.activation_layout(top_cfg, int4=mode == "int4")
        x = np.zeros((nkt, ns, a.rows, a.tokens_per_step, a.m_max), dtype=np.int64)
        for kt in range(nkt):
            for s in range(ns):
                v = rd.record(act_lay)["x"].reshape(tps, a.rows, a.m_max)  # token A, then token B
                x[kt, s, :, :tps] = v.transpose(1, 0, 2)
        w_lay = layout.weight_layout(top_cfg, codebook=mode == "codebook")
        gk = hdr.get("kt_per_group", 0)
        require(not top_cfg.group_scales or 1 <= gk <= nkt, f"header kt_per_group={gk} outside 1..{nkt}")
        for nt in range(nnt):
            acc, total = None, None
            for kt in range(nkt):
                wrecs = [rd.record(w_lay) for _ in range(a.rows)]
                y = tile_outputs(top_cfg, hdr, x[kt], wrecs)
                first_in_group = kt % gk == 0 if top_cfg.group_scales else kt == 0
                acc = wrap(y, top_cfg.acc_bits) if first_in_group else wrap(acc + y, top_cfg.acc_bits)
                if top_cfg.group_scales and ((kt + 1) % gk == 0 or kt == nkt - 1):
                    m = rd.record(gs_lay)["mult"]                              # unsigned
                    prod = acc * m[None, :, None]                              # exact
                    total = (wrap(prod, top_cfg.sum_bits) if total is None
                             else wrap(total + prod, top_cfg.sum_bits))
            if top_cfg.group_scales:
                acc = total
            col = rd.record(ep_lay)["col"]
            mult, shift, bias = col["mult"], col["shift"], col["bias"]
            accs = acc.transpose(0, 2, 1)                               # (ns, tps, cols)
            if hdr["raw"]:
                res = golden_epilogue(accs, None, None, bias, bool(hdr["relu"]), top_cfg.raw_bits)
            else:
                require(np.all(mult >= 0), "epilogue mult must be >= 0")
                res = golden_epilogue(accs, mult, shift, bias, bool(hdr["relu"]), top_cfg.out_bits)
            out.extend(int(w) for w in out_lay.to_words(H, y=res.reshape(ns, -1)).ravel())
    return out
