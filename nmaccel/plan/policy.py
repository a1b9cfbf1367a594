"""DFKE planner: one configuration per linear layer under a budget, as a 0/1 integer program.

Variables x[l, c] in {0, 1}, sum_c x[l, c] = 1 for every layer l (multiple-choice knapsack),
solved exactly with scipy.optimize.milp (HiGHS). Per (layer, configuration) the profile gives
  cyc[l, c]  modelled cycles per token on the target top (prefill at the profile's T, or decode T=1)
  d[l, c]    predicted increase of log perplexity: S[type(l), c] * e[l, c] / sum_{l' of that type} e[l', c]
             with S the measured sensitivity (log(PPL / dense PPL) when every profiled layer of that
             type uses c, clipped at 0) and e the layer's relative output error on calibration data:
             the type's measured damage shared among its layers by their output error (additive,
             first-order model; `nmaccel run` measures the real perplexity of the plan); where the
             profile measured each layer alone at a reference configuration r (layer_sensitivity),
             d[l, c] = max(that share, own[l] * e[l, c] / e[l, r]): a layer whose small relative
             output error hides a large perplexity cost (SmolLM2's last ffn_down: 1.31x alone at
             2:4) keeps its measured cost.
  sqnr[l, c] weight SQNR (dB).
Budgets and objectives:
  ppl:R      sum d x <= ln R, minimize sum cyc x
  speedup:S  sum cyc x <= sum cyc[l, dense INT8] / S, minimize sum d x
  sqnr:X     x[l, c] = 0 where sqnr[l, c] < X, minimize sum cyc x
A tie-break of 1e-6 x relative storage bits prefers the smaller plan among equal ones.
"""
import hashlib
import json
import math

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from nmaccel.errors import require
from nmaccel.fileio import atomic_write
from nmaccel.plan import target as tg
from nmaccel.plan.profile import DENSE_INT8, config_name, load_profile, load_versioned

SCHEMA = "nmaccel.plan/1"
KINDS = ("ppl", "sqnr", "speedup")


def parse_budget(text):
    kind, _, val = str(text).partition(":")
    try:
        v = float(val)
    except ValueError:
        v = float("nan")
    require(kind in KINDS and math.isfinite(v) and v > 0,
            f"budget {text!r}: use ppl:RATIO (e.g. ppl:1.10), sqnr:DB (e.g. sqnr:20) or speedup:X (e.g. speedup:2.5)")
    require(kind != "ppl" or v >= 1.0, f"budget {text!r}: a perplexity ratio below 1.0 cannot be met; use >= 1.0")
    return kind, v


def tables(prof, phase):
    """(layer names, types, config names, cyc, d, sqnr, storage) arrays from a profile."""
    layers = [l["name"] for l in prof["layers"]]
    types = [l["type"] for l in prof["layers"]]
    cnames = [c["name"] for c in prof["configs"]]
    ent = prof["entries"]
    missing = [n for n in layers if any(c not in ent.get(n, {}) for c in cnames)]
    if missing:
        require(False, f"the profile is incomplete ({len(missing)} layers lack entries, e.g. {missing[0]}): "
                "rerun `nmaccel profile` with the same -o to finish it")
    key = "cycles_prefill" if phase == "prefill" else "cycles_decode"
    per_tok = prof["prefill_tokens"] if phase == "prefill" else 1
    get = lambda k: np.array([[ent[n][c][k] for c in cnames] for n in layers], dtype=np.float64)
    cyc, err, sq, st = get(key) / per_tok, get("out_err_rel"), get("sqnr_db"), get("storage_bits")
    d = np.full(cyc.shape, np.nan)
    sens = prof.get("sensitivity", {})
    for j, c in enumerate(cnames):
        if c not in sens:
            continue
        for t in set(types):
            rows = [i for i, tt in enumerate(types) if tt == t]
            tot = err[rows, j].sum()
            S = max(0.0, sens[c][t]["dlog_ppl"])
            d[rows, j] = S * (err[rows, j] / tot if tot > 0 else 1.0 / len(rows))
    ls = prof.get("layer_sensitivity")
    if ls and ls.get("config") in cnames and all(n in ls["dlog_ppl"] for n in layers):
        r = cnames.index(ls["config"])
        own = np.maximum(np.array([ls["dlog_ppl"][n] for n in layers]), 0.0)
        ratio = np.divide(err, err[:, r:r + 1], out=np.ones_like(err), where=err[:, r:r + 1] > 0)
        d = np.maximum(d, own[:, None] * ratio)      # NaN (no type sensitivity) stays NaN
    return layers, types, cnames, cyc, d, sq, st


