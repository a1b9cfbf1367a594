"""SPAQ profile: every linear layer x every configuration the product top runs, measured.

Per (layer, configuration): weight SQNR (dB), relative output error on calibration activations
||X (W - Wq)^T||^2 / ||X W^T||^2, storage bits of the packed file, modelled cycles on the target top
for a prefill GEMM (T = prefill_tokens) and a decode GEMM (T = 1). Per (layer type, configuration)
for Llama models: measured end-to-end sensitivity, the perplexity on calibration-disjoint text when
only the linears of that type (in the profiled blocks) are compressed with that configuration.

Resumable: the profile file is rewritten after every configuration; rerunning with the same model,
calibration and configurations skips what it holds. Parallel over layers (--jobs, forked workers).
"""
import hashlib
import json
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from nmaccel.errors import require
from nmaccel.fileio import atomic_write
from nmaccel.models.bert import MiniLM, WordPiece
from nmaccel.models.llama import Llama
from nmaccel.models.loaders import (BUILTIN_MODELS, builtin_path, calibration_text, gguf_tokenizer,
                                    load_safetensors)
from nmaccel.pack.api import pack_weights
from nmaccel.plan import target as tg
from nmaccel.progress import bar as tqdm

SCHEMA = "nmaccel.profile/1"
LLAMA_TYPES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def config(n_keep, m_group, bits, quantizer="uniform", group_size=None, method="magnitude"):
    c = {"n_keep": n_keep, "m_group": m_group, "bits": bits, "quantizer": quantizer,
         "group_size": group_size, "method": method if n_keep != m_group else "rtn"}
    c["name"] = config_name(c)
    return c


def config_name(c):
    nm = "dense" if c["n_keep"] == c["m_group"] else f"{c['n_keep']}:{c['m_group']}"
    q = f"int{c['bits']}" if c["quantizer"] == "uniform" else f"lm{c['bits']}"
    g = f"g{c['group_size']}" if c["group_size"] else "ch"
    return f"{nm}/{q}/{g}/{c['method']}"


DENSE_INT8 = config(1, 1, 8)
SPARSE = ((2, 4), (4, 8), (1, 4), (2, 8))
FULL_CONFIGS = ([DENSE_INT8, config(1, 1, 4, group_size=128), config(1, 1, 4), config(1, 1, 4, "lloyd-max"),
                 config(1, 1, 2, group_size=128)]
                + [config(n, m, 8, method="wanda") for n, m in SPARSE]
                + [config(n, m, 4, group_size=128, method="wanda") for n, m in SPARSE]
                + [config(n, m, 4, group_size=128, method="sparsegpt") for n, m in ((2, 4), (4, 8))])
DEFAULT_CONFIGS = [DENSE_INT8, config(1, 1, 4, group_size=128), config(2, 4, 8, method="wanda"),
                   config(2, 4, 4, group_size=128, method="wanda"), config(4, 8, 4, group_size=128, method="wanda"),
                   config(4, 8, 8, method="wanda")]
QUICK_CONFIGS = [DENSE_INT8, config(1, 1, 4, group_size=128), config(2, 4, 8, method="wanda"),
                 config(2, 4, 4, group_size=128, method="wanda")]


