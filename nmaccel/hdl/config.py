"""Elaboration parameters (ArrayConfig) and runtime configuration (RuntimeConfig) of the core.

Elaboration fixes the hardware (array size, lanes, largest group, widths); the runtime
configuration (mode, n_keep, m_group) is a register bundle loaded before a job, so switching
between INT8 / INT4 / codebook and any N:M with n_keep <= n_max, m_group <= m_max needs no
re-elaboration.
"""
from dataclasses import dataclass

from nmaccel.errors import require

MODES = ("int8", "int4", "codebook")
MODE_CODE = {"int8": 0, "int4": 1, "codebook": 2}
OPERAND_BITS = (8, 9)   # 9: one bit of Strassen pre-add growth (nmaccel.hdl.strassen_tile)


def _bits_for(n):
    """Unsigned bits needed to hold 0 .. n (at least 1)."""
    return max(1, int(n).bit_length())


def window_groups(n_keep, m_group, n_max, m_max):
    """N:M groups one PE covers per cycle: as many as fit in n_max lanes and m_max activations."""
    return min(n_max // n_keep, m_max // m_group)


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
        """Signed bits holding any sum of k act x weight products (worst case both most negative)."""
        max_mag = k * (1 << (self.act_bits - 1)) * (1 << (self.weight_bits - 1))
        return _bits_for(max_mag) + 1

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
        return _bits_for(self.m_max - 1)

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
        return _bits_for(len(MODES) - 1)

    @property
    def nk_bits(self):
        return _bits_for(self.n_max)

    @property
    def mg_bits(self):
        return _bits_for(self.m_max)

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


# ---- the product tops (ECP5-85k, LFE5U-85F CABGA381) -------------------------------------------
# Sized by nmaccel.synth.fit_estimate: DSP = rows * cols * n_max lanes (one MULT18X18D each) +
# 2 per epilogue lane (cols * tokens_per_step); 156 MULT18X18D on the device.
PRODUCT_ARRAY = ArrayConfig(rows=8, cols=4, n_max=4, m_max=8, modes=("int8", "int4"),
                            **pipeline_options(True))
"""The product top's array: every runtime mode (INT8 / INT4, any N:M with n <= 4, m <= 8),
every pipeline register; 8 x 4 x 4 lanes = 128 + 16 epilogue = 144 of 156 MULT18X18D."""
DENSE_ARRAY = ArrayConfig(rows=9, cols=4, n_max=4, m_max=4, modes=("int8",), decoder=False,
                          **pipeline_options(True))
"""The dense INT8 baseline: same controller and PE pipeline, no index decoders, no INT4;
9 x 4 x 4 lanes = 144 + 8 epilogue = 152 of 156 MULT18X18D."""
PRODUCT_TOP = {"host_bits": 64, "t_max": 64, "k_tiles_max": 32}
"""TopConfig parameters of the product and dense tops: a 64-bit host (2 * 64 + 5 IOs + clock of
the package's 205), 64 array steps per job, 32 K tiles of activations buffered per job."""
