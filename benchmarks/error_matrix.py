"""Run the error matrix (tests/error_cases.py) against the nmaccel on PYTHONPATH; count violations.

    PYTHONPATH=. python benchmarks/error_matrix.py --json benchmarks/results/error_matrix.json
    PYTHONPATH=/path/to/old/checkout python benchmarks/error_matrix.py --label before --json ...

Violation kinds: traceback, rc (wrong exit code), lines (not one stderr line), destroyed/changed
(a user file altered or replaced), left (a file left behind), timeout, misleading.
"""
import argparse
import collections
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def kind(v):
    for k in ("traceback", "timeout", "destroyed", "changed", "left", "misleading", "stderr lines", "rc"):
        if k in v:
            return k
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--label", default="after")
    ap.add_argument("-k", help="only cases whose id contains this")
    args = ap.parse_args()
    from error_cases import CASES, run_case
    import nmaccel
    sys.path.insert(0, HERE)
    from provenance import provenance
    rows = []
    for c in CASES:
        if args.k and args.k not in c.id:
            continue
        with tempfile.TemporaryDirectory(prefix="nmaccel_matrix_") as d:
            r = run_case(c, d)
        rows.append(r)
        print(f"{c.id:32s} rc={r['rc']:<4} {'; '.join(r['violations']) or 'ok'}", flush=True)
    bad = [r for r in rows if r["violations"]]
    kinds = collections.Counter(kind(v) for r in bad for v in r["violations"])
    import subprocess
    measured = subprocess.run(["git", "-C", os.path.dirname(nmaccel.__file__), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or None
    doc = {"benchmark": "error_matrix", "label": args.label, "nmaccel": os.path.dirname(nmaccel.__file__),
           "measured_commit": measured,
           "cases": len(rows), "cases_violating": len(bad),
           "cases_with_traceback": sum(any("traceback" in v for v in r["violations"]) for r in rows),
           "cases_destroying_files": sum(any(("destroyed" in v or "changed" in v) for v in r["violations"])
                                         for r in rows),
           "violation_kinds": dict(kinds), "rows": rows, "provenance": provenance()}
    print(f"{args.label}: {len(rows)} cases, {len(bad)} violate the contract "
          f"({doc['cases_with_traceback']} with a traceback, {doc['cases_destroying_files']} alter a user file)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
