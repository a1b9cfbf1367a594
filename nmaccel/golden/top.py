"""Golden twin of the accelerator top (nmaccel.hdl.top): stream layout and protocol decoder.

`TopConfig` fixes the host word layout shared by the hardware, the encoder (nmaccel.runner) and
this decoder. `run_stream(p, words)` decodes a host word stream exactly as the hardware does
(header, activation records, weight records, epilogue records) and returns the output words the
hardware sends, computing every tile with the PE twins of nmaccel.golden.blocks (wrapped
register widths), accumulating K tiles in `acc_bits` and applying nmaccel.golden.epilogue.
Never imports nmaccel.hdl (`p.array` is duck-typed).
"""
from dataclasses import dataclass, replace

import numpy as np

from nmaccel.errors import require
from nmaccel.golden import blocks as gb
from nmaccel.golden.epilogue import epilogue as golden_epilogue
from nmaccel.golden.intops import wrap

MODES = ("int8", "int4", "codebook")           # header mode codes 0, 1, 2 (= nmaccel.hdl.config)
EPILOGUE_LATENCY = 6                            # cycles of nmaccel.hdl.epilogue (checked there)


def _ubits(n):
    return max(1, int(n).bit_length())


def _words(bits, h):
    return -(-bits // h)


@dataclass(frozen=True)
class TopConfig:
    """Elaboration parameters of the accelerator top.

    `t_max`: array steps per job (tokens per job: t_max, 2 * t_max in INT4); `k_tiles_max`: K
    tiles the activation buffer holds (K <= k_tiles_max * rows * window); `n_tiles_max`: output
    column tiles per job. Epilogue widths as in nmaccel.hdl.epilogue.EpilogueConfig.
    `double_buffer` (default True): the top elaborates its array with shadow weight registers
    (`core_array`) and loads K tile k+1 while tile k streams; False: the single-register array,
    weights shift in only after the previous tile has drained (the array's own flag is replaced).
    """
    array: object
    host_bits: int = 64
    t_max: int = 256
    k_tiles_max: int = 16
    n_tiles_max: int = 4096
    mult_bits: int = 16
    bias_bits: int = 32
    max_shift: int = 62
    out_bits: int = 8
    raw_bits: int = 32
    group_scales: bool = False
    gs_mult_bits: int = 16
    double_buffer: bool = True

    def __post_init__(self):
        require(all(hasattr(self.array, k) for k in ("rows", "cols", "x_bits", "w_bits", "latency")),
                f"TopConfig.array must be an ArrayConfig, got {type(self.array).__name__}")
        for f in ("host_bits", "t_max", "k_tiles_max", "n_tiles_max"):
            v = getattr(self, f)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                    f"TopConfig.{f} must be a positive int, got {v!r}")
        require(self.host_bits >= 16, f"TopConfig.host_bits={self.host_bits}: use >= 16")
        require(self.t_max >= 2, f"TopConfig.t_max={self.t_max}: use >= 2")
        require(isinstance(self.group_scales, bool), "TopConfig.group_scales must be a bool")
        require(isinstance(self.double_buffer, bool), "TopConfig.double_buffer must be a bool")
        require(isinstance(self.gs_mult_bits, int) and 2 <= self.gs_mult_bits <= 32,
                f"TopConfig.gs_mult_bits={self.gs_mult_bits!r}: use 2..32")
        require(self.sum_bits <= self.raw_bits,
                f"TopConfig: K up to {self.k_max} needs {self.sum_bits}-bit sums, more than "
                f"raw_bits={self.raw_bits}: lower k_tiles_max or raise raw_bits")
        for f in ("mult_bits", "bias_bits", "max_shift", "out_bits", "raw_bits"):
            v = getattr(self, f)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 2,
                    f"TopConfig.{f} must be an int >= 2, got {v!r}")
        require(self.out_bits <= self.raw_bits, f"TopConfig.out_bits must be <= raw_bits")

    # ---- derived sizes ---------------------------------------------------------------------
    @property
    def k_max(self):
        return self.k_tiles_max * self.array.rows * self.array.m_max

    @property
    def acc_bits(self):
        """Signed bits of a (group) partial sum over up to k_max columns."""
        return self.array.required_acc_bits(self.k_max)

    @property
    def sum_bits(self):
        """Signed bits of the final sum: sum_g P_g * m_g (|sum| < 2^(acc_bits-1) * 2^gs_mult_bits)."""
        return self.acc_bits + (self.gs_mult_bits if self.group_scales else 0)

    @property
    def shift_bits(self):
        return self.max_shift.bit_length()

    @property
    def steps_bits(self):
        return _ubits(self.t_max)

    @property
    def hdr_fields(self):
        a = self.array
        f = (("mode", a.mode_bits), ("n_keep", a.nk_bits), ("m_group", a.mg_bits), ("relu", 1),
             ("raw", 1), ("n_steps", self.steps_bits), ("n_kt", _ubits(self.k_tiles_max)),
             ("n_nt", _ubits(self.n_tiles_max)))
        return f + ((("kt_per_group", _ubits(self.k_tiles_max)),) if self.group_scales else ())

    @property
    def hdr_bits(self):
        return sum(w for _, w in self.hdr_fields)

    @property
    def act_rec_bits(self):
        return self.array.rows * self.array.x_bits

    @property
    def act_tok_bits(self):
        """One token's part of an activation record: rows x m_max INT8 (token B follows)."""
        return self.array.rows * self.array.m_max * self.array.act_bits

    @property
    def w_rec_bits(self):
        return self.array.cols * self.array.w_bits

    @property
    def cb_rec_bits(self):
        return self.array.cols * self.array.cb_bits_total if self.array.has_codebook else 0

    @property
    def ep_col_bits(self):
        return self.mult_bits + self.shift_bits + self.bias_bits

    @property
    def ep_rec_bits(self):
        return self.array.cols * self.ep_col_bits

    @property
    def out_fields(self):
        return self.array.cols * self.array.tokens_per_step

    @property
    def out_rec_bits(self):
        return self.out_fields * self.raw_bits

    def words(self, record, codebook=False, int4=False):
        """Host words of one record: 'header', 'act', 'weight', 'gs', 'epilogue' or 'out'
        (weights carry codebooks in codebook mode; activations carry token B in INT4 mode)."""
        bits = {"header": self.hdr_bits, "act": self.act_tok_bits * (2 if int4 else 1),
                "epilogue": self.ep_rec_bits,
                "gs": self.array.cols * self.gs_mult_bits,
                "out": self.out_rec_bits,
                "weight": self.w_rec_bits + (self.cb_rec_bits if codebook else 0)}[record]
        return _words(bits, self.host_bits)

    @property
    def asm_words(self):
        return max(self.words("header"), self.words("act", int4=self.array.has_int4),
                   self.words("weight", True),
                   self.words("epilogue"), self.words("gs"))

    @property
    def core_array(self):
        """The array the top elaborates: `array` with double_buffer set to this config's."""
        return replace(self.array, double_buffer=self.double_buffer)

    @property
    def load_gap(self):
        """Cycles the weight loader waits after its reference event before the next stage read.
        Double buffer: after a swap (the swap must reach PE(rows-1, cols-1) before the shadow
        shifts again). Single register: after a tile's last step (weights drain through the
        skewed array, one more with pipeline_mux)."""
        a = self.array
        if self.double_buffer:
            return max(0, a.rows + a.cols - 3)
        return max(0, a.rows + a.cols - 4 + int(a.pipeline_mux))

    @property
    def act_depth(self):
        return self.t_max * self.k_tiles_max

    @property
    def out_latency(self):
        """Cycles from a step's activation read address to its output-buffer write: the
        registered buffer address (1), the read data (1), the array, the accumulator (1),
        group scaling (1, group-scale tops) and the epilogue."""
        return 2 + self.array.latency + 1 + int(self.group_scales) + EPILOGUE_LATENCY




