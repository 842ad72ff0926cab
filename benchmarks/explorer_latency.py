"""Interaction latency of the live explorer, measured in a real browser (not a timed test).

For each interaction the page itself measures, with ``performance.now()``, the time from the user's
action to the DOM showing its result:

* **navigation**: click "next" -> the diagram and prediction show the next test sample (each click
  once the previous sample's certificate is shown, as a user reading it would);
* **paint**: paint one pixel -> the prediction shown is the network's on the painted input;
* **LP check**: set the eps slider to a new radius (input + change events, as a click on the slider
  does) -> the certificate of the current input at that radius is shown (interval bounds, CROWN, PGD
  attack, then LPs for the classes still open, time-limited). Every radius is new, so nothing is
  served from the cache.

The server runs as ``polylens serve MODEL --port 0`` in its own process, with the background sweep
turned off so it does not compete for the CPU. Prints median and 95th percentile per interaction
(aims: navigation < 100 ms, LP check < 300 ms), and the machine.

Usage: ``.venv/bin/python benchmarks/explorer_latency.py [--model seed] [--n 40] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

NAV_JS = """async () => {
  const before = document.body.dataset.input;
  const t0 = performance.now();
  document.getElementById('next').click();
  while (document.body.dataset.input === before) await new Promise(requestAnimationFrame);
  return performance.now() - t0;
}"""

SETTLED_JS = """() => {
  const st = document.getElementById('cert-status');
  return st.dataset.input === document.body.dataset.input && !st.querySelector('[data-status=pending]');
}"""

PAINT_JS = """async (k) => {
  const app = window.polylensApp;
  const before = document.body.dataset.input;
  const cell = document.querySelectorAll('#painter .cell')[k];
  const r = cell.getBoundingClientRect();
  const opts = {bubbles: true, clientX: r.x + r.width / 2, clientY: r.y + r.height / 2, pointerId: 1};
  const t0 = performance.now();
  cell.dispatchEvent(new PointerEvent('pointerdown', opts));
  window.dispatchEvent(new PointerEvent('pointerup', opts));
  while (document.body.dataset.input === before) await new Promise(requestAnimationFrame);
  return performance.now() - t0;
}"""

LP_JS = """async (eps) => {
  const slider = document.getElementById('eps');
  const status = document.getElementById('cert-status');
  const t0 = performance.now();
  slider.value = String(eps);
  slider.dispatchEvent(new Event('input', {bubbles: true}));
  slider.dispatchEvent(new Event('change', {bubbles: true}));
  while (!(status.dataset.eps === String(eps) && !status.querySelector('[data-status=pending]')))
    await new Promise(requestAnimationFrame);
  const s = status.querySelector('[data-status]').dataset.status;
  return [performance.now() - t0, s, document.getElementById('cert-detail').textContent];
}"""


def note(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return {"n": len(xs), "median_ms": round(statistics.median(xs), 1), "p95_ms": round(p95, 1),
            "min_ms": round(xs[0], 1), "max_ms": round(xs[-1], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="seed")
    ap.add_argument("--n", type=int, default=40, help="repetitions per interaction")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name("polylens")
    cmd = [str(exe) if exe.exists() else "polylens", "serve", args.model, "--port", "0", "--sweep-samples", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root)
    try:
        line = proc.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"the server did not start: {line!r}")
        url = line.split()[-1]
        out = {"model": args.model, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
               "python": platform.python_version()}
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium",
                                  args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            note(f"server at {url}; opening the page")
            page.goto(url + "#s=0&eps=0.01")
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            page.wait_for_timeout(1500)
            note("navigation")
            for _ in range(3):  # warm up
                page.evaluate(NAV_JS)
            page.wait_for_timeout(500)
            nav = []
            for _ in range(args.n):
                page.wait_for_function(SETTLED_JS, timeout=60_000)  # the previous sample's checks are done
                nav.append(page.evaluate(NAV_JS))
            page.wait_for_timeout(800)
            note("paint")
            paint = []
            for k in range(args.n):
                paint.append(page.evaluate(PAINT_JS, (k * 11) % 49))
                page.wait_for_timeout(60)
            page.goto(url + "#s=0&eps=0.01")
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_timeout(1500)
            note("LP checks")
            lp, statuses, lp_solves = [], {}, 0
            radii = [r / 1000 for r in range(1, 100) if r != 10][:args.n]  # on the slider's 0.001 steps
            for eps in radii:  # a new radius every time (0.01 was checked at load): no cache hit
                ms, status, detail = page.evaluate(LP_JS, eps)
                lp.append(ms)
                statuses[status] = statuses.get(status, 0) + 1
                if "0 LP solves" not in detail:
                    lp_solves += 1
                page.wait_for_timeout(100)
            b.close()
        out["navigation"] = stats(nav)
        out["paint"] = stats(paint)
        out["lp_check"] = {**stats(lp), "statuses": statuses, "checks_with_lp_solves": lp_solves}
    finally:
        proc.terminate()
        proc.wait(10)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"explorer latency, model {out['model']}, {out['machine']}")
    for k, aim in (("navigation", 100), ("paint", 100), ("lp_check", 300)):
        s = out[k]
        print(f"  {k:11s} median {s['median_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms   (n={s['n']}, aim < {aim} ms)")
    print(f"  LP checks: {out['lp_check']['statuses']}, {out['lp_check']['checks_with_lp_solves']} needed LP solves")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
