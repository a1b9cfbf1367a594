"""Host stream interface: RTL decodes the documented word format exactly, under random
valid gaps and back-pressure; the serializer round-trips words without bubbles."""

import numpy as np
import pyrtl
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.hdl.buffers import make_buffer
from nmaccel.hdl.hostif import (HOSTIF_WRITE_LATENCY, HostIfConfig, encode_config,
                                encode_header, encode_read, encode_start, encode_write,
                                make_host_stream_in, read_stream_cycles,
                                make_host_stream_out, OP_NOP,
                                write_stream_words)

CONFIGS = {
    "w32_m64": HostIfConfig(),
    "w16_m40": HostIfConfig(width=16, mem_word_bits=40, mem_addr_bits=6, n_targets=3,
                            n_cfg_regs=5, cfg_bits=12),
    "w32_m24": HostIfConfig(width=32, mem_word_bits=24, mem_addr_bits=8, n_targets=2,
                            n_cfg_regs=2, cfg_bits=32),
    "w8_m32": HostIfConfig(width=8, mem_word_bits=32, mem_addr_bits=4, n_targets=2,
                           n_cfg_regs=2, cfg_bits=8),
}


def _rand_bits(rng, bits):
    """Uniform random unsigned int of `bits` bits (any width)."""
    return int.from_bytes(rng.bytes(-(-bits // 8)), "little") & ((1 << bits) - 1)


def _random_program(cfg, rng, n_cmds):
    """(stream words, expected events): events are ('w', target, addr, data) and
    ('start', tuple(config registers))."""
    words, events = [], []
    regs = [0] * cfg.n_cfg_regs
    depth = 1 << cfg.mem_addr_bits
    for _ in range(n_cmds):
        kind = rng.choice(["config", "write", "start", "nop"], p=[0.35, 0.4, 0.15, 0.1])
        if kind == "config":
            r = int(rng.integers(0, cfg.n_cfg_regs))
            v = _rand_bits(rng, cfg.cfg_bits)
            words += encode_config(cfg, r, v)
            regs[r] = v
        elif kind == "write":
            t = int(rng.integers(0, cfg.n_targets))
            n = int(rng.integers(0, min(6, depth) + 1))
            a = int(rng.integers(0, depth - n + 1))
            data = [_rand_bits(rng, cfg.mem_word_bits) for _ in range(n)]
            data[:1] = [(1 << cfg.mem_word_bits) - 1] * min(1, n)   # all ones: top beat masking
            words += encode_write(cfg, t, a, data)
            events += [("w", t, a + i, d) for i, d in enumerate(data)]
        elif kind == "start":
            words += encode_start(cfg)
            events.append(("start", tuple(regs)))
        else:
            words.append(encode_header(cfg, OP_NOP))
    return words, events, regs


def _build_in(cfg):
    d = pyrtl.Input(cfg.width, "in_data")
    v = pyrtl.Input(1, "in_valid")
    h = pyrtl.Input(1, "hold")
    hi = make_host_stream_in("host", cfg, d, v, h)
    outs = {"in_ready": hi.in_ready, "mem_we": hi.mem_we, "mem_target": hi.mem_target,
            "mem_addr": hi.mem_addr, "mem_data": hi.mem_data, "start": hi.start}
    outs.update({f"cfg_{i}": r for i, r in enumerate(hi.cfg_regs)})
    for k, w in outs.items():
        o = pyrtl.Output(len(w), k)
        o <<= w
    return hi


def _drive(cfg, words, rng, p_valid, p_hold):
    sim = pyrtl.FastSimulation()
    events, pos, cycles = [], 0, 0
    while pos < len(words) or cycles < 3:
        valid = int(pos < len(words) and rng.random() < p_valid)
        hold = int(rng.random() < p_hold)
        sim.step({"in_data": words[pos] if pos < len(words) else 0, "in_valid": valid,
                  "hold": hold})
        if sim.inspect("mem_we"):
            events.append(("w", sim.inspect("mem_target"), sim.inspect("mem_addr"),
                           sim.inspect("mem_data")))
        if sim.inspect("start"):
            events.append(("start", tuple(sim.inspect(f"cfg_{i}")
                                          for i in range(cfg.n_cfg_regs))))
        assert sim.inspect("in_ready") == 1 - hold
        if valid and not hold:
            pos += 1
            cycles = 0
        elif pos >= len(words):
            cycles += 1
    regs = [sim.inspect(f"cfg_{i}") for i in range(cfg.n_cfg_regs)]
    return events, regs


@pytest.mark.parametrize("cfg_name,seed", [("w32_m64", 0), ("w16_m40", 1), ("w32_m24", 2),
                                           ("w8_m32", 3)])
def test_stream_in_random_program(cfg_name, seed):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(seed)
    words, want, want_regs = _random_program(cfg, rng, 60)
    _build_in(cfg)
    got, regs = _drive(cfg, words, rng, p_valid=0.7, p_hold=0.2)
    assert got == want
    assert regs == want_regs
    assert any(e[0] == "w" for e in want) and any(e[0] == "start" for e in want)


def test_stream_in_full_rate_and_latency():
    """Back-to-back words: one memory word every `beats` cycles, on mem_we one cycle later."""
    cfg = CONFIGS["w32_m64"]
    _build_in(cfg)
    data = list(range(1, 9))
    words = encode_write(cfg, 1, 5, data)
    sim = pyrtl.FastSimulation()
    we_cycles = []
    for c in range(len(words) + 2):
        sim.step({"in_data": words[c] if c < len(words) else 0, "in_valid": int(c < len(words)),
                  "hold": 0})
        if sim.inspect("mem_we"):
            we_cycles.append(c)
    # header, address, then beats: word i's last beat is stream word 2 + beats*(i+1) - 1
    want = [2 + cfg.beats * (i + 1) - 1 + HOSTIF_WRITE_LATENCY for i in range(len(data))]
    assert we_cycles == want
    assert we_cycles[-1] == write_stream_words(cfg, len(data)) - 1 + HOSTIF_WRITE_LATENCY


def test_stream_into_bram_buffer():
    """Host writes land in a BRAM buffer (hostif -> make_buffer), read back through its port."""
    cfg = CONFIGS["w16_m40"]
    hi = _build_in(cfg)
    raddr = pyrtl.Input(cfg.mem_addr_bits, "raddr")
    writing = hi.mem_we & (hi.mem_target == 2)
    buf = make_buffer("buf", 1 << cfg.mem_addr_bits, cfg.mem_word_bits,
                      addr=pyrtl.select(writing, hi.mem_addr, raddr), wdata=hi.mem_data,
                      we=writing)
    rd = pyrtl.Output(cfg.mem_word_bits, "rdata")
    rd <<= buf.rdata
    rng = np.random.default_rng(11)
    image = [_rand_bits(rng, cfg.mem_word_bits) for _ in range(1 << cfg.mem_addr_bits)]
    words = encode_write(cfg, 2, 0, image) + encode_write(cfg, 1, 3, image[:4])
    sim = pyrtl.FastSimulation()
    for w in words + [0, 0]:
        sim.step({"in_data": w, "in_valid": 1, "hold": 0, "raddr": 0})
    got = []
    for a in range(len(image) + 1):
        sim.step({"in_data": 0, "in_valid": 0, "hold": 0, "raddr": a % len(image)})
        if a:
            got.append(sim.inspect("rdata"))
    assert got == image


def test_long_write_splits_into_commands():
    cfg = HostIfConfig(width=16, mem_word_bits=16, mem_addr_bits=10, n_targets=2, n_cfg_regs=2,
                       cfg_bits=16)
    assert (cfg.op_bits, cfg.sel_bits, cfg.count_bits, cfg.beats) == (3, 1, 12, 1)
    small = HostIfConfig(width=8, mem_word_bits=8, mem_addr_bits=6, n_targets=2, n_cfg_regs=2,
                         cfg_bits=8)
    assert small.max_count == 15
    data = list(range(50))
    words = encode_write(small, 1, 10, data)
    assert len(words) == 4 * 2 + 50   # 15 + 15 + 15 + 5 words, header + address each
    for n in (0, 1, 31, 32, 62, 63, 50):
        for c in (small, CONFIGS["w16_m40"]):
            assert write_stream_words(c, n) == len(encode_write(c, 0, 0, [0] * n))
    _build_in(small)
    rng = np.random.default_rng(4)
    got, _ = _drive(small, words, rng, p_valid=0.9, p_hold=0.1)
    assert got == [("w", 1, 10 + i, d) for i, d in enumerate(data)]


def _build_out(cfg, word_bits):
    word = pyrtl.Input(word_bits, "word")
    wv = pyrtl.Input(1, "word_valid")
    ordy = pyrtl.Input(1, "out_ready")
    so = make_host_stream_out("ser", cfg, word, wv, ordy)
    for k in ("word_ready", "out_data", "out_valid"):
        o = pyrtl.Output(len(getattr(so, k)), k)
        o <<= getattr(so, k)
    return so


@pytest.mark.parametrize("width,word_bits,seed", [(32, 64, 0), (32, 32, 1), (16, 40, 2),
                                                   (8, 128, 3)])
def test_stream_out_roundtrip_backpressure(width, word_bits, seed):
    cfg = HostIfConfig(width=width, mem_word_bits=width, mem_addr_bits=min(width, 8),
                       n_targets=2, n_cfg_regs=2, cfg_bits=min(width, 8))
    so = _build_out(cfg, word_bits)
    rng = np.random.default_rng(seed)
    words = [_rand_bits(rng, word_bits) for _ in range(40)]
    sim = pyrtl.FastSimulation()
    pos, beats = 0, []
    for _ in range(5000):
        if pos >= len(words) and len(beats) == len(words) * so.beats:
            break
        wv = int(pos < len(words) and rng.random() < 0.6)
        ordy = int(rng.random() < 0.6)
        sim.step({"word": words[pos] if pos < len(words) else 0, "word_valid": wv,
                  "out_ready": ordy})
        if sim.inspect("out_valid") and ordy:
            beats.append(sim.inspect("out_data"))
        if wv and sim.inspect("word_ready"):
            pos += 1
    rebuilt = [sum(b << (width * i) for i, b in enumerate(beats[j:j + so.beats]))
               for j in range(0, len(beats), so.beats)]
    assert rebuilt == words


def test_stream_out_no_bubbles():
    cfg = HostIfConfig()
    so = _build_out(cfg, 96)
    sim = pyrtl.FastSimulation()
    moved = 0
    n = 30
    for c in range(n * so.beats + 1):
        sim.step({"word": c + 1, "word_valid": 1, "out_ready": 1})
        moved += sim.inspect("out_valid")
    assert so.beats == 3 and moved == n * so.beats   # every cycle after the first carries a beat


@pytest.mark.parametrize("call,match", [
    (lambda c: encode_config(c, 8, 0), "config register"),
    (lambda c: encode_config(c, 0, 1 << 32), "does not fit"),
    (lambda c: encode_config(c, 0, -1), "does not fit"),
    (lambda c: encode_write(c, 4, 0, [1]), "target memory"),
    (lambda c: encode_write(c, 0, 1020, [0] * 5), "overruns"),
    (lambda c: encode_write(c, 0, 0, [1 << 64]), "unsigned"),
    (lambda c: encode_header(c, 7), "unknown opcode"),
])
def test_encoder_rejects_bad_input(call, match):
    with pytest.raises(NmaccelError, match=match):
        call(HostIfConfig())


@pytest.mark.parametrize("kw", [dict(width=4), dict(mem_addr_bits=40), dict(cfg_bits=33),
                                dict(n_targets=0), dict(width=32.0)])
def test_bad_config(kw):
    with pytest.raises(NmaccelError):
        HostIfConfig(**kw)


def _build_with_memories(cfg):
    """Host interface with one BRAM buffer per target, written and read back through it."""
    d = pyrtl.Input(cfg.width, "in_data")
    v = pyrtl.Input(1, "in_valid")
    h = pyrtl.Input(1, "hold")
    ordy = pyrtl.Input(1, "out_ready")
    rd_data = pyrtl.WireVector(cfg.mem_word_bits, "rd_data_mux")
    hi = make_host_stream_in("host", cfg, d, v, h, rd_data=rd_data, out_ready=ordy)
    depth = 1 << cfg.mem_addr_bits
    datas = []
    for tgt in range(cfg.n_targets):
        wr = hi.mem_we & (hi.mem_target == tgt)
        buf = make_buffer(f"mem{tgt}", depth, cfg.mem_word_bits,
                          addr=pyrtl.select(wr, hi.mem_addr, hi.rd_addr), wdata=hi.mem_data, we=wr)
        datas.append(buf.rdata)
    tgt_d = pyrtl.Register(cfg.sel_bits, "rd_target_d")
    tgt_d.next <<= hi.rd_target
    rd_data <<= pyrtl.mux(tgt_d, *datas, default=pyrtl.Const(0, bitwidth=cfg.mem_word_bits))
    for k in ("in_ready", "out_data", "out_valid"):
        o = pyrtl.Output(len(getattr(hi, k)), k)
        o <<= getattr(hi, k)
    return hi


@pytest.mark.parametrize("cfg_name,seed,p_ready", [("w32_m64", 5, 0.5), ("w16_m40", 6, 1.0),
                                                   ("w32_m24", 7, 0.3), ("w8_m32", 8, 0.8)])
def test_read_back_through_output_stream(cfg_name, seed, p_ready):
    """Random writes and reads (OP_READ) against a memory model, with input gaps, hold and
    output back-pressure: the output stream carries exactly the words read, in order."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(seed)
    depth = 1 << cfg.mem_addr_bits
    mems = [[0] * depth for _ in range(cfg.n_targets)]
    words, want = [], []
    for _ in range(25):
        tgt = int(rng.integers(0, cfg.n_targets))
        n = int(rng.integers(0, min(5, depth) + 1))
        a = int(rng.integers(0, depth - n + 1))
        if rng.random() < 0.5:
            data = [_rand_bits(rng, cfg.mem_word_bits) for _ in range(n)]
            words += encode_write(cfg, tgt, a, data)
            mems[tgt][a:a + n] = data
        else:
            words += encode_read(cfg, tgt, a, n)
            want += mems[tgt][a:a + n]
        if rng.random() < 0.2:
            words += encode_config(cfg, 0, 1)
    _build_with_memories(cfg)
    sim = pyrtl.FastSimulation()
    pos, beats = 0, []
    for _ in range(20000):
        if pos >= len(words) and len(beats) == len(want) * cfg.beats:
            break
        valid = int(pos < len(words) and rng.random() < 0.8)
        ordy = int(rng.random() < p_ready)
        sim.step({"in_data": words[pos] if pos < len(words) else 0, "in_valid": valid,
                  "hold": int(rng.random() < 0.1), "out_ready": ordy})
        if sim.inspect("out_valid") and ordy:
            beats.append(sim.inspect("out_data"))
        if valid and sim.inspect("in_ready"):
            pos += 1
    got = [sum(b << (cfg.width * i) for i, b in enumerate(beats[j:j + cfg.beats]))
           for j in range(0, len(beats), cfg.beats)]
    assert len(want) > 5 and got == want


def test_read_full_rate():
    """With the output always ready, a read streams one beat per cycle after a short start."""
    cfg = CONFIGS["w32_m24"]       # one beat per memory word: the hardest rate
    _build_with_memories(cfg)
    words = encode_write(cfg, 1, 0, list(range(100, 140))) + encode_read(cfg, 1, 0, 40)
    sim = pyrtl.FastSimulation()
    out_cycles = []
    for c in range(len(words) + 60):
        sim.step({"in_data": words[c] if c < len(words) else 0, "in_valid": int(c < len(words)),
                  "hold": 0, "out_ready": 1})
        if sim.inspect("out_valid"):
            out_cycles.append((c, sim.inspect("out_data")))
    assert [d for _, d in out_cycles] == list(range(100, 140))
    first = out_cycles[0][0]
    assert [c for c, _ in out_cycles] == list(range(first, first + 40))
    assert first - len(words) <= 3     # read latency: addr word -> issue -> BRAM -> FIFO -> out


def test_host_shell_fits_fpga_pins():
    """Host interface + buffers expose only the two streams: 2 * width + 5 pins (a naive 8x8
    array with every port exposed needed 387 IOs; the ECP5-85k CABGA381 has 365)."""
    cfg = CONFIGS["w32_m64"]
    _build_with_memories(cfg)
    block = pyrtl.working_block()
    pins = sum(len(w) for w in block.wirevector_subset((pyrtl.Input, pyrtl.Output)))
    assert pins == 2 * cfg.width + 5 < 365


@pytest.mark.parametrize("section", ["values", "indices", "scales"])
def test_packed_weights_memory_image_round_trip(section):
    """A PackedWeights section image (memory_image at mem_word_bits) written with OP_WRITE
    lands word for word in the buffer and comes back unchanged through OP_READ."""
    from nmaccel.pack import pack_weights
    cfg = CONFIGS["w16_m40"]
    rng = np.random.default_rng(13)
    pw = pack_weights(rng.standard_normal((6, 40)).astype(np.float32), n_keep=2, m_group=4,
                      bits=4, group_size=8)
    image = [int(v) for v in pw.memory_image(section, word_bits=cfg.mem_word_bits)]
    assert 0 < len(image) <= 1 << cfg.mem_addr_bits
    words = encode_write(cfg, 0, 0, image) + encode_read(cfg, 0, 0, len(image))
    _build_with_memories(cfg)
    sim = pyrtl.FastSimulation()
    beats = []
    for c in range(len(words) + cfg.beats * len(image) + 10):
        sim.step({"in_data": words[c] if c < len(words) else 0, "in_valid": int(c < len(words)),
                  "hold": 0, "out_ready": 1})
        if sim.inspect("out_valid"):
            beats.append(sim.inspect("out_data"))
    got = [sum(b << (cfg.width * i) for i, b in enumerate(beats[j:j + cfg.beats]))
           for j in range(0, len(beats), cfg.beats)]
    assert got == image


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_read_cycles_match_model(cfg_name):
    """read_stream_cycles (what the cycle model uses for host read-back) == RTL cycles."""
    cfg = CONFIGS[cfg_name]
    _build_with_memories(cfg)
    sim = pyrtl.FastSimulation()
    for n in (1, 2, 7):
        pre = encode_write(cfg, 1, 0, list(range(n)))
        words = pre + encode_read(cfg, 1, 0, n)
        pos, c, t_hdr, last, beats = 0, 0, None, None, 0
        while pos < len(words) or beats < n * cfg.beats:
            v = int(pos < len(words))
            sim.step({"in_data": words[pos] if v else 0, "in_valid": v, "hold": 0,
                      "out_ready": 1})
            if v and sim.inspect("in_ready"):
                t_hdr = c if pos == len(pre) else t_hdr
                pos += 1
            if sim.inspect("out_valid"):
                beats, last = beats + 1, c
            c += 1
            assert c < 1000
        assert last - t_hdr + 1 == read_stream_cycles(cfg, n)
    with pytest.raises(NmaccelError, match="OP_READ"):
        read_stream_cycles(cfg, cfg.max_count + 1)
