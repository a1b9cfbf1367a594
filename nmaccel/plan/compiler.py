"""`compile`: pack every planned layer and write a program for the product top.

program/
  manifest.json                       the shared manifest (nmaccel.pack.manifest, producer "compile")
                                      + target, plan and profile hashes, predicted totals
  layers/NNNN-<name>.nmpack           PackedWeights per layer (manifest entry: config, method,
                                      predicted cycles prefill / decode, storage bits, sha256)
  streams/NNNN-<name>.weights.memh    the layer's weight / group-scale / epilogue host words, in the
                                      order every job of that layer sends them after its header and
                                      activation records (host_bits-wide hex words, one a line)
Each entry also holds `config_words`: the job header (runtime configuration: mode, N:M, raw,
n_kt, n_nt, kt_per_group) of a decode job (n_steps = 1), as host words in hex.
"""
import hashlib
import os

import numpy as np

from nmaccel.errors import require
from nmaccel.fileio import atomic_write
from nmaccel.pack import manifest as mf
from nmaccel.pack.format import PackedWeights
from nmaccel.plan import target as tg
from nmaccel.plan.policy import load_plan
from nmaccel.plan.profile import ModelSource, pack_config
from nmaccel.program.encoder import encode_gemm
from nmaccel.progress import bar as tqdm

PRODUCER = "compile"


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def layer_stream(packed, target, cfg):
    """(config words, weight words) of one decode job of `packed` on the target top."""
    p = target.top
    gs = packed.granularity == "group"
    prog = encode_gemm(packed, np.zeros((1, packed.in_features), dtype=np.int64), p, None, group_scales=gs)
    require(prog.mode == tg.mode_of(cfg), f"layer packs to mode {prog.mode}, the plan expects {tg.mode_of(cfg)}")
    require(len(prog.jobs) == 1, "one decode token is one job")
    return [int(w) for w in prog.headers[0]], [int(w) for w in prog.body]


def _reusable(reuse, model_sha, target):
    """{(layer name, config name): (PackedWeights, config words, weight words)} of earlier programs
    of the same model and target (their files verified against their manifests)."""
    out = {}
    for d in reuse:
        doc = mf.read_manifest(d)
        if doc.get("producer") != PRODUCER or doc["model"]["hash"] != "sha256:" + model_sha \
                or doc.get("target") != target.as_dict():
            continue
        for e in doc["layers"]:
            lp = mf.resolve_layer_path(doc["dir"], e["file"])
            sp = mf.resolve_layer_path(doc["dir"], e["stream_file"])
            if mf.sha256_file(lp) != e["sha256"] or mf.sha256_file(sp) != e["stream_sha256"]:
                continue
            with open(sp) as f:
                ww = [int(line, 16) for line in f]
            out[e["name"], e["config"]["name"]] = (lambda lp=lp: PackedWeights.load(lp),
                                                   [int(v, 16) for v in e["config_words"]], ww)
    return out