def split_record(value, bits, h):
    """Record (Python int of `bits` bits) -> host words, LSB first."""
    mask = (1 << h) - 1
    return [(value >> (h * i)) & mask for i in range(_words(bits, h))]


def join_words(words, h):
    v = 0
    for i, w in enumerate(words):
        v |= int(w) << (h * i)
    return v


def unpack(value, width, count, signed=False):
    """Python int -> int64 array of `count` fields of `width` bits (field 0 in the LSBs)."""
    mask = (1 << width) - 1
    f = np.array([(value >> (width * i)) & mask for i in range(count)], dtype=object)
    if signed:
        f = np.where(f >= (1 << (width - 1)), f - (1 << width), f)
    return f.astype(np.int64)


def pack(fields, width):
    """Integer fields (field 0 lowest) -> Python int, each wrapped to `width` bits."""
    mask = (1 << width) - 1
    v = 0
    for i, f in enumerate(np.asarray(fields).ravel()):
        v |= (int(f) & mask) << (width * i)
    return v


class _Reader:
    def __init__(self, words, h):
        self.words, self.h, self.pos = [int(w) for w in words], h, 0

    def record(self, nwords):
        require(self.pos + nwords <= len(self.words),
                f"host stream ends inside a record (word {self.pos} of {len(self.words)}): "
                "the stream is truncated")
        v = join_words(self.words[self.pos:self.pos + nwords], self.h)
        self.pos += nwords
        return v


