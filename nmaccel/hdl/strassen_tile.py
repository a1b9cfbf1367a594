"""Strassen block mode on the systolic array: 7 block products instead of 8, runtime on/off.

`make_strassen_tile` computes y = x @ w.T for x (2t, 2k), w (2n, 2k) (zero-padded from odd
shapes) split into 2x2 blocks. The block products stream one after another through ONE
double-buffered, INT8-mode array with 9-bit operands (dense, window n_max):
- Strassen on: 7 products M_i; activations are the pre-added quadrants of
  `make_strassen_preadd` (INT8 -> 9 bits, in hardware), weights the pre-added weight blocks of
  `nmaccel.pack.strassen.strassen_weight_blocks` (9 bits, loaded per product), and
  `make_strassen_combiner` accumulates each product row into C11, C12, C21, C22 with the
  C_COEF signs.
- Strassen off: the 8 plain block products (golden PLAIN_A / PLAIN_W / PLAIN_C) on the same
  hardware: the activation mux passes one quadrant and a plain accumulator adds the product
  to its block. So cycles of both modes compare on identical hardware.
Both keep one accumulator row per token row (t_max rows), since products stream
product-major (weight-stationary) and every token row collects all products.
Golden twin: `nmaccel.golden.strassen_tile` (outputs and cycle formula).
Cost: the array's multipliers grow from 8x8 to 9x9 bits (still one DSP each); where Strassen
does not pay (N:M structure and INT4 range of the pre-added weights) see
`nmaccel.golden.strassen.strassen_bit_growth` and `nmaccel.pack.strassen.strassen_nm_report`.
"""
import time
from dataclasses import dataclass, field

import numpy as np
import pyrtl

from nmaccel.errors import require
from nmaccel.golden import blocks as gb
from nmaccel.golden import strassen_tile as gst
from nmaccel.golden.gemm import check_activations
from nmaccel.golden.strassen import strassen_bit_growth
from nmaccel.hdl.array import Bundle, make_systolic_array
from nmaccel.arch.config import MODE_CODE, ArrayConfig, ubits
from nmaccel.hdl.signed import delay, fields, make_io_top, sadd, sext
from nmaccel.hdl.strassen import (COMBINER_LATENCY, N_PRODUCTS, PREADD_LATENCY, StrassenConfig,
                                  make_strassen_combiner, make_strassen_preadd)
from nmaccel.pack.strassen import pad_to, padded_shape, quadrants