def compile_program(model_spec, plan_path, out, *, array=None, progress=True, reuse=()):
    """Write the program of `plan_path` for `model_spec` into the new directory `out`.
    `reuse`: earlier program directories of the same model and target whose layers with the same
    configuration are taken over (files verified by sha256) instead of being packed again."""
    plan = load_plan(plan_path)
    target = tg.Target.from_dict(plan["target"])
    if array is not None:
        require(array == (target.rows, target.cols),
                f"the plan was made for a {target.rows}x{target.cols} array, not {array[0]}x{array[1]}: "
                "profile and plan again for this array")
    require(not os.path.exists(out) or (os.path.isdir(out) and not os.listdir(out)),
            f"{out} exists: choose a new program directory (compile never overwrites)")
    src = ModelSource(model_spec)
    require(src.sha256 == plan["model"]["sha256"],
            f"{model_spec} is not the model the plan was made for (sha256 {plan['model']['sha256'][:12]}...): "
            "pass that model or profile and plan this one")
    names = [l["name"] for l in plan["layers"]]
    old = _reusable(reuse, src.sha256, target)
    need_cal = any(l["config"]["method"] in ("wanda", "sparsegpt") and (l["name"], l["config"]["name"]) not in old
                   for l in plan["layers"])
    xs = {}
    if need_cal:
        cal_ids, _, _ = src.texts(plan["calibration"]["calibration_tokens"][1],
                                  plan["calibration"]["sensitivity_tokens"][1] - plan["calibration"]["sensitivity_tokens"][0])
        xs = src.calibration_inputs(cal_ids, names)
    entries = []
    T = plan["prefill_tokens"]
    hb = target.host_bits
    for i, l in enumerate(tqdm(plan["layers"], desc="compile", quiet=not progress)):
        n, cfg = l["name"], l["config"]
        w = src.weight(n)
        if (n, cfg["name"]) in old:
            load, cw, ww = old[n, cfg["name"]]
            pk = load()
        else:
            pk = pack_config(w, cfg, xs.get(n))
            cw, ww = layer_stream(pk, target, cfg)
        srel = f"streams/{i:04d}-{os.path.basename(mf.layer_filename(i, n))[5:-7]}.weights.memh"
        spath = mf.resolve_layer_path(out, srel)
        os.makedirs(os.path.dirname(spath), exist_ok=True)
        text = "".join(f"{v:0{-(-hb // 4)}x}\n" for v in ww)
        atomic_write(spath, text)
        cyc = {"cycles_prefill": tg.gemm_cycles(cfg, target, T, w.shape[1], w.shape[0]),
               "cycles_decode": tg.gemm_cycles(cfg, target, 1, w.shape[1], w.shape[0])}
        entries.append(mf.save_layer(out, i, n, pk, method=cfg["method"], config=cfg,
                                     storage_bits=pk.storage_bits(), mode=tg.mode_of(cfg),
                                     stream_file=srel, stream_sha256=_sha(text.encode()),
                                     stream_words=len(ww), config_words=[f"{v:x}" for v in cw], **cyc))
    tot = lambda k: sum(e[k] for e in entries)
    plan_sha = mf.sha256_file(plan_path)
    return mf.write_manifest(
        out, entries, model_hash="sha256:" + src.sha256, model_source=src.spec, producer=PRODUCER,
        settings={"plan": os.path.basename(plan_path), "budget": plan["budget"], "phase": plan["phase"],
                  "calibration": plan["calibration"]},
        plan_sha256=plan_sha, profile_sha256=plan["profile_sha256"], target=target.as_dict(),
        prefill_tokens=T, host_bits=hb,
        predicted={"cycles_prefill": tot("cycles_prefill"), "cycles_decode": tot("cycles_decode"),
                   "storage_bits": tot("storage_bits"), "ppl_ratio": plan["predicted"]["ppl_ratio"]})


def load_program(path):
    """{'manifest': dict, 'packed': {name: PackedWeights}}; NmaccelError if files and manifest differ."""
    doc = mf.read_manifest(path)
    require(doc.get("producer") == PRODUCER and "target" in doc,
            f"{path} was written by `nmaccel {doc.get('producer')}`, not by `nmaccel compile`: compile a program")
    packed = mf.load_layers(path, verify=True)
    for e in doc["layers"]:
        sp = mf.resolve_layer_path(doc["dir"], e["stream_file"])
        require(os.path.isfile(sp) and mf.sha256_file(sp) == e["stream_sha256"],
                f"{e['stream_file']} is missing or does not match the manifest's sha256: recompile the program")
    doc["model"]["spec"] = doc["model"]["source"]
    doc["model"]["sha256"] = doc["model"]["hash"].split(":", 1)[1]
    doc["layers_by_name"] = {e["name"]: e for e in doc["layers"]}
    return {"manifest": doc, "packed": packed}