def solve(prof, budget, phase="prefill"):
    """Plan dict for `budget` ('ppl:1.1' ...); NmaccelError with the best reachable value if infeasible."""
    kind, val = parse_budget(budget)
    require(phase in ("prefill", "decode"), f"phase {phase!r}: use prefill or decode")
    layers, types, cnames, cyc, d, sq, st = tables(prof, phase)
    base = cnames.index(DENSE_INT8["name"])
    L, C = cyc.shape
    allowed = np.ones((L, C), dtype=bool)
    if kind in ("ppl", "speedup"):
        require(not np.isnan(d).all(), "this profile has no measured sensitivity (profile a Llama model "
                "without --no-sensitivity) : use --budget sqnr:DB")
        allowed &= ~np.isnan(d)
    if kind == "sqnr":
        allowed &= sq >= val
    dd = np.nan_to_num(d, nan=0.0)
    dense_cyc = cyc[:, base].sum()
    tie = 1e-6 * st / st.max()
    ub = allowed.astype(float).ravel()
    eq = LinearConstraint(np.kron(np.eye(L), np.ones(C)), 1, 1)
    cons = [eq]
    if kind == "ppl":
        cons.append(LinearConstraint(dd.ravel()[None, :], -np.inf, math.log(val)))
        obj = cyc.ravel() / dense_cyc + tie.ravel()
    elif kind == "speedup":
        cons.append(LinearConstraint((cyc.ravel() / dense_cyc)[None, :], -np.inf, 1.0 / val))
        obj = dd.ravel() + tie.ravel()
    else:
        obj = cyc.ravel() / dense_cyc + tie.ravel()
    ok = allowed.any(axis=1).all()
    res = milp(obj, constraints=cons, integrality=np.ones(L * C), bounds=Bounds(0, ub)) if ok else None
    if res is None or res.status != 0 or res.x is None:
        masked = lambda a, fill: np.where(allowed, a, fill)
        if kind == "ppl":
            best = f"best reachable perplexity ratio {math.exp(masked(dd, np.inf).min(axis=1).sum()):.4f}"
        elif kind == "speedup":
            best = f"best reachable speedup {dense_cyc / cyc.min(axis=1).sum():.3f}x ({phase})"
        else:
            best = f"best reachable per-layer SQNR {sq.max(axis=1).min():.2f} dB"
        require(False, f"budget {budget} cannot be met by any plan: {best}")
    x = res.x.reshape(L, C).round().astype(bool)
    pick = x.argmax(axis=1)
    idx = np.arange(L)
    cfg = {c["name"]: c for c in prof["configs"]}
    ent = prof["entries"]
    plan_layers = []
    for i, n in enumerate(layers):
        c = cnames[pick[i]]
        e = ent[n][c]
        plan_layers.append({"name": n, "type": types[i], "config": {k: v for k, v in cfg[c].items()},
                            "predicted": {"dlog_ppl": float(dd[i, pick[i]]), "sqnr_db": e["sqnr_db"],
                                          "storage_bits": e["storage_bits"], "cycles_prefill": e["cycles_prefill"],
                                          "cycles_decode": e["cycles_decode"]}})
    return _plan_doc(prof, budget, phase, plan_layers,
                     {"ppl": "minimize modelled cycles s.t. predicted log PPL ratio <= ln(budget)",
                      "speedup": "minimize predicted log PPL ratio s.t. cycles <= dense INT8 cycles / budget",
                      "sqnr": "minimize modelled cycles s.t. every layer's weight SQNR >= budget"}[kind],
                     "scipy.optimize.milp (HiGHS), multiple-choice knapsack", res.message,
                     ppl_ratio=None if np.isnan(d[idx, pick]).any() else math.exp(float(dd[idx, pick].sum())),
                     min_sqnr_db=float(sq[idx, pick].min()), storage_bits=sum(
                         l["predicted"]["storage_bits"] for l in plan_layers))


