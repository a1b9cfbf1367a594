"""Weight-stationary N:M systolic array (rows x cols PEs) and its runtime register bundle."""
import pyrtl

from nmaccel.arch.config import MODE_CODE
from nmaccel.arch.layout import pe_store_layout, pe_word_layout
from nmaccel.hdl.codebook import make_codebook_decoder
from nmaccel.hdl.pe import make_pe
from nmaccel.hdl.signed import delay, join, make_io_top


class Bundle:
    """Attribute bag returned by make_* functions."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def input_widths(cfg):
    """Name -> width of every array input (Verilog-facing snake_case names)."""
    w = {"cfg_load": 1, "cfg_mode": cfg.mode_bits, "cfg_n_keep": cfg.nk_bits,
         "cfg_m_group": cfg.mg_bits, "w_load": 1, "in_valid": 1}
    if cfg.double_buffer:
        w["w_swap"] = 1
    for c in range(cfg.cols):
        w[f"w_in_{c}"] = cfg.w_bits
    if cfg.has_codebook:
        w["cb_load"] = 1
        for c in range(cfg.cols):
            w[f"cb_in_{c}"] = cfg.cb_bits_total
    for r in range(cfg.rows):
        w[f"x_in_{r}"] = cfg.x_bits
    return w


def output_widths(cfg):
    w = {"out_valid": 1}
    for c in range(cfg.cols):
        w[f"y_out_{c}"] = cfg.acc_bits
        if cfg.has_int4:
            w[f"y_out_b_{c}"] = cfg.acc_bits
    return w


def make_runtime_config(name, cfg, load, mode, n_keep, m_group):
    """Runtime register bundle (Gemmini PEControl style): mode, n_keep, m_group.

    Registers take mode / n_keep / m_group on a cycle with `load` high. Derived wires:
    `int4` (mode == INT4), `codebook` (mode == codebook), `dense` (n_keep == m_group).
    """
    regs = {}
    for key, src in (("mode", mode), ("n_keep", n_keep), ("m_group", m_group)):
        r = pyrtl.Register(len(src), name=f"{name}.{key}")
        r.next <<= pyrtl.select(load, src, r)
        regs[key] = r
    int4 = regs["mode"] == MODE_CODE["int4"]
    codebook = regs["mode"] == MODE_CODE["codebook"]
    dense = regs["n_keep"] == regs["m_group"]
    return Bundle(int4=int4, codebook=codebook, dense=dense, **regs)


def make_systolic_array(name, cfg, inputs=None, with_valid=True):
    """Weight-stationary rows x cols array of N:M PEs.

    Dataflow: PE(r, c) holds, for output column c (INT8 / codebook) and window r of K (window =
    g * m_group activations, g = min(n_max // n_keep, m_max // m_group) groups), up to n_max
    kept weights with window-local indices; unused lanes hold weight 0. Activation windows enter
    row r from the left and move one PE right per cycle; partial sums move one PE down per cycle.
    INT4 mode carries two tokens per step (see nmaccel.hdl.pe) and returns token B on y_out_b_*.

    Ports (`inputs`: dict name -> wire; missing ones are created as `{name}.{port}` wires to
    drive): see `input_widths` / `output_widths`.
    - Runtime config: a cycle with `cfg_load` high loads cfg_mode / cfg_n_keep / cfg_m_group.
    - Weights: while `w_load` is high the stored lane words shift one row down per cycle; the
      word on `w_in_c` enters row 0 of column c after decode (lane fields: weight code in bits
      [0, weight_bits), index, keep bit on top; keep=0 stores weight 0; codebook mode maps the code through
      column c's LUT, loaded from `cb_in_c` when `cb_load` is high, usable in that same cycle).
      Loading rows R-1 .. 0 takes `rows` cycles, and must not overlap compute unless
      cfg.double_buffer: then loading fills shadow registers, and `w_swap` high on cycle s
      (normally with the last step of the previous tile, or the last load cycle) makes PE(r, c)
      use the new weights from cycle s + r + c + 1 on, i.e. from the step after the one issued
      with w_swap. The next load may start at cycle s + rows + cols - 1 (when the swap has
      reached PE(rows-1, cols-1)). Runtime config registers are shared: back-to-back tiles use
      one mode and N:M.
    - Compute: step i on x_in_0 .. x_in_{rows-1} at cycle i (row r: K window r; element k =
      activation k of token A in bits [16k, 16k+8), token B in [16k+8, 16k+16) in INT4 builds).
      Skew: row r is delayed r cycles inside, so PE(r, c) sees
      step i at cycle i + r + c, its psum register holds it at i + r + c + 1 + pipeline_stages,
      and output de-skew (column c delayed cols - 1 - c) puts all y_out_* of step i at cycle
      i + latency, latency = rows + cols - 1 + pipeline_stages, with out_valid = in_valid
      delayed by latency.
    Returns a bundle: `inputs`, `outputs` (name -> wire), `pes` (grid), `rt`, `latency`.
    """
    widths = input_widths(cfg)
    if not with_valid:
        widths.pop("in_valid")
    inputs = dict(inputs or {})
    for port, width in widths.items():
        if port not in inputs:
            inputs[port] = pyrtl.WireVector(width, name=f"{name}.{port}")
    ins = inputs
    rt = make_runtime_config(f"{name}.rt", cfg, ins["cfg_load"], ins["cfg_mode"],
                             ins["cfg_n_keep"], ins["cfg_m_group"])

    pe_word, store = pe_word_layout(cfg), pe_store_layout(cfg)
    top_words = []
    for c in range(cfg.cols):
        lanes = pe_word.split(ins[f"w_in_{c}"])["lane"]         # nmaccel.arch.layout.lane_layout
        codes, idxs, keeps = ([ln[k] for ln in lanes] for k in ("code", "index", "keep"))
        if cfg.has_codebook:
            cb = make_codebook_decoder(f"{name}.cb{c}", cfg, ins["cb_load"], ins[f"cb_in_{c}"], codes)
            vals = [pyrtl.select(rt.codebook, v, code) for v, code in zip(cb.values, codes)]
        else:
            vals = codes
        stored = [{"weight": pyrtl.select(keep, v, pyrtl.Const(0, bitwidth=cfg.weight_bits)), "index": idx}
                  for keep, idx, v in zip(keeps, idxs, vals)]
        top = pyrtl.WireVector(store.bits, name=f"{name}.wtop{c}")
        top <<= join(store, lane=stored)                        # nmaccel.arch.layout.pe_store_layout
        top_words.append(top)

    zero = pyrtl.Const(0, bitwidth=cfg.acc_bits)
    pes = [[None] * cfg.cols for _ in range(cfg.rows)]
    for r in range(cfg.rows):
        x = delay(ins[f"x_in_{r}"], r, f"{name}.skew{r}")
        swap = delay(ins["w_swap"], r, f"{name}.swapskew{r}") if cfg.double_buffer else None
        for c in range(cfg.cols):
            up = pes[r - 1][c] if r else None
            pe = make_pe(f"{name}.pe_{r}_{c}", cfg, rt,
                         x_in=x if c == 0 else pes[r][c - 1].x_out,
                         psum_in=up.psum_out if up else [zero] * cfg.tokens_per_step,
                         w_in=up.w_out if up else top_words[c],
                         w_load=ins["w_load"],
                         swap_in=swap if c == 0 else pes[r][c - 1].swap_out,
                         forward=c < cfg.cols - 1)
            pes[r][c] = pe

    outputs = {}
    if with_valid:   # a parent that tracks validity itself passes with_valid=False
        outputs["out_valid"] = delay(ins["in_valid"], cfg.latency, f"{name}.valid")
    for c in range(cfg.cols):
        bottom = pes[cfg.rows - 1][c].psum_out
        outputs[f"y_out_{c}"] = delay(bottom[0], cfg.cols - 1 - c, f"{name}.deskew{c}")
        if cfg.has_int4:
            outputs[f"y_out_b_{c}"] = delay(bottom[1], cfg.cols - 1 - c, f"{name}.deskew_b{c}")
    return Bundle(inputs=inputs, outputs=outputs, pes=pes, rt=rt, latency=cfg.latency)


def make_array_top(cfg, name="array"):
    """Array as a top level: pyrtl.Input / pyrtl.Output ports named as in input/output_widths."""
    return make_io_top(make_systolic_array, name, cfg, input_widths(cfg), output_widths(cfg))
