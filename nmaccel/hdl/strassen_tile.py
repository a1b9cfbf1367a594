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
Golden twin: `nmaccel.golden.strassen_tile` (outputs and cycle formula); simulation driver:
`nmaccel.run.strassen_tile`; configuration: `nmaccel.arch.config.StrassenTileConfig`.
Cost: the array's multipliers grow from 8x8 to 9x9 bits (still one DSP each); where Strassen
does not pay (N:M structure and INT4 range of the pre-added weights) see
`nmaccel.golden.strassen.strassen_bit_growth` and `nmaccel.pack.strassen.strassen_nm_report`.
"""
import pyrtl

from nmaccel.arch.config import MODE_CODE, N_PRODUCTS, PLAIN_A, PLAIN_C, PREADD_LATENCY
from nmaccel.arch.layout import block_row_layout, quad_row_layout, window_layout
from nmaccel.hdl.array import Bundle, make_systolic_array
from nmaccel.hdl.signed import delay, join, make_io_top, sadd, sext
from nmaccel.hdl.strassen import make_strassen_combiner, make_strassen_preadd

QUADS = ("11", "12", "21", "22")


def input_widths(cfg):
    a = cfg.array
    w = {"cfg_load": 1, "cfg_strassen": 1, "w_load": 1, "w_swap": 1, "in_valid": 1,
         "prod_idx": cfg.idx_bits, "first": 1, "tok": cfg.tok_bits}
    for c in range(a.cols):
        w[f"w_in_{c}"] = a.w_bits
    for q in QUADS:
        w[f"a{q}_in"] = quad_row_layout(cfg).bits
    return w


def output_widths(cfg):
    w = {"out_valid": 1}
    for q in QUADS:
        for i in range(cfg.t_max):
            w[f"c{q}_out_{i}"] = block_row_layout(cfg).bits
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
    quad_row, block_row = quad_row_layout(cfg), block_row_layout(cfg)
    quads = [quad_row.split(ins[f"a{q}_in"])["x"] for q in QUADS]
    pre = make_strassen_preadd(f"{name}.pre", cfg.combiner, *quads)
    idx_pre = delay(ins["prod_idx"], PREADD_LATENCY, f"{name}.idx_pre")
    ops = []
    for lane in range(cfg.lanes):
        plain = delay(pyrtl.mux(ins["prod_idx"], *[sext(quads[q][lane], ob) for q in PLAIN_A]),
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
    window = window_layout(A)                    # INT8 only: one token per element
    for r in range(A.rows):
        arr_ins[f"x_in_{r}"] = join(window, elem=[{"tok": [v]} for v in ops[r * A.n_max:(r + 1) * A.n_max] + pad])
    arr = make_systolic_array(f"{name}.arr", A, arr_ins)

    lat = cfg.latency
    idx_o = delay(ins["prod_idx"], lat, f"{name}.idx_o")
    first_o = delay(ins["first"], lat, f"{name}.first_o")
    tok_o = delay(ins["tok"], lat, f"{name}.tok_o")
    valid_o = arr.outputs["out_valid"]
    prods = [arr.outputs[f"y_out_{c}"] for c in range(A.cols)]
    blk_o = pyrtl.mux(idx_o, *[pyrtl.Const(j, bitwidth=2) for j in PLAIN_C])
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
            outputs[f"c{q}_out_{i}"] = join(block_row, y=words)
    return Bundle(inputs=ins, outputs=outputs, array=arr, preadd=pre, combiners=combiners,
                  strassen=st, latency=lat)


def make_strassen_tile_top(cfg, name="stile"):
    """The tile as a top level: pyrtl.Input / pyrtl.Output ports named as in input/output_widths."""
    return make_io_top(make_strassen_tile, name, cfg, input_widths(cfg), output_widths(cfg))