def _plan_doc(prof, budget, phase, plan_layers, objective, solver, status, **predicted):
    """The plan file's document: header, layers, and predicted totals (speed-ups vs every layer
    in dense INT8, from the profile's cycles) plus `predicted`."""
    tot = lambda k: sum(l["predicted"][k] for l in plan_layers)
    dense_tot = lambda k: sum(prof["entries"][l["name"]][DENSE_INT8["name"]][k] for l in prof["layers"])
    return {
        "schema": SCHEMA, "budget": budget, "phase": phase, "objective": objective, "solver": solver,
        "solver_status": status, "model": prof["model"], "target": prof["target"],
        "calibration": prof["calibration"], "prefill_tokens": prof["prefill_tokens"],
        "profile_sha256": profile_hash(prof), "layers": plan_layers,
        "predicted": {**predicted, "speedup_prefill": dense_tot("cycles_prefill") / tot("cycles_prefill"),
                      "speedup_decode": dense_tot("cycles_decode") / tot("cycles_decode"),
                      "configs": count_configs(plan_layers)},
    }


def uniform(prof, cfg, phase="prefill"):
    """Plan with every profiled layer in configuration `cfg` (a nmaccel.plan.profile.config dict):
    the uniform baselines a planned model is compared with. Where `cfg` was profiled the
    per-layer predictions come from the profile; else cycles from the cycle model and no
    perplexity prediction."""
    require(phase in ("prefill", "decode"), f"phase {phase!r}: use prefill or decode")
    require(cfg.get("name") == config_name(cfg), f"configuration {cfg!r}: build it with nmaccel.plan.profile.config")
    target = tg.Target.from_dict(prof["target"])
    T = prof["prefill_tokens"]
    cnames = [c["name"] for c in prof["configs"]]
    profiled = cfg["name"] in cnames
    if profiled:
        _, _, _, _, d, _, _ = tables(prof, phase)
        j = cnames.index(cfg["name"])
    plan_layers = []
    for i, l in enumerate(prof["layers"]):
        N, K = l["shape"]
        e = prof["entries"][l["name"]].get(cfg["name"], {})
        pred = {"dlog_ppl": float(d[i, j]) if profiled and not math.isnan(d[i, j]) else None,
                "sqnr_db": e.get("sqnr_db"), "storage_bits": e.get("storage_bits"),
                "cycles_prefill": e["cycles_prefill"] if e else tg.gemm_cycles(cfg, target, T, K, N),
                "cycles_decode": e["cycles_decode"] if e else tg.gemm_cycles(cfg, target, 1, K, N)}
        plan_layers.append({"name": l["name"], "type": l["type"], "config": dict(cfg), "predicted": pred})
    dl = [l["predicted"]["dlog_ppl"] for l in plan_layers]
    return _plan_doc(prof, f"uniform:{cfg['name']}", phase, plan_layers, "none: every layer in one configuration",
                     None, None, ppl_ratio=math.exp(sum(dl)) if None not in dl else None,
                     min_sqnr_db=None, storage_bits=None)


def count_configs(plan_layers):
    out = {}
    for l in plan_layers:
        out[l["config"]["name"]] = out.get(l["config"]["name"], 0) + 1
    return dict(sorted(out.items()))


def profile_hash(prof):
    return hashlib.sha256(json.dumps({k: prof[k] for k in ("model", "configs", "entries", "sensitivity", "target")},
                                     sort_keys=True).encode()).hexdigest()


def plan_file(profile_path, budget, out, phase="prefill"):
    plan = solve(load_profile(profile_path), budget, phase)
    atomic_write(out, json.dumps(plan, indent=1))
    return plan


def load_plan(path):
    return load_versioned(path, SCHEMA, f"nmaccel plan PROFILE --budget ... -o {path}")
