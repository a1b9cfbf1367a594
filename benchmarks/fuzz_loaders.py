"""Fuzz every loader (tests/test_fuzz_loaders.py) with many more examples than CI; record counts.

    python benchmarks/fuzz_loaders.py [--examples 2000] [--json benchmarks/results/fuzz_loaders.json]

Per format and mutation kind: examples run and failures (a failure = an exception other than
NmaccelError, a multi-line message, a hang past the deadline or an allocation beyond the bound).
"""
import argparse
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="hypothesis examples per test")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "fuzz_loaders.json"))
    args = ap.parse_args()
    os.environ["NMACCEL_FUZZ_EXAMPLES"] = str(args.examples)
    import test_fuzz_loaders as fz
    from provenance import provenance

    rows = []
    tests = [(f"{kind}", fmt, getattr(fz, f"test_fuzz_{kind}")) for kind in ("truncation", "bit_flips", "header_values")
             for fmt in sorted(fz.FORMATS)] + [("header_fields", ".nmpack", lambda fmt: fz.test_nmpack_header_fields_fuzzed())]
    for kind, fmt, fn in tests:
        before = dict(fz.CASES)
        t0 = time.perf_counter()
        error = None
        try:
            fn(fmt)
        except Exception:   # a falsified property: record it, go on with the next test
            error = traceback.format_exc().strip().splitlines()[-1]
        ran = fz.CASES.get(fmt, 0) - before.get(fmt, 0)
        rows.append({"format": fmt, "mutation": kind, "examples": ran, "failures": int(error is not None),
                     "first_failure": error, "seconds": round(time.perf_counter() - t0, 2)})
        print(f"{fmt:13s} {kind:14s} {ran:6d} examples  {'FAIL ' + error if error else 'ok'}", flush=True)
    doc = {"benchmark": "fuzz_loaders", "examples_per_test": args.examples,
           "alloc_bound": f"{fz.ALLOC_FACTOR} x file size + {fz.ALLOC_SLACK} B (tracemalloc peak)",
           "total_examples": sum(r["examples"] for r in rows),
           "total_failures": sum(r["failures"] for r in rows), "rows": rows, "provenance": provenance()}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{doc['total_examples']} examples, {doc['total_failures']} failing tests -> {args.json}")
    return 1 if doc["total_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
