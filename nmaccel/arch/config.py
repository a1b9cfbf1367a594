"""Every configuration of the accelerator, validated in one place: ArrayConfig (elaboration of
the systolic array), RuntimeConfig (its runtime register bundle), EpilogueConfig (fused output
epilogue widths), TopConfig (the accelerator top and its host word sizes); the mode codes,
latencies, window arithmetic and accumulator width (accum_bits: the one definition, used by the
configs and the golden checks) they share. Imports nothing of nmaccel but nmaccel.errors.

Elaboration fixes the hardware (array size, lanes, largest group, widths); the runtime
configuration (mode, n_keep, m_group) is a register bundle loaded before a job, so switching
between INT8 / INT4 / codebook and any N:M with n_keep <= n_max, m_group <= m_max needs no
re-elaboration.
"""
from dataclasses import dataclass, field, replace

import numpy as np

from nmaccel.errors import require

M_GROUP_MAX = 16        # largest N:M group (m_group) the packed format stores and the CLI elaborates
MODES = ("int8", "int4", "codebook")          # header / runtime mode codes 0, 1, 2
MODE_CODE = {m: i for i, m in enumerate(MODES)}
OPERAND_BITS = (8, 9)   # 9: one bit of Strassen pre-add growth (nmaccel.hdl.strassen_tile)
EPILOGUE_LATENCY = 6    # cycles of the fused epilogue (nmaccel.hdl.epilogue, golden top timing)
OUT_MODE_SCALED, OUT_MODE_RAW = 0, 1
# Plain mode, product p: A-quadrant PLAIN_A[p] (over [A11, A12, A21, A22]) times B-quadrant
# PLAIN_W[p] (over [B11, B12, B21, B22]) added to output block PLAIN_C[p] (C11, C12, C21, C22).
PLAIN_A = (0, 1, 0, 1, 2, 3, 2, 3)
PLAIN_W = (0, 2, 1, 3, 0, 2, 1, 3)
PLAIN_C = (0, 0, 1, 1, 2, 2, 3, 3)
N_PRODUCTS, N_PLAIN_PRODUCTS = 7, len(PLAIN_A)   # block products: 2x2 Strassen / plain
PREADD_LATENCY = 1      # make_strassen_preadd registers its operands
COMBINER_LATENCY = 1    # make_strassen_combiner registers its blocks


def ubits(n):
    """Unsigned bits needed to hold 0 .. n (at least 1)."""
    return max(1, int(n).bit_length())