def decode_header(p, value):
    hdr, pos = {}, 0
    for k, w in p.hdr_fields:
        hdr[k] = (value >> pos) & ((1 << w) - 1)
        pos += w
    require(hdr["mode"] < len(MODES) and MODES[hdr["mode"]] in p.array.modes,
            f"header mode code {hdr['mode']} is not elaborated")
    require(1 <= hdr["n_keep"] <= hdr["m_group"] and hdr["n_keep"] <= p.array.n_max
            and hdr["m_group"] <= p.array.m_max, f"header N:M {hdr['n_keep']}:{hdr['m_group']} unsupported")
    for k, cap in (("n_steps", p.t_max), ("n_kt", p.k_tiles_max), ("n_nt", p.n_tiles_max)):
        require(1 <= hdr[k] <= cap, f"header {k}={hdr[k]} outside 1..{cap}")
    return hdr


def tile_outputs(p, hdr, x, wrecs):
    """Array twin of one K tile: x (n_steps, rows, tps, m_max), weight records (array row
    rows-1 first) -> column sums (n_steps, cols, tps) int64."""
    a = p.array
    mode = MODES[hdr["mode"]]
    int4, cbk = mode == "int4", mode == "codebook"
    dense = hdr["n_keep"] == hdr["m_group"]
    R, C = a.rows, a.cols
    lanes = np.zeros((R, C, a.n_max, 3), dtype=np.int64)    # code, index, keep
    tables = np.zeros((R, C, a.cb_entries), dtype=np.int64) if cbk else None
    for i, v in enumerate(wrecs):
        r = R - 1 - i
        for c in range(C):
            word = (v >> (c * a.w_bits)) & ((1 << a.w_bits) - 1)
            for ln, lw in enumerate(unpack(word, a.lane_load_bits, a.n_max)):
                lw = int(lw)
                lanes[r, c, ln] = (lw & ((1 << a.weight_bits) - 1),
                                   (lw >> a.weight_bits) & ((1 << a.idx_bits) - 1),
                                   lw >> (a.weight_bits + a.idx_bits))
            if cbk:
                tv = v >> (C * a.w_bits + c * a.cb_bits_total)
                tables[r, c] = unpack(tv, a.weight_bits, a.cb_entries, signed=True)
    y = np.zeros((x.shape[0], C, a.tokens_per_step), dtype=np.int64)
    for c in range(C):
        psum = np.zeros((x.shape[0], a.tokens_per_step), dtype=np.int64)
        for r in range(R):
            w = gb.lane_weight(lanes[r, c, :, 0], lanes[r, c, :, 2], None if tables is None else
                               tables[r, c], cbk, a)
            psum = gb.pe_step(a, w, lanes[r, c, :, 1], x[:, r], psum, int4, dense)
        y[:, c] = psum
    return y