def pack_config(w, c, calibration):
    return pack_weights(w, n_keep=c["n_keep"], m_group=c["m_group"], bits=c["bits"],
                        quantizer=c["quantizer"], group_size=c["group_size"],
                        method="magnitude" if c["method"] == "rtn" else c["method"],
                        calibration=calibration if c["method"] in ("wanda", "sparsegpt") else None)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit():
    try:
        out = subprocess.run(["git", "-C", str(tg.REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class ModelSource:
    """A loaded model: kind ('llama' or 'minilm'), forward object, tokenizer, file and hash."""

    def __init__(self, spec):
        self.spec = str(spec)
        if self.spec == "minilm" or self.spec.endswith(".safetensors"):
            path = builtin_path("minilm") if self.spec == "minilm" else Path(self.spec)
            require(path.is_file(), f"model file {self.spec!r} does not exist: pass smollm2, minilm or a .gguf/.safetensors file")
            self.kind, self.model = "minilm", MiniLM(load_safetensors(path))
            vocab = path.parent / "vocab.txt"
            require(vocab.is_file(), f"{path} has no vocab.txt beside it: MiniLM needs its WordPiece vocabulary")
            self.tokenizer = WordPiece(vocab)
        else:
            path = builtin_path(self.spec) if self.spec in BUILTIN_MODELS else Path(self.spec)
            require(path.is_file() and path.suffix == ".gguf",
                    f"model {self.spec!r}: use smollm2, minilm, a .gguf (Llama) or a .safetensors (BERT) file")
            self.kind, self.model = "llama", Llama.from_gguf(str(path))
            self.tokenizer = gguf_tokenizer(str(path))
        self.path = path
        self.sha256 = file_sha256(path)

    def linear_names(self, n_blocks=None):
        names = self.model.linear_names()
        if n_blocks is None:
            return names
        return [n for n in names if self.block_of(n) < n_blocks]

    def block_of(self, name):
        """Index of the block (Llama) or encoder layer (BERT) that holds linear `name`."""
        return int(name.split(".")[1 if self.kind == "llama" else 2])

    def layer_type(self, name):
        return name.split(".")[2] if self.kind == "llama" else ".".join(name.split(".")[3:-1])

    def texts(self, n_cal, n_sens):
        """(calibration ids, sensitivity ids, description): disjoint slices of the calibration text."""
        text = calibration_text()
        if self.kind == "llama":
            ids = np.asarray(self.tokenizer.encode(text[:40 * (n_cal + n_sens)]), dtype=np.int64)
        else:
            ids = np.concatenate([self.tokenizer.encode(p)[1:-1] for p in text[:40 * (n_cal + n_sens)].split("\n\n") if p.strip()])
        require(ids.size >= n_cal + n_sens, f"calibration text gives {ids.size} tokens, fewer than {n_cal + n_sens}")
        desc = {"text": "nmaccel.models.calibration_text() (Python pydoc topics)",
                "calibration_tokens": [0, n_cal], "sensitivity_tokens": [n_cal, n_cal + n_sens]}
        return ids[:n_cal], ids[n_cal:n_cal + n_sens], desc

    def calibration_inputs(self, cal_ids, names):
        if self.kind == "llama":
            return self.model.collect_inputs(cal_ids, names)
        seqs = [cal_ids[i:i + 128] for i in range(0, cal_ids.size, 128)]
        return self.model.collect_inputs(seqs, names)

    def weight(self, name):
        return self.model.weights[name]


def _metrics(w, packed, x, shape_cycles):
    wq = packed.dequantize().astype(np.float64)
    w64 = w.astype(np.float64)
    err = float(np.sum((w64 - wq) ** 2))
    sqnr = 10 * np.log10(float(np.sum(w64 ** 2)) / err) if err > 0 else float("inf")
    y = x.astype(np.float64) @ w64.T
    out_err = float(np.sum((x.astype(np.float64) @ (w64 - wq).T) ** 2) / max(np.sum(y ** 2), 1e-30))
    return {"sqnr_db": round(sqnr, 4), "out_err_rel": out_err, "storage_bits": int(packed.storage_bits()),
            "bits_per_weight": round(packed.bits_per_weight(), 4), **shape_cycles}


_WORK = {}


def _job(args):
    name, c, tgt_dict, prefill = args
    w, x = _WORK["w"][name], _WORK["x"][name]
    packed = pack_config(w, c, x)
    t = tg.Target.from_dict(tgt_dict)
    cyc = {"cycles_prefill": tg.gemm_cycles(c, t, prefill, w.shape[1], w.shape[0]),
           "cycles_decode": tg.gemm_cycles(c, t, 1, w.shape[1], w.shape[0])}
    return name, _metrics(w, packed, x, cyc), packed.dequantize()


def run_profile(model_spec, out, *, quick=False, n_cal=None, n_sens=None, prefill_tokens=256,
                n_blocks=None, configs=None, jobs=1, sensitivity=True, target=None, progress=True):
    """Profile `model_spec` into `out` (JSON); returns the profile dict."""
    src = ModelSource(model_spec)
    n_cal = n_cal or (128 if quick else 512)
    n_sens = n_sens or (128 if quick else 256)
    if quick and n_blocks is None:
        n_blocks = 2
    configs = configs or (QUICK_CONFIGS if quick else DEFAULT_CONFIGS)
    require(DENSE_INT8["name"] in [c["name"] for c in configs],
            f"the configurations must include the baseline {DENSE_INT8['name']}")
    names = src.linear_names(n_blocks)
    require(names, "no linear layers selected: raise --blocks")
    shapes = {n: tuple(int(v) for v in src.weight(n).shape) for n in names}
    all_shapes = {tuple(int(v) for v in src.weight(n).shape) for n in src.linear_names()}
    tgt = target or tg.Target.for_shapes([(k, o) for o, k in all_shapes])
    cal_ids, sens_ids, text_desc = src.texts(n_cal, n_sens)
    head = {"schema": SCHEMA, "model": {"spec": src.spec, "kind": src.kind, "file": src.path.name,
                                         "sha256": src.sha256},
            "calibration": text_desc, "prefill_tokens": int(prefill_tokens),
            "target": tgt.as_dict(), "configs": configs, "quick": bool(quick),
            "layers": [{"name": n, "type": src.layer_type(n), "shape": list(shapes[n])} for n in names]}
    prof = {**head, "entries": {}, "sensitivity": {}}
    outp = Path(out)
    if outp.exists():
        old = json.loads(outp.read_text())
        same = all(old.get(k) == v for k, v in head.items())
        require(same, f"{out} holds a profile of another model or settings: remove it or choose another -o")
        prof = old
    prof["commit"] = git_commit()
    prof["command_started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def save():
        atomic_write(outp, json.dumps(prof, indent=1))

    dense_sens = None
    xs = None
    for c in tqdm(configs, desc="configs", quiet=not progress):
        todo = [n for n in names if c["name"] not in prof["entries"].get(n, {})]
        want_sens = sensitivity and src.kind == "llama" and c["name"] not in prof["sensitivity"]
        if not todo and not want_sens:
            continue
        if xs is None:
            xs = src.calibration_inputs(cal_ids, names)
            _WORK.update(w={n: src.weight(n) for n in names}, x=xs)
        deq = {}
        todo_all = names if want_sens else todo
        args = [(n, c, tgt.as_dict(), prefill_tokens) for n in todo_all]
        bar = tqdm(total=len(args), desc=c["name"], leave=False, quiet=not progress)
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as ex:
                results = ex.map(_job, args)
                for name, met, dq in results:
                    prof["entries"].setdefault(name, {})[c["name"]] = met
                    deq[name] = dq
                    bar.update()
        else:
            for a in args:
                name, met, dq = _job(a)
                prof["entries"].setdefault(name, {})[c["name"]] = met
                deq[name] = dq
                bar.update()
        bar.close()
        if want_sens:
            if dense_sens is None:
                dense_sens = prof["sensitivity"].get("_dense_ppl") or src.model.perplexity(sens_ids, ctx=sens_ids.size)
                prof["sensitivity"]["_dense_ppl"] = dense_sens
            row = {}
            for t in LLAMA_TYPES:
                sel = {n: deq[n] for n in names if src.layer_type(n) == t}
                ppl = src.model.with_linears(sel).perplexity(sens_ids, ctx=sens_ids.size)
                row[t] = {"ppl": ppl, "dlog_ppl": float(np.log(ppl / dense_sens)), "layers": len(sel)}
            prof["sensitivity"][c["name"]] = row
        save()
    prof["sensitivity_note"] = ("perplexity on the sensitivity slice when only the linears of one type "
                                "(in the profiled blocks) use the configuration; dlog_ppl = log(ppl / dense)")
    if sensitivity and src.kind == "llama":
        if xs is None:
            xs = src.calibration_inputs(cal_ids, names)
            _WORK.update(w={n: src.weight(n) for n in names}, x=xs)
        _layer_sensitivity(prof, src, names, sens_ids, tgt, prefill_tokens, save, progress)
    save()
    return prof


def reference_config(prof):
    """The most aggressive profiled configuration (fewest prefill cycles, then lowest mean SQNR):
    the one each layer's own perplexity damage is measured at."""
    names = [l["name"] for l in prof["layers"]]
    cands = [c for c in prof["configs"] if c["name"] != DENSE_INT8["name"]]
    key = lambda c: (sum(prof["entries"][n][c["name"]]["cycles_prefill"] for n in names),
                     np.mean([prof["entries"][n][c["name"]]["sqnr_db"] for n in names]))
    return min(cands, key=key)


def _layer_sensitivity(prof, src, names, sens_ids, tgt, prefill_tokens, save, progress):
    """prof['layer_sensitivity']: log(PPL / dense) on the sensitivity slice when only that one layer
    uses the reference configuration (resumable; blocks before the layer are not re-run)."""
    ref = reference_config(prof)
    ls = prof.get("layer_sensitivity")
    if not ls or ls.get("config") != ref["name"]:
        ls = prof["layer_sensitivity"] = {"config": ref["name"], "tokens": prof["calibration"]["sensitivity_tokens"],
                                          "dlog_ppl": {}}
    todo = [n for n in names if n not in ls["dlog_ppl"]]
    if not todo:
        return
    tok = sens_ids[None, :]
    hs = src.model.block_inputs(tok)
    nll0, count = src.model.nll_from(tok, 0, hs[0])
    for k, n in enumerate(tqdm(todo, desc=f"layer sensitivity ({ref['name']})", quiet=not progress)):
        _, _, dq = _job((n, ref, tgt.as_dict(), prefill_tokens))
        b = src.block_of(n)
        nll, _ = src.model.with_linears({n: dq}).nll_from(tok, b, hs[b])
        ls["dlog_ppl"][n] = float((nll - nll0) / count)
        if k % 10 == 9:
            save()


def load_versioned(path, schema, command):
    """A JSON file of `schema` (its "schema" field); NmaccelError naming `command` otherwise."""
    p = Path(path)
    require(p.is_file(), f"{path!r} does not exist: create it with `{command}`")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    require(isinstance(doc, dict) and doc.get("schema") == schema,
            f"{path} is not a {schema} file: regenerate it with `{command}`")
    return doc


def load_profile(path):
    return load_versioned(path, SCHEMA, f"nmaccel profile MODEL -o {path}")


CONFIG_SETS = {"quick": QUICK_CONFIGS, "default": DEFAULT_CONFIGS, "full": FULL_CONFIGS}
