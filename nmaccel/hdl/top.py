"""Accelerator top: host word stream in, tiled N:M GEMM on the systolic array, fused epilogue,
result word stream out. Golden twin: `nmaccel.golden.top`; cycle model: `nmaccel.golden.cyclemodel`.

Ports (Verilog-facing): `in_data` (host_bits), `in_valid`, `in_ready`, `out_data` (host_bits),
`out_valid`, `out_ready`, `busy`. A 64-bit host needs 2 * 64 + 5 pins plus clock and reset.

Host stream (one job; every record is a bit string sent LSB-first in ceil(bits / host_bits)
words, record i's word w = bits [w*H, w*H+H); each record's fields are its table in
nmaccel.arch.layout, which the top reads through `split` / `slice` and writes through
nmaccel.hdl.signed.join):

=========  ======================================================  ===========================
record     fields (LSB first)                                      count, order
=========  ======================================================  ===========================
header     mode, n_keep, m_group, relu, raw, n_steps, n_kt, n_nt   1
           (+ kt_per_group on group-scale tops)
act        token A: rows x m_max INT8 (row r element k at          n_kt * n_steps (kt-major)
           byte r*m_max+k); token B likewise (INT4 mode only)
weight     w_in_0 .. w_in_{cols-1}, then cb_in_0 .. cb_in_{cols-1}  rows per (N tile, K tile),
           (codebook mode only) of one array load cycle            array row rows-1 first
gs         per column: group multiplier (gs_mult_bits, unsigned)    group-scale tops: after the
                                                                   weights of every K tile
                                                                   ending a scale group
epilogue   per column: mult, shift, bias                           after the weights (and gs)
                                                                   of an N tile's last K tile
=========  ======================================================  ===========================

Order: header, acts, then for nt in N tiles: for kt in K tiles: weights (+ gs at a group end)
(+ epilogue if last kt). Output: per N tile, n_steps records of cols * tokens_per_step fields of
raw_bits (token A's columns first), sent after the N tile's last K tile (raw: saturate to
raw_bits of sum + bias, relu optional; scaled: the INT8 epilogue). A new header is accepted
once the last word is out. Tokens beyond t_max steps: the host sends another job.

Blocks (one file each, composed here): hdl/loader.py (host records -> config registers, buffer
writes, staging banks), hdl/streamer.py (weight loader, step streamer, activation and weight
staging buffers, array inputs), hdl/array.py (the systolic array), hdl/accumulator.py (sums
across K tiles, group scales, epilogue lanes), hdl/serializer.py (output buffer, result words),
hdl/controller.py (job state, handshakes between the blocks); the bundles they pass: hdl/regs.py.

Pipeline: the input side fills two weight staging banks (bank b + 1 fills while bank b is read).
The weight loader (hdl/streamer.py, `ld.*`) reads a full bank into the array in `rows` shift
cycles; with TopConfig.double_buffer (default) they go into the PEs' shadow registers while the
previous K tile streams, and the streamer swaps them in (w_swap) with that tile's last step, so K
tiles stream back to back (a tile every max(n_steps, 2 * rows + cols - 2) cycles: after a swap the
shadow may shift again only once the swap has reached the last PE). Without it (single weight
register) the weight loader waits until the previous tile's last step has drained through the
skewed array. A last K tile starts only when the output buffer is free. Array outputs accumulate in
the accumulator buffer (first K tile writes, later tiles add); the last K tile's sums go through
`cols * tokens_per_step` epilogues into the output buffer, streamed out afterwards. Group-scale
tops (TopConfig.group_scales) keep the accumulator per scale group (partial sum P) and at a group's
last K tile add P * m[c] (exact, m unsigned from the gs record) into a second `sum_bits` buffer:
golden nmaccel.golden.groupscale.group_scaled_gemm, stage by stage. Buffers use the
registered-read-data pattern of nmaccel.hdl.buffers (block RAM on ECP5/xc7): the activation buffer
is single-port (make_buffer) with its address, write data and write enable in registers (no logic
in front of the block RAM; TopConfig.out_latency counts the extra cycle, and every other array
input goes through one register to stay aligned with the activations); the accumulator / output
buffers have one write and one registered read port (make_dual_port_buffer); the rows-deep weight
staging buffer is small enough that Yosys keeps it in LUT RAM. The streamer keeps its step-end flag
(`s.last_step`) in a register. Resources of the product top (nmaccel.arch.config.PRODUCT_ARRAY /
PRODUCT_TOP) on the ECP5-85k: benchmarks/results/fpga_study.json;
`nmaccel.verilog.synth.fit_estimate` refuses a top that cannot fit before synthesis.
"""
import pyrtl

from nmaccel.arch.config import TopConfig
from nmaccel.errors import require
from nmaccel.hdl.accumulator import make_accumulator
from nmaccel.hdl.array import Bundle, make_systolic_array
from nmaccel.hdl.controller import make_controller
from nmaccel.hdl.loader import make_loader
from nmaccel.hdl.regs import HostIn, make_job_regs
from nmaccel.hdl.serializer import make_serializer
from nmaccel.hdl.signed import make_io_top
from nmaccel.hdl.streamer import make_streamer


def top_input_widths(cfg):
    return {"in_data": cfg.host_bits, "in_valid": 1, "out_ready": 1}


def top_output_widths(cfg):
    return {"in_ready": 1, "out_data": cfg.host_bits, "out_valid": 1, "busy": 1}


def make_accelerator_top(name, cfg, inputs=None):
    """The accelerator top (see the module docstring for the stream protocol).

    Ports: `inputs` dict with in_data / in_valid / out_ready (created as `{name}.{port}` wires
    when missing). Returns a bundle: `inputs`, `outputs` (in_ready, out_data, out_valid, busy),
    `array` (the systolic array bundle), `job_done`, `fire`, `accept`, `swap`. Latency: a
    step's activation read address to its output-buffer write is TopConfig.out_latency; cycle
    count of a job: nmaccel.golden.cyclemodel.
    """
    require(isinstance(cfg, TopConfig), f"cfg must be a TopConfig, got {type(cfg).__name__}")
    ins = dict(inputs or {})
    for port, w in top_input_widths(cfg).items():
        if port not in ins:
            ins[port] = pyrtl.WireVector(w, name=f"{name}.{port}")
    host = HostIn(in_data=ins["in_data"], in_valid=ins["in_valid"], out_ready=ins["out_ready"])
    job = make_job_regs(name)
    ld = make_loader(name, cfg, host, job)
    st = make_streamer(name, cfg, ld, job)
    arr = make_systolic_array(f"{name}.array", cfg.core_array, st.arr_in, with_valid=False)
    res = make_accumulator(name, cfg, arr, st, ld.cfg)
    ser = make_serializer(name, cfg, host.out_ready, res, ld)
    make_controller(job, ld, st, ser)
    outputs = {"in_ready": ld.in_ready, "out_data": ser.out_data, "out_valid": ser.out_valid,
               "busy": job.active}
    return Bundle(inputs=ins, outputs=outputs, array=arr, job_done=ser.job_done, fire=st.fire,
                  accept=ld.accept, swap=st.swap)


def make_top_ports(cfg, name="top"):
    """The accelerator as a top level: pyrtl.Input / pyrtl.Output ports, snake_case names."""
    return make_io_top(make_accelerator_top, name, cfg, top_input_widths(cfg), top_output_widths(cfg))
