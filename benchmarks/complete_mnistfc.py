"""The VNN-COMP 2021 mnistfc benchmark through ``polylens vnncomp``, against alpha-beta-CROWN's 2021 results.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/complete_mnistfc.py --timeout 20 \\
        --images 5 --out /tmp/complete-mnistfc

Runs the first ``--per-net`` properties of each network (in instances.csv order) with ``--timeout``
seconds each, or without ``--timeout`` the competition's own (instances.csv: 120 s on 256x2 and
300 s on the others), writes the competition's result files and summary.csv to ``--out``, then
prints the table against the competition's ground truth and alpha-beta-CROWN's per-instance results
and draws the cactus plot (instances solved against time) to ``--plot`` (default
docs/images/complete-cactus.png; ``none``: no plot; ``--also DIR LABEL`` draws another run's
curve beside it). ``--truth unknown`` runs only the instances whose ground truth is unknown (the
18 no tool solved in 2021; ``known``: the other 72). Reads ../shared/vnncomp2021/.
"""

from __future__ import annotations

import argparse
import csv
import os
import json
from pathlib import Path

SHARED = Path(os.environ.get("POLYLENS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")) \
    / "vnncomp2021" / "mnistfc"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=None,
                    help="Seconds per instance (default: the competition's own, from instances.csv)")
    ap.add_argument("--per-net", type=int, default=10)
    ap.add_argument("--images", type=int, default=None,
                    help="Instead of --per-net: the properties of the first N images, at both radii")
    ap.add_argument("--out", type=Path, default=Path("/tmp/complete-mnistfc"))
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--plot", default=str(Path(__file__).resolve().parents[1] / "docs" / "images" / "complete-cactus.png"),
                    help="Where the cactus plot goes ('none': no plot)")
    ap.add_argument("--also", nargs=2, action="append", default=[], metavar=("DIR", "LABEL"),
                    help="Another run's --out folder to draw beside this one (its summary.csv), with its label")
    ap.add_argument("--truth", choices=("sat", "unsat", "known", "unknown"), default=None,
                    help="Only the instances with this ground truth (results_2021.csv; known: sat or unsat)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="Instances run at once, each in its own process on one core (OMP_NUM_THREADS=1)")
    args = ap.parse_args()
    shared = SHARED
    rows = list(csv.reader((shared / "instances.csv").read_text().splitlines()))
    ref = {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(shared / "results_2021.csv"))}
    if args.truth is not None:
        want = ("sat", "unsat") if args.truth == "known" else (args.truth,)
        rows = [r for r in rows if ref[(r[0], r[1])]["ground_truth"] in want]
    chosen, seen = [], {}
    for r in rows:
        seen[r[0]] = seen.get(r[0], 0) + 1
        if args.images is not None:
            if int(r[1].split("_")[1]) < args.images:
                chosen.append(r)
        elif seen[r[0]] <= args.per_net:
            chosen.append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "instances.csv"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([[a, b, args.timeout or t] for a, b, t in chosen])
    if not args.plot_only and args.jobs <= 1:
        from polylens.lenses.verify.vnncomp import run_instances

        run_instances(csv_path, shared, args.out,
                      progress=lambda k, n, r: print(f"[{k}/{n}] {r.onnx} {r.vnnlib}: {r.result} {r.seconds:.1f} s "
                                                     f"{r.nodes} nodes", flush=True))
    elif not args.plot_only:
        # Round-robin shares, one `polylens vnncomp --instances` process each; summaries merged.
        import subprocess
        import sys

        procs, parts = [], []
        for j in range(args.jobs):
            part = args.out / f"part{j}"
            part.mkdir(exist_ok=True)
            with open(part / "instances.csv", "w", newline="") as f:
                csv.writer(f).writerows([[a, b, args.timeout or t] for a, b, t in chosen[j::args.jobs]])
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            procs.append(subprocess.Popen([sys.executable, "-m", "polylens", "vnncomp", "--instances",
                                           str(part / "instances.csv"), "--root", str(shared), "--out", str(part)],
                                          env=env))
            parts.append(part)
        for p in procs:
            p.wait()
        rows_out, header = [], None
        for part in parts:
            with open(part / "summary.csv") as f:
                rd = csv.reader(f)
                header = next(rd)
                rows_out += list(rd)
            for txt in part.glob("*.txt"):
                txt.replace(args.out / txt.name)
        with open(args.out / "summary.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows_out)
    ours = {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(args.out / "summary.csv"))}
    limit = {(a, b): float(args.timeout or t) for a, b, t in chosen}
    table = {}
    wrong = []
    ours_t, abc_t = [], []
    nps = []
    for key, r in ours.items():
        g = ref[key]
        net = key[0].replace("mnist-net_", "").replace(".onnx", "")
        t = table.setdefault(net, {"n": 0, "ours_unsat": 0, "ours_sat": 0, "abc_unsat": 0, "abc_sat": 0,
                                   "abc_within": 0, "truth_unknown_solved": 0})
        t["n"] += 1
        if r["result"] in ("sat", "unsat"):
            t["ours_" + r["result"]] += 1
            ours_t.append(float(r["seconds"]))
            if g["ground_truth"] in ("sat", "unsat") and g["ground_truth"] != r["result"]:
                wrong.append(key)
            if g["ground_truth"] == "unknown":
                t["truth_unknown_solved"] += 1
        if float(r["seconds"]) > 0 and r["nodes"]:
            nps.append(int(r["nodes"]) / float(r["seconds"]))
        if g["alpha_beta_crown_result"] in ("sat", "unsat"):
            t["abc_" + g["alpha_beta_crown_result"]] += 1
            s = float(g["alpha_beta_crown_seconds"])
            abc_t.append(s)
            if s <= limit[key]:
                t["abc_within"] += 1
    print(json.dumps({"timeout": args.timeout or "competition", "per_net": table, "wrong": wrong,
                      "nodes_per_second_median": sorted(nps)[len(nps) // 2] if nps else None}, indent=1))
    if args.plot == "none":
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    ours_limit = f"{args.timeout:g} s" if args.timeout else "120/300 s"
    curves = [(ours_t, f"polylens (one CPU core an instance, {ours_limit})", "-")]
    for folder, label in args.also:
        other = csv.DictReader(open(Path(folder) / "summary.csv"))
        curves.append(([float(r["seconds"]) for r in other if r["result"] in ("sat", "unsat")],
                       f"polylens ({label})", "-."))
    for ts, label, style in curves + [(abc_t, "alpha-beta-CROWN 2021 (GPU, 120/300 s)", "--")]:
        ts = sorted(ts)
        ax.step([0] + ts, range(len(ts) + 1), style, where="post", label=label)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("seconds per instance")
    ax.set_ylabel("instances solved")
    ax.set_title(f"mnistfc 2021: {len(ours)} instances run")
    for t in sorted(set(limit.values())):
        ax.axvline(t, color="grey", lw=0.6, ls=":")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(args.plot)
    fig.savefig(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