def run_stream(p, words):
    """Decode a host word stream (one or more jobs) -> the output words the top sends."""
    a, H = p.array, p.host_bits
    rd = _Reader(words, H)
    out = []
    while rd.pos < len(rd.words):
        hdr = decode_header(p, rd.record(p.words("header")))
        mode = MODES[hdr["mode"]]
        ns, nkt, nnt = hdr["n_steps"], hdr["n_kt"], hdr["n_nt"]
        x = np.zeros((nkt, ns, a.rows, a.tokens_per_step, a.m_max), dtype=np.int64)
        for kt in range(nkt):
            for s in range(ns):
                v = rd.record(p.words("act", int4=mode == "int4"))
                for t in range(2 if mode == "int4" else 1):      # token A, then token B
                    x[kt, s, :, t] = unpack(v >> (t * p.act_tok_bits), a.act_bits, a.rows * a.m_max,
                                            signed=True).reshape(a.rows, a.m_max)
        ww = p.words("weight", mode == "codebook")
        gk = hdr.get("kt_per_group", 0)
        require(not p.group_scales or 1 <= gk <= nkt, f"header kt_per_group={gk} outside 1..{nkt}")
        for nt in range(nnt):
            acc, total = None, None
            for kt in range(nkt):
                wrecs = [rd.record(ww) for _ in range(a.rows)]
                y = tile_outputs(p, hdr, x[kt], wrecs)
                first_in_group = kt % gk == 0 if p.group_scales else kt == 0
                acc = wrap(y, p.acc_bits) if first_in_group else wrap(acc + y, p.acc_bits)
                if p.group_scales and ((kt + 1) % gk == 0 or kt == nkt - 1):
                    m = unpack(rd.record(p.words("gs")), p.gs_mult_bits, a.cols)   # unsigned
                    prod = acc * m[None, :, None]                                 # exact
                    total = wrap(prod, p.sum_bits) if total is None else wrap(total + prod, p.sum_bits)
            if p.group_scales:
                acc = total
            ep = rd.record(p.words("epilogue"))
            cols = unpack(ep, p.ep_col_bits, a.cols)
            mult = np.array([int(v) & ((1 << p.mult_bits) - 1) for v in cols], dtype=np.int64)
            shift = np.array([(int(v) >> p.mult_bits) & ((1 << p.shift_bits) - 1) for v in cols],
                             dtype=np.int64)
            braw = [int(v) >> (p.mult_bits + p.shift_bits) for v in cols]
            bias = np.array([b - (1 << p.bias_bits) if b >> (p.bias_bits - 1) else b for b in braw],
                            dtype=np.int64)
            mult = np.where(mult >= 1 << (p.mult_bits - 1), mult - (1 << p.mult_bits), mult)
            accs = acc.transpose(0, 2, 1)                               # (ns, tps, cols)
            if hdr["raw"]:
                res = golden_epilogue(accs, None, None, bias, bool(hdr["relu"]), p.raw_bits)
            else:
                require(np.all(mult >= 0), "epilogue mult must be >= 0")
                res = golden_epilogue(accs, mult, shift, bias, bool(hdr["relu"]), p.out_bits)
            for s in range(ns):
                out.extend(split_record(pack(res[s].ravel(), p.raw_bits), p.out_rec_bits, H))
    return out