QUADS = ("11", "12", "21", "22")
SIMULATORS = ("fast", "python")
assert PREADD_LATENCY == gst.PREADD_LATENCY and COMBINER_LATENCY == gst.COMBINER_LATENCY


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
        g = strassen_bit_growth(self.act_bits, self.weight_bits)
        arr = ArrayConfig(rows=self.rows, cols=self.cols, n_max=self.n_max, m_max=max(2, self.n_max),
                          modes=("int8",), act_bits=g["act_operand_bits"],
                          weight_bits=g["w_operand_bits"], double_buffer=True,
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
        return ubits(max(N_PRODUCTS, len(gst.PLAIN_A)) - 1)

    @property
    def tok_bits(self):
        return ubits(self.t_max - 1)

    @property
    def latency(self):
        """Cycles from a quadrant row on a*_in to its product on the combiner input."""
        return PREADD_LATENCY + self.array.latency


def input_widths(cfg):
    a = cfg.array
    w = {"cfg_load": 1, "cfg_strassen": 1, "w_load": 1, "w_swap": 1, "in_valid": 1,
         "prod_idx": cfg.idx_bits, "first": 1, "tok": cfg.tok_bits}
    for c in range(a.cols):
        w[f"w_in_{c}"] = a.w_bits
    for q in QUADS:
        w[f"a{q}_in"] = cfg.lanes * cfg.act_bits
    return w


def output_widths(cfg):
    w = {"out_valid": 1}
    for q in QUADS:
        for i in range(cfg.t_max):
            w[f"c{q}_out_{i}"] = cfg.array.cols * cfg.comb_bits
    return w


def make_strassen_tile(name, cfg, inputs=None):
    """2x2-blocked y = x @ w.T as 7 (Strassen) or 8 (plain) block products on one array.

    Ports (`inputs`: dict name -> wire; missing ones become `{name}.{port}` wires): see
    `input_widths` / `output_widths`.
    - `cfg_load` high loads `cfg_strassen` (1: Strassen, 0: plain) and the array's runtime
      registers (INT8 mode, dense n_max:n_max).
    - `w_load`, `w_swap`, `w_in_c`: the array's weight ports (make_systolic_array), carrying the
      weight operand of each product (9-bit codes, PE(r, c) lane l = operand[c, r * n_max + l]).
    - A step: `in_valid`, `prod_idx` (product 0..6 / 0..7), `first` (high on the steps of the
      first product: starts new sums), `tok` (token row i < t_max) and the four quadrant rows
      `a11_in` .. `a22_in` (rows * n_max INT8 lanes, lane 0 in the LSBs). A step enters the
      array PREADD_LATENCY cycles later as array step (w_swap refers to array steps).
    - Outputs `cXY_out_i`: block CXY of token row i, cols signed comb_bits fields (column 0
      in the LSBs), COMBINER_LATENCY after the product's `out_valid` (array products leaving).
    Latency step -> combiner input: `cfg.latency`. Returns a bundle: inputs, outputs, array,
    preadd, combiners, strassen (runtime register).
    """
    A = cfg.array
    ins = dict(inputs or {})
    for port, width in input_widths(cfg).items():
        if port not in ins:
            ins[port] = pyrtl.WireVector(width, name=f"{name}.{port}")
    st = pyrtl.Register(1, name=f"{name}.strassen")
    st.next <<= pyrtl.select(ins["cfg_load"], ins["cfg_strassen"], st)

    ob = A.act_bits
    quads = [fields(ins[f"a{q}_in"], cfg.act_bits, cfg.lanes) for q in QUADS]
    pre = make_strassen_preadd(f"{name}.pre", cfg.combiner, *quads)
    idx_pre = delay(ins["prod_idx"], PREADD_LATENCY, f"{name}.idx_pre")
    ops = []
    for lane in range(cfg.lanes):
        plain = delay(pyrtl.mux(ins["prod_idx"], *[sext(quads[q][lane], ob) for q in gst.PLAIN_A]),
                      PREADD_LATENCY, f"{name}.plain{lane}")
        s_op = pyrtl.mux(idx_pre, *[pre.operands[i][lane] for i in range(N_PRODUCTS)],
                         default=pyrtl.Const(0, bitwidth=ob))
        op = pyrtl.WireVector(ob, name=f"{name}.op{lane}")
        op <<= pyrtl.select(st, s_op, plain)
        ops.append(op)
    pad = [pyrtl.Const(0, bitwidth=ob)] * (A.m_max - A.n_max)
    arr_ins = {"cfg_load": ins["cfg_load"],
               "cfg_mode": pyrtl.Const(MODE_CODE["int8"], bitwidth=A.mode_bits),
               "cfg_n_keep": pyrtl.Const(A.n_max, bitwidth=A.nk_bits),
               "cfg_m_group": pyrtl.Const(A.n_max, bitwidth=A.mg_bits),
               "w_load": ins["w_load"], "w_swap": ins["w_swap"],
               "in_valid": delay(ins["in_valid"], PREADD_LATENCY, f"{name}.valid_pre")}
    for c in range(A.cols):
        arr_ins[f"w_in_{c}"] = ins[f"w_in_{c}"]
    for r in range(A.rows):
        arr_ins[f"x_in_{r}"] = pyrtl.concat_list(ops[r * A.n_max:(r + 1) * A.n_max] + pad)
    arr = make_systolic_array(f"{name}.arr", A, arr_ins)

    lat = cfg.latency
    idx_o = delay(ins["prod_idx"], lat, f"{name}.idx_o")
    first_o = delay(ins["first"], lat, f"{name}.first_o")
    tok_o = delay(ins["tok"], lat, f"{name}.tok_o")
    valid_o = arr.outputs["out_valid"]
    prods = [arr.outputs[f"y_out_{c}"] for c in range(A.cols)]
    blk_o = pyrtl.mux(idx_o, *[pyrtl.Const(j, bitwidth=2) for j in gst.PLAIN_C])
    cb = cfg.comb_bits
    zero = pyrtl.Const(0, bitwidth=cb)
    outputs = {"out_valid": valid_o}
    combiners = []
    for i in range(cfg.t_max):
        hit = valid_o & (tok_o == i)
        comb = make_strassen_combiner(f"{name}.comb{i}", cfg.combiner, prods, idx_o, hit & st, first_o)
        combiners.append(comb)
        for j, q in enumerate(QUADS):
            words = []
            for c in range(A.cols):
                acc = pyrtl.Register(cb, name=f"{name}.plain{i}.c{q}_{c}")
                base = pyrtl.select(first_o, zero, acc)
                nxt = pyrtl.select(blk_o == j, sadd(base, prods[c], cb), base)
                acc.next <<= pyrtl.select(hit & ~st, nxt, acc)
                words.append(pyrtl.select(st, comb.blocks[j][c], acc))
            outputs[f"c{q}_out_{i}"] = pyrtl.concat_list(words)
    return Bundle(inputs=ins, outputs=outputs, array=arr, preadd=pre, combiners=combiners,
                  strassen=st, latency=lat)


def make_strassen_tile_top(cfg, name="stile"):
    """The tile as a top level: pyrtl.Input / pyrtl.Output ports named as in input/output_widths."""
    return make_io_top(make_strassen_tile, name, cfg, input_widths(cfg), output_widths(cfg))


# ---- simulation driver ---------------------------------------------------------------------
@dataclass
class StrassenTileResult:
    outputs: np.ndarray     # int64 (T, out)
    cycles: int             # measured: last product into the combiner + COMBINER_LATENCY
    products: int
    strassen: bool
    cycles_per_second: float


def _pack(vals, width):
    v = 0
    for i, x in enumerate(vals):
        v |= (int(x) & ((1 << width) - 1)) << (width * i)
    return v


def tile_stream(cfg, x, w, strassen):
    """Per-cycle input values {port: [int] * cycles} of one job, and (t, k, n, ncyc).

    Schedule: golden `tile_schedule` of P back-to-back array tiles of t steps; quadrant rows
    go in PREADD_LATENCY cycles before their array step.
    """
    A = cfg.array
    t, k, n = gst.check_fits(cfg, x.shape, w.shape)
    ops = gst.operands(x, w, strassen)
    ls, ss, total = gb.tile_schedule(A, [t] * len(ops))
    ncyc = total + COMBINER_LATENCY
    s = {p: [0] * ncyc for p in input_widths(cfg)}
    s["cfg_load"][0], s["cfg_strassen"][0] = 1, int(strassen)
    xq = quadrants(pad_to(np.asarray(x, dtype=np.int64), padded_shape(x.shape, 1)))
    lane_bits = A.lane_load_bits
    for j, (_, wop, _) in enumerate(ops):
        plan = gst.block_plan(cfg, wop)
        lane = ((plan.codes & ((1 << A.weight_bits) - 1)) | (plan.index << A.weight_bits)
                | (plan.keep.astype(np.int64) << (A.weight_bits + A.idx_bits)))
        for i in range(A.rows):
            cyc = ls[j] + i
            s["w_load"][cyc] = 1
            for c in range(A.cols):
                s[f"w_in_{c}"][cyc] = _pack(lane[A.rows - 1 - i, c], lane_bits)
        s["w_swap"][ss[j] - 1] = 1
        for i in range(t):
            cyc = ss[j] + i - PREADD_LATENCY
            assert s["in_valid"][cyc] == 0
            s["in_valid"][cyc], s["prod_idx"][cyc], s["tok"][cyc] = 1, j, i
            s["first"][cyc] = int(j == 0)
            for q, blk in zip(QUADS, xq):
                row = np.zeros(cfg.lanes, dtype=np.int64)
                row[:k] = blk[i]
                s[f"a{q}_in"][cyc] = _pack(row, cfg.act_bits)
    return s, (t, k, n, ncyc)


_CACHE = {}


def _simulator(cfg, simulator):
    require(simulator in SIMULATORS, f"unknown simulator {simulator!r}: use one of {SIMULATORS}")
    key = (cfg, simulator)
    if key not in _CACHE:
        block = pyrtl.Block()
        with pyrtl.set_working_block(block):
            make_strassen_tile_top(cfg)
        _CACHE.clear()      # one elaborated tile at a time
        _CACHE[key] = (block, pyrtl.FastSimulation if simulator == "fast" else pyrtl.Simulation)
    return _CACHE[key]


def _signed(v, bits):
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


def run_strassen_tile(x_q, w_int, cfg, *, strassen=True, simulator="fast"):
    """Simulate one job y = x_q @ w_int.T on the tile; same hardware for strassen on and off.

    x_q: INT8 (T, K); w_int: INT8 integer weights (out, K) (e.g. `PackedWeights.int_weights()`).
    Returns a StrassenTileResult (outputs int64 (T, out), measured cycles).
    """
    require(isinstance(cfg, StrassenTileConfig),
            f"cfg must be a StrassenTileConfig, got {type(cfg).__name__}")
    w = np.asarray(w_int)
    require(w.ndim == 2 and w.dtype.kind in "iu", "w_int must be a 2-D integer array (out, K): quantize first")
    lo, hi = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    require(w.size == 0 or (int(w.min()) >= lo and int(w.max()) <= hi),
            f"weights span [{w.min()}, {w.max()}], outside INT{cfg.weight_bits} [{lo}, {hi}]: "
            "use 8-bit symmetric quantization")
    x = check_activations(x_q, w.shape[1], cfg.act_bits)
    stream, (t, k, n, ncyc) = tile_stream(cfg, x, w.astype(np.int64), strassen)
    block, cls = _simulator(cfg, simulator)
    with pyrtl.set_working_block(block):
        tracer = pyrtl.SimulationTrace(
            wires_to_track=list(block.wirevector_subset(pyrtl.Output)), block=block)
        sim = cls(tracer=tracer, block=block)
        names = list(stream)
        t0 = time.perf_counter()
        valid = []
        for cyc in range(ncyc):
            sim.step({p: stream[p][cyc] for p in names})
            valid.append(sim.inspect("out_valid"))
        dt = time.perf_counter() - t0
        blocks = []
        cb = cfg.comb_bits
        for q in QUADS:
            rows = []
            for i in range(t):
                v = sim.inspect(f"c{q}_out_{i}")
                rows.append([_signed(v >> (c * cb), cb) for c in range(n)])
            blocks.append(np.array(rows, dtype=np.int64).reshape(t, n))
    on = np.nonzero(valid)[0]
    require(on.size > 0, "the tile produced no products")
    cycles = int(on[-1]) + 1 + COMBINER_LATENCY
    y = np.block([[blocks[0], blocks[1]], [blocks[2], blocks[3]]])
    return StrassenTileResult(outputs=y[:x.shape[0], :w.shape[0]], cycles=cycles,
                              products=gst.n_products(strassen), strassen=bool(strassen),
                              cycles_per_second=ncyc / dt if dt > 0 else float("inf"))