def n_words(bits, h):
    """h-bit host words holding `bits` bits."""
    return -(-bits // h)


def window_groups(n_keep, m_group, n_max, m_max):
    """N:M groups one PE covers per cycle: as many as fit in n_max lanes and m_max activations."""
    return min(n_max // n_keep, m_max // m_group)


# ---- integer ranges and the accumulator width (the one definition; golden.accum checks it) ----
def int_range(bits, signed=True):
    """(lo, hi) of a `bits`-wide two's complement (signed) or unsigned integer."""
    require(int(bits) >= 1, f"bit width must be >= 1, got {bits}")
    bits = int(bits)
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def bits_for_range(lo, hi, signed=True):
    """Fewest bits whose integer range holds every value in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    require(lo <= hi, f"empty range [{lo}, {hi}]")
    if not signed:
        require(lo >= 0, f"range [{lo}, {hi}] has negative values; use signed=True")
        return max(1, hi.bit_length())
    # signed b bits hold [-2^(b-1), 2^(b-1)-1]
    need_hi = hi.bit_length() + 1 if hi > 0 else 1
    need_lo = (-lo - 1).bit_length() + 1 if lo < 0 else 1
    return max(need_hi, need_lo)


def _signs(signed):
    if isinstance(signed, (tuple, list)):
        require(len(signed) == 2, "signed must be a bool or a (w_signed, a_signed) pair")
        return bool(signed[0]), bool(signed[1])
    return bool(signed), bool(signed)


def product_range(w_bits, a_bits, signed=True):
    """(lo, hi) of one product w * a of a `w_bits` and an `a_bits` operand.

    `signed` is a bool for both operands or a (w_signed, a_signed) pair. For two signed operands
    the maximum is (-2^(w-1)) * (-2^(a-1)) = 2^(w+a-2) and the minimum is
    -max(2^(w-1) * (2^(a-1)-1), (2^(w-1)-1) * 2^(a-1)).
    """
    ws, as_ = _signs(signed)
    wlo, whi = int_range(w_bits, ws)
    alo, ahi = int_range(a_bits, as_)
    corners = [wlo * alo, wlo * ahi, whi * alo, whi * ahi]
    return min(corners), max(corners)


def dot_range(k, w_bits, a_bits, signed=True):
    """(lo, hi) of a sum of `k` products (every term independently at its extreme)."""
    require(int(k) >= 0, f"K must be >= 0, got {k}")
    lo, hi = product_range(w_bits, a_bits, signed)
    return int(k) * lo, int(k) * hi


def accum_bits(k, w_bits, a_bits, signed=True):
    """Exact accumulator bits for a `k`-long dot product of worst-case operands.

    Signed result (two's complement) when either operand is signed, else unsigned. E.g.
    INT8 x INT8: one product needs 16 bits (+2^14 = (-128)*(-128) does not fit 15), and
    accum_bits(k, 8, 8) = bits_for_range(k * -16256, k * 16384).
    """
    ws, as_ = _signs(signed)
    lo, hi = dot_range(k, w_bits, a_bits, signed)
    return bits_for_range(lo, hi, signed=ws or as_)


def max_k(acc_bits, w_bits, a_bits, signed=True):
    """Largest K whose worst-case dot product fits `acc_bits` (0 if not even one product)."""
    ws, as_ = _signs(signed)
    alo, ahi = int_range(acc_bits, ws or as_)
    lo, hi = product_range(w_bits, a_bits, signed)
    limits = []
    if hi > 0:
        limits.append(ahi // hi)
    if lo < 0:
        limits.append(alo // lo)   # both negative: floor(alo / lo)
    return min(limits) if limits else 0


PIPELINE_FLAGS = ("pipeline_mux", "pipeline_product", "pipeline_operand", "pipeline_dsp", "pipeline_sum")


def pipeline_options(on):
    """ArrayConfig keyword arguments turning every pipeline register on (or all off)."""
    return {f: bool(on) for f in PIPELINE_FLAGS}


@dataclass(frozen=True)
class ArrayConfig:
    """Systolic array elaboration parameters.

    rows x cols PEs; each PE has n_max multiplier lanes and an m_max:1 index mux per lane.
    `act_bits` / `weight_bits` are 8 (INT8), or 9 in an INT8-only array (Strassen pre-added
    operands, see nmaccel.hdl.strassen_tile).
    `k_max` is the largest K one column sum accumulates (default: what one tile can hold,
    rows * m_max); `acc_bits` is derived from it, or given and checked.
    `pipeline_mux` / `pipeline_product` add a register after the index muxes / multipliers,
    `pipeline_operand` after the packed multiplier operand (with its weight), `pipeline_dsp`
    right after the DSP multiplier (before smul_dsp's combining adds), `pipeline_sum` after the
    first level of the lanes' adder tree: +1 cycle latency each. `double_buffer` adds shadow weight registers and a `w_swap` input so
    the next tile's weights load while the current tile streams (see make_systolic_array).
    `decoder=False` (needs n_max == m_max) elaborates no N:M index muxes: lane l always multiplies
    activation l (dense runtime configs only; the stored index bits drive nothing and synthesis
    removes them): the dense INT8 baseline top.
    """
    rows: int = 4
    cols: int = 4
    n_max: int = 4
    m_max: int = 8
    modes: tuple = MODES
    act_bits: int = 8
    weight_bits: int = 8
    int4_bits: int = 4
    codebook_bits: int = 4
    k_max: int = None
    acc_bits: int = None
    pipeline_mux: bool = False
    pipeline_product: bool = False
    pipeline_operand: bool = False
    pipeline_dsp: bool = False
    pipeline_sum: bool = False
    double_buffer: bool = False
    dsp_width: int = 18
    decoder: bool = True

    def __post_init__(self):
        for f in ("rows", "cols", "n_max", "m_max"):
            v = getattr(self, f)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                    f"ArrayConfig.{f} must be a positive int, got {v!r}")
        require(self.rows <= 64 and self.cols <= 64,
                f"ArrayConfig {self.rows}x{self.cols} too large: use rows, cols <= 64")
        require(self.m_max >= 2, f"ArrayConfig.m_max must be >= 2, got {self.m_max}")
        require(self.n_max <= self.m_max,
                f"ArrayConfig.n_max ({self.n_max}) must be <= m_max ({self.m_max})")
        modes = tuple(self.modes)
        object.__setattr__(self, "modes", modes)
        require(len(modes) > 0 and all(m in MODES for m in modes) and "int8" in modes,
                f"ArrayConfig.modes {modes!r}: use a subset of {MODES} containing 'int8'")
        for f in ("act_bits", "weight_bits"):
            v = getattr(self, f)
            require(type(v) is int and v in OPERAND_BITS, f"ArrayConfig.{f} must be one of {OPERAND_BITS} "
                    f"(8: INT8, 9: Strassen pre-added operands), got {v!r}")
        wide = self.act_bits != 8 or self.weight_bits != 8
        require(not wide or modes == ("int8",),
                f"ArrayConfig act_bits={self.act_bits}, weight_bits={self.weight_bits}: 9-bit operands "
                "run INT8 mode only (INT4 token packing and codebook LUTs assume 8 bits): use modes=('int8',)")
        require(self.int4_bits == 4, f"ArrayConfig.int4_bits must be 4, got {self.int4_bits}")
        require(isinstance(self.dsp_width, int) and self.dsp_width > self.weight_bits,
                f"ArrayConfig.dsp_width={self.dsp_width!r}: use the DSP's signed operand width (e.g. 18)")
        require(self.codebook_bits in (2, 4),
                f"ArrayConfig.codebook_bits must be 2 or 4, got {self.codebook_bits}")
        require(isinstance(self.decoder, bool) and (self.decoder or self.n_max == self.m_max),
                f"ArrayConfig.decoder={self.decoder!r}: an array without N:M index decoders runs dense "
                f"only and needs n_max == m_max (got {self.n_max}, {self.m_max})")
        for f in PIPELINE_FLAGS + ("double_buffer",):
            require(isinstance(getattr(self, f), bool), f"ArrayConfig.{f} must be True or False")
        require(len(set(modes)) == len(modes), f"ArrayConfig.modes {modes!r} repeats a mode")
        k_max = self.k_max if self.k_max is not None else self.rows * self.m_max
        require(isinstance(k_max, int) and k_max >= self.rows * self.n_max,
                f"ArrayConfig.k_max={k_max!r} is below the {self.rows * self.n_max} products one column "
                f"sums per step (rows * n_max): use k_max >= {self.rows * self.n_max}")
        object.__setattr__(self, "k_max", k_max)
        need = self.required_acc_bits(k_max)
        if self.acc_bits is None:
            object.__setattr__(self, "acc_bits", need)
        else:
            require(self.acc_bits >= need,
                    f"ArrayConfig.acc_bits={self.acc_bits} can overflow for k_max={k_max}: use acc_bits >= {need}")

    def required_acc_bits(self, k):
        """Signed bits holding any sum of k act x weight products: accum_bits (worst case both
        operands most negative)."""
        return accum_bits(k, self.weight_bits, self.act_bits)

    # ---- derived widths ------------------------------------------------------------------
    @property
    def has_int4(self):
        return "int4" in self.modes

    @property
    def has_codebook(self):
        return "codebook" in self.modes

    @property
    def idx_bits(self):
        """Bits of one stored (window-local) index."""
        return ubits(self.m_max - 1)

    @property
    def tokens_per_step(self):
        """Tokens one activation step carries (2 when INT4 token packing exists)."""
        return 2 if self.has_int4 else 1

    @property
    def pack_shift(self):
        """S of the INT4 packed operand b = (a_hi << S) + a_lo: one INT4 x INT8 product width."""
        return self.int4_bits + self.act_bits

    @property
    def operand_bits(self):
        """Activation-side multiplier operand width: (a_hi << S) + a_lo needs act_bits + S + 1
        signed bits ((-128 << 12) - 1 does not fit act_bits + S)."""
        return self.act_bits + self.pack_shift + 1 if self.has_int4 else self.act_bits

    @property
    def mult_bits(self):
        return self.weight_bits + self.operand_bits

    @property
    def x_bits(self):
        """Width of one row's activation input: tokens_per_step windows of m_max activations."""
        return self.tokens_per_step * self.m_max * self.act_bits

    @property
    def lane_load_bits(self):
        """Load word of one lane: keep bit, window-local index, weight code."""
        return 1 + self.idx_bits + self.weight_bits

    @property
    def w_bits(self):
        return self.n_max * self.lane_load_bits

    @property
    def cb_entries(self):
        return 1 << self.codebook_bits

    @property
    def cb_bits_total(self):
        return self.cb_entries * self.weight_bits

    @property
    def pipeline_stages(self):
        return (int(self.pipeline_mux) + int(self.pipeline_operand) + int(self.pipeline_dsp)
                + int(self.pipeline_product) + int(self.pipeline_sum))

    @property
    def latency(self):
        """Cycles from a step on x_in_* to its sums on y_out_* (see make_systolic_array)."""
        return self.rows + self.cols - 1 + self.pipeline_stages

    @property
    def mode_bits(self):
        return ubits(len(MODES) - 1)

    @property
    def nk_bits(self):
        return ubits(self.n_max)

    @property
    def mg_bits(self):
        return ubits(self.m_max)

    def window(self, n_keep, m_group):
        """K elements one PE row covers per step for n_keep:m_group."""
        return window_groups(n_keep, m_group, self.n_max, self.m_max) * m_group


@dataclass(frozen=True)
class RuntimeConfig:
    """Values of the runtime register bundle: mode, n_keep, m_group (n_keep == m_group: dense)."""
    mode: str = "int8"
    n_keep: int = 4
    m_group: int = 4

    def __post_init__(self):
        require(self.mode in MODES, f"unknown mode {self.mode!r}: use one of {MODES}")
        require(isinstance(self.n_keep, int) and isinstance(self.m_group, int)
                and 1 <= self.n_keep <= self.m_group,
                f"bad N:M {self.n_keep}:{self.m_group}: need 1 <= n_keep <= m_group")

    @property
    def dense(self):
        return self.n_keep == self.m_group

    def check(self, cfg):
        """Raise NmaccelError unless the elaborated array `cfg` can run this configuration."""
        require(self.mode in cfg.modes,
                f"array elaborated without mode {self.mode!r}: add it to ArrayConfig.modes")
        require(self.n_keep <= cfg.n_max,
                f"n_keep={self.n_keep} exceeds the array's n_max={cfg.n_max} lanes: elaborate with n_max >= {self.n_keep}")
        require(self.m_group <= cfg.m_max,
                f"m_group={self.m_group} exceeds the array's m_max={cfg.m_max}: elaborate with m_max >= {self.m_group}")
        require(cfg.decoder or self.dense,
                f"N:M {self.n_keep}:{self.m_group} needs index decoders: this array was elaborated with "
                "ArrayConfig(decoder=False) (dense only); use a product top or n_keep == m_group")
        return self

    def codes(self):
        return MODE_CODE[self.mode], self.n_keep, self.m_group


@dataclass(frozen=True)
class EpilogueConfig:
    """Elaboration widths. `mult_bits` is the signed width of the mantissa port (golden
    `quantize_multiplier(real, mult_bits)` gives mantissas in [0, 2^(mult_bits-1))), `max_shift`
    the largest per-channel shift (sets the shift port width)."""

    acc_bits: int = 32
    mult_bits: int = 16
    bias_bits: int = 32
    max_shift: int = 62
    out_bits: int = 8
    raw_bits: int = 32

    def __post_init__(self):
        for f in ("acc_bits", "mult_bits", "bias_bits", "max_shift", "out_bits", "raw_bits"):
            v = getattr(self, f)
            require(isinstance(v, int) and not isinstance(v, bool),
                    f"epilogue {f} must be an int, got {v!r}")
        require(self.acc_bits >= 2 and self.bias_bits >= 2 and self.out_bits >= 2,
                "epilogue acc_bits, bias_bits and out_bits must be >= 2")
        require(self.mult_bits >= 2, f"epilogue mult_bits must be >= 2, got {self.mult_bits}")
        require(self.max_shift >= 1, f"epilogue max_shift must be >= 1, got {self.max_shift}")
        require(self.out_bits <= self.raw_bits,
                f"out_bits ({self.out_bits}) must be <= raw_bits ({self.raw_bits})")

    @property
    def shift_bits(self) -> int:
        return self.max_shift.bit_length()

    @property
    def sum_bits(self) -> int:
        return max(self.acc_bits, self.bias_bits) + 1

    @property
    def product_bits(self) -> int:
        return self.sum_bits + self.mult_bits

    def check_params(self, mult=None, shift=None, bias=None):
        """Raise NmaccelError unless per-channel mult/shift/bias fit this epilogue's ports."""
        if mult is not None:
            m = np.asarray(mult)
            require(m.dtype.kind in "iu", "epilogue mult must be integer mantissas; use "
                    "nmaccel.golden.epilogue.quantize_multiplier")
            require(m.size == 0 or (int(m.min()) >= 0 and int(m.max()) < 1 << (self.mult_bits - 1)),
                    f"epilogue mult out of range [0, 2^{self.mult_bits - 1}); requantize with "
                    f"quantize_multiplier(real, mult_bits={self.mult_bits})")
        if shift is not None:
            s = np.asarray(shift)
            require(s.dtype.kind in "iu", "epilogue shift must be an integer array")
            require(s.size == 0 or (int(s.min()) >= 0 and int(s.max()) <= self.max_shift),
                    f"epilogue shift out of range [0, {self.max_shift}]; raise the output scale "
                    f"or elaborate with a larger max_shift")
        if bias is not None:
            b = np.asarray(bias)
            require(b.dtype.kind in "iu", "epilogue bias must be an integer array")
            lo, hi = -(1 << (self.bias_bits - 1)), (1 << (self.bias_bits - 1)) - 1
            require(b.size == 0 or (int(b.min()) >= lo and int(b.max()) <= hi),
                    f"epilogue bias out of the {self.bias_bits}-bit signed range; rescale it")


@dataclass(frozen=True)
class HostLink:
    """The host link's availability pattern: a runtime property of the host (DRAM, bus), not
    elaborated. The host offers its next input word (in_valid) on cycles c with
    c % in_period < in_on and accepts an output word (out_ready) on cycles c with
    c % out_period < out_on; cycle 0 is the first cycle the host offers the first header word.
    `HostLink()` is the ideal link (always valid, always ready). Input bandwidth is
    host_bits * in_on / in_period bits per cycle. The harnesses (nmaccel.run.runner, the
    Verilator host of nmaccel.verilog.cosim_top) drive exactly this pattern and the cycle model
    (nmaccel.golden.cyclemodel) replays it, so cycles stay exact under stalls."""
    in_period: int = 1
    in_on: int = 1
    out_period: int = 1
    out_on: int = 1

    def __post_init__(self):
        for d in ("in", "out"):
            per, on = getattr(self, f"{d}_period"), getattr(self, f"{d}_on")
            require(isinstance(per, int) and isinstance(on, int) and 1 <= on <= per,
                    f"host link {d}: {on} of every {per} cycles; use 1 <= {d}_on <= {d}_period")

    @classmethod
    def parse(cls, text):
        """'in=3/4,out=1/2' (either part optional; 'ideal' or '' for HostLink())."""
        kw = {}
        for part in filter(None, (t.strip() for t in str(text).split(","))):
            if part == "ideal":
                continue
            d, _, frac = part.partition("=")
            on, _, per = frac.partition("/")
            require(d in ("in", "out") and on.isdigit() and per.isdigit(),
                    f"host link {part!r}: write in=ON/PERIOD,out=ON/PERIOD (e.g. in=1/2)")
            kw[f"{d}_on"], kw[f"{d}_period"] = int(on), int(per)
        return cls(**kw)

    def __str__(self):
        return "ideal" if self.ideal else f"in={self.in_on}/{self.in_period},out={self.out_on}/{self.out_period}"

    @property
    def ideal(self):
        return self.in_on == self.in_period and self.out_on == self.out_period

    @property
    def period(self):
        """Cycles after which the pattern repeats."""
        return int(np.lcm(self.in_period, self.out_period))

    def in_ok(self, c):
        """in_valid of the host on cycle(s) c (int or numpy array)."""
        return c % self.in_period < self.in_on

    def out_ok(self, c):
        """out_ready of the host on cycle(s) c."""
        return c % self.out_period < self.out_on

    @staticmethod
    def _nth(period, on, start, n):
        """The cycle of the n-th (n >= 1) available cycle at or after `start`."""
        m = (start // period) * on + min(start % period, on) + n - 1    # its index among available
        return (m // on) * period + m % on

    def in_done(self, start, n):
        """The cycle after the n-th input word when the words may go from cycle `start` on
        (start itself when n == 0)."""
        return self._nth(self.in_period, self.in_on, start, n) + 1 if n else start

    def out_last(self, start, n):
        """The cycle of the n-th (n >= 1) output word when the words may go from cycle `start` on."""
        return self._nth(self.out_period, self.out_on, start, n)


@dataclass(frozen=True)
class TopConfig:
    """Elaboration parameters of the accelerator top.

    `t_max`: array steps per job (tokens per job: t_max, 2 * t_max in INT4); `k_tiles_max`: K
    tiles per job (K <= k_tiles_max * rows * window; sets the accumulator width); `act_entries`:
    activation buffer entries, one per (K tile, step) of a job (default t_max * k_tiles_max): a
    job holds n_kt * n_steps <= act_entries, so a long K runs in token tiles of
    min(t_max, act_entries // n_kt) steps on the same top (nmaccel.golden.cyclemodel.job_shapes);
    `n_tiles_max`: output column tiles per job. Epilogue widths as in nmaccel.hdl.epilogue.EpilogueConfig.
    `double_buffer` (default True): the top elaborates its array with shadow weight registers
    (`core_array`) and loads K tile k+1 while tile k streams; False: the single-register array,
    weights shift in only after the previous tile has drained (the array's own flag is replaced).
    """
    array: object
    host_bits: int = 64
    t_max: int = 256
    k_tiles_max: int = 16
    n_tiles_max: int = 4096
    act_entries: int | None = None
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
        if self.act_entries is not None:
            require(isinstance(self.act_entries, int) and not isinstance(self.act_entries, bool)
                    and self.k_tiles_max <= self.act_entries <= self.t_max * self.k_tiles_max,
                    f"TopConfig.act_entries={self.act_entries!r}: use an int in k_tiles_max.."
                    f"t_max * k_tiles_max ({self.k_tiles_max}..{self.t_max * self.k_tiles_max})")
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
        require(self.out_bits <= self.raw_bits, "TopConfig.out_bits must be <= raw_bits")

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
        return ubits(self.t_max)

    @property
    def hdr_fields(self):
        a = self.array
        f = (("mode", a.mode_bits), ("n_keep", a.nk_bits), ("m_group", a.mg_bits), ("relu", 1),
             ("raw", 1), ("n_steps", self.steps_bits), ("n_kt", ubits(self.k_tiles_max)),
             ("n_nt", ubits(self.n_tiles_max)))
        return f + ((("kt_per_group", ubits(self.k_tiles_max)),) if self.group_scales else ())

    @property
    def epilogue(self):
        """EpilogueConfig of the top's fused epilogue lanes."""
        return EpilogueConfig(acc_bits=self.sum_bits, mult_bits=self.mult_bits, bias_bits=self.bias_bits,
                              max_shift=self.max_shift, out_bits=self.out_bits, raw_bits=self.raw_bits)

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
        return n_words(bits, self.host_bits)

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
        """Activation buffer entries (one array step of one K tile each)."""
        return self.act_entries if self.act_entries is not None else self.t_max * self.k_tiles_max

    @property
    def out_latency(self):
        """Cycles from a step's activation read address to its output-buffer write: the
        registered buffer address (1), the read data (1), the array, the accumulator (1), the
        registered sums (1; on group-scale tops the registered group products) and the epilogue."""
        return 2 + self.array.latency + 1 + 1 + EPILOGUE_LATENCY


# ---- the product tops (ECP5-85k, LFE5U-85F CABGA381) -------------------------------------------
# Sized by nmaccel.verilog.synth.fit_estimate: DSP = rows * cols * n_max lanes (one MULT18X18D
# each) + 2 per epilogue lane (cols * tokens_per_step); 156 MULT18X18D on the device.
PRODUCT_ARRAY = ArrayConfig(rows=6, cols=4, n_max=4, m_max=8, modes=("int8", "int4"),
                            **pipeline_options(True))
"""The product top's array: every runtime mode (INT8 / INT4, any N:M with n <= 4, m <= 8),
every pipeline register; 6 x 4 x 4 lanes = 96 + 16 epilogue = 112 of 156 MULT18X18D. Sized by
routing, not by DSPs: the 8 x 4 (144 DSPs, 70% of the LUT4s) places but nextpnr's router2 stalls
on congestion; the 6 x 4 routes with router1 (not with router2), as does the 4 x 4
(benchmarks/results/fpga_study.json: `tops`, `unrouted`)."""
DENSE_ARRAY = ArrayConfig(rows=9, cols=4, n_max=4, m_max=4, modes=("int8",), decoder=False,
                          **pipeline_options(True))
"""The dense INT8 baseline: same controller and PE pipeline, no index decoders, no INT4;
9 x 4 x 4 lanes = 144 + 8 epilogue = 152 of 156 MULT18X18D."""
PRODUCT_TOP = {"host_bits": 64, "t_max": 64, "k_tiles_max": 1024, "act_entries": 2048}
"""TopConfig parameters of the product and dense tops: a 64-bit host (2 * 64 + 5 IOs + clock + reset of
the package's 205), up to 64 array steps per job, up to 1024 K tiles per job (K up to 24576 at
the densest window: any LLaMA-7B / 13B layer) and a 2048-entry activation buffer (n_kt * n_steps
<= 2048: a long K runs in shorter token tiles, the host re-sending the weights per tile)."""
DENSE_TOP = {**PRODUCT_TOP, "act_entries": 4096}
"""TopConfig parameters of the dense baseline: PRODUCT_TOP with twice the activation entries (its
9 x 4 INT8 activation words are narrower): a 4096-deep K runs 64 tokens in two jobs of 32 steps,
as fast as one (a tile's 32 steps outlast its weight words). 8192 entries (128 DP16KD) placed at
55.7 MHz, limited by the buffer's write enable fanning out to 16 block-RAM rows
(fpga_study.json runs)."""


def placed_top(array_cfg, **overrides):
    """TopConfig of `array_cfg` with the placed tops' buffers and counters: DENSE_TOP for the dense
    baseline array, PRODUCT_TOP for every other; `overrides` replace single parameters."""
    base = DENSE_TOP if array_cfg == DENSE_ARRAY else PRODUCT_TOP
    return TopConfig(array=array_cfg, **{**base, **overrides})


@dataclass(frozen=True)
class StrassenConfig:
    """Elaboration widths: `act_bits` (activations), `product_bits` (the products M_i as the
    array delivers them), `acc_bits` (combiner accumulators, wrap-around; default
    product_bits + 2, enough for the four-term C11/C22 of one set of products)."""

    act_bits: int = 8
    product_bits: int = 32
    acc_bits: int | None = None

    def __post_init__(self):
        if self.acc_bits is None:
            object.__setattr__(self, "acc_bits", self.product_bits + 2)
        for f in ("act_bits", "product_bits", "acc_bits"):
            v = getattr(self, f)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 2,
                    f"strassen {f} must be an int >= 2, got {v!r}")
        require(self.acc_bits >= self.product_bits,
                f"strassen acc_bits ({self.acc_bits}) must be >= product_bits ({self.product_bits})")

    @property
    def operand_bits(self) -> int:
        """Pre-added activation width: one bit of growth."""
        return self.act_bits + 1

    @property
    def idx_bits(self) -> int:
        return (N_PRODUCTS - 1).bit_length()


@dataclass(frozen=True)
class StrassenTileConfig:
    """Elaboration parameters: array `rows` x `cols` with `n_max` lanes (block K <= rows * n_max,
    block outputs <= cols), `t_max` token rows per block (accumulator rows), INT8 inputs
    (`act_bits`, `weight_bits`). Derived: `array` (ArrayConfig with the pre-add-grown operand
    widths, INT8 mode only, double-buffered), `combiner` (StrassenConfig), `comb_bits`."""
    rows: int = 2
    cols: int = 2
    n_max: int = 2
    t_max: int = 4
    act_bits: int = 8
    weight_bits: int = 8
    pipeline_mux: bool = False
    pipeline_product: bool = False
    array: ArrayConfig = field(init=False, repr=False)
    combiner: StrassenConfig = field(init=False, repr=False)

    def __post_init__(self):
        require(type(self.t_max) is int and 1 <= self.t_max <= 64,
                f"StrassenTileConfig.t_max must be an int in 1..64, got {self.t_max!r}")
        for f in ("act_bits", "weight_bits"):
            require(getattr(self, f) == 8 and type(getattr(self, f)) is int,
                    f"StrassenTileConfig.{f} must be 8 (INT8 inputs), got {getattr(self, f)!r}")
        # one level of +-1 pre-adding grows both operands by one bit (nmaccel.golden.strassen.
        # strassen_bit_growth derives it from the coefficients; tests check they agree)
        arr = ArrayConfig(rows=self.rows, cols=self.cols, n_max=self.n_max, m_max=max(2, self.n_max),
                          modes=("int8",), act_bits=self.act_bits + 1,
                          weight_bits=self.weight_bits + 1, double_buffer=True,
                          pipeline_mux=self.pipeline_mux, pipeline_product=self.pipeline_product)
        object.__setattr__(self, "array", arr)
        comb = StrassenConfig(act_bits=self.act_bits, product_bits=arr.acc_bits)
        require(comb.operand_bits == arr.act_bits, "pre-adder and array operand widths disagree")
        object.__setattr__(self, "combiner", comb)

    @property
    def lanes(self):
        """Activations of one quadrant row: K elements of one block."""
        return self.rows * self.n_max

    @property
    def comb_bits(self):
        return self.combiner.acc_bits

    @property
    def idx_bits(self):
        return ubits(max(N_PRODUCTS, N_PLAIN_PRODUCTS) - 1)

    @property
    def tok_bits(self):
        return ubits(self.t_max - 1)

    @property
    def latency(self):
        """Cycles from a quadrant row on a*_in to its product on the combiner input."""
        return PREADD_LATENCY + self.array.latency
