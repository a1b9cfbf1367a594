"""`nmaccel sweep grid.yaml`: design-space sweep front end (engine: nmaccel.run.sweep)."""
from tabulate import tabulate

from nmaccel.errors import require
from nmaccel.run.sweep import CSV_COLUMNS, load_grid, run_sweep


def table(rows):
    cols = [c for c in CSV_COLUMNS if c != "message" and any(r.get(c) not in (None, "") for r in rows)]
    body = [[r.get(c, "") if r.get(c) is not None else "-" for c in cols] for r in rows]
    return tabulate(body, headers=cols, tablefmt="github")


def cmd_sweep(args):
    grid = load_grid(args.grid)
    require(args.workers is None or args.workers >= 1, f"--workers {args.workers}: use >= 1")
    res = run_sweep(grid, args.out, workers=args.workers, cluster=args.cluster,
                    timeout=args.cluster_timeout, progress=not args.quiet)
    print(table(res["rows"]))
    bad = [r for r in res["rows"] if r["status"] != "ok"]
    for r in bad:
        print(f"{r['array']} {r['nm']} b{r['bits']} {r['target']}: {r['status']}: {r['message']}")
    print(f"{len(res['rows'])} points, {res['computed']} jobs run, {res['cached']} from cache; "
          f"wrote {res['paths']['csv']}, {res['paths']['json']}, {res['paths']['png']}")
    return 0


def register_cli(subparsers):
    p = subparsers.add_parser("sweep", help="design-space sweep (synthesis + simulation) over a grid",
                              description="Run a grid of (array, N:M, bits, target) points: "
                              "synthesis and cycle jobs on local processes or a Dask cluster; "
                              "resumable; writes a CSV/JSON table and a Pareto plot.")
    p.add_argument("grid", help="grid YAML file (see docs/SWEEP.md)")
    p.add_argument("-o", "--out", default="sweep_out", help="output directory (default sweep_out); "
                   "finished jobs are cached there and reused")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: CPU count)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:8786) instead of local processes")
    p.add_argument("--cluster-timeout", type=float, default=10, help="seconds to reach the scheduler")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (also off when stdout is not a TTY)")
    p.set_defaults(func=cmd_sweep)
