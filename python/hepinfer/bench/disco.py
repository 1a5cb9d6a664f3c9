#!/usr/bin/env python3
"""Distance-correlation benchmark: hepinfer.disco against dcor and the dense torch DisCo loss.

    hepinfer bench disco                  # full run (a few minutes; or python benchmarks/disco.py)
    hepinfer bench disco --quick          # smoke run (< 1 minute)
    hepinfer bench disco --json out.json  # default ./hepinfer-bench-disco.json
    hepinfer bench disco --clock cpu      # CPU time of the thread, on a busy machine

Part 1, value only: weighted dCor^2 with hepinfer (O(n log n)) against
dcor.distance_correlation_sqr (unweighted; methods "mergesort" and "avl") for n = 1e3 ... 1e6.
A dcor method is dropped for larger n once one call takes more than --dcor-cap seconds
(default 10 s), or would by the n log n extrapolation.

Part 2, forward + backward of the DisCo loss on a float64 torch tensor: hepinfer.train.disco_loss
against the dense torch formula of the DisCo repository (n x n distance matrices, double
centring, torch autograd) for n = 1e3 ... 8192, and hepinfer alone up to 1e6.

Everything is single-threaded (torch.set_num_threads(1), n_threads=1). Timings are the
median of --repeats runs after a warm-up, in wall-clock time or (--clock cpu) in CPU time of the
calling thread. Results are checked against each other before timing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from typing import Any, Callable

from hepinfer.bench import add_output_arguments, import_reason, output_path

# time.perf_counter (wall clock) or time.thread_time (CPU time of this thread: everything here is
# single-threaded, so it equals the wall time on an idle machine and ignores the time the thread
# waits for a core on a shared one); chosen by --clock
_clock: Callable[[], float] = time.perf_counter


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        times.append(_clock() - t0)
    return statistics.median(times)


def dense_torch_disco(score: Any, mass: Any, weights: Any) -> Any:
    """The DisCo repository's approach: n x n matrices and torch autograd (weighted dCor^2)."""
    import torch

    n = score.shape[0]
    w = weights * n / weights.sum()
    a = (score[:, None] - score[None, :]).abs()
    b = (mass[:, None] - mass[None, :]).abs()
    am, bm = (a * w).mean(1), (b * w).mean(1)
    A = a - am[:, None] - am[None, :] + (am * w).mean()
    B = b - bm[:, None] - bm[None, :] + (bm * w).mean()
    ab = (w * (A * B * w).mean(1)).mean()
    aa = (w * (A * A * w).mean(1)).mean()
    bb = (w * (B * B * w).mean(1)).mean()
    return ab / torch.sqrt(aa * bb)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hepinfer bench disco", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    p.add_argument("--tiny", action="store_true", help="n = 1000 and 4000 only: a few seconds")
    add_output_arguments(p, "disco")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dcor-cap", type=float, default=10.0, help="seconds; larger n skipped beyond it")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall clock (default) or CPU time of the calling thread (for a machine shared with other jobs)",
    )
    args = p.parse_args(argv)
    try:
        json_path = output_path(args, "disco")
    except ValueError as bad:
        p.error(str(bad))
    global _clock
    _clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    import numpy as np

    from hepinfer import disco

    try:
        import torch

        from hepinfer.train.decorrelation import disco_loss

        torch.set_num_threads(1)
    except ImportError as exc:
        print(f"part 2 (DisCo loss forward + backward) skipped: {import_reason(exc)}")
        torch = None
    try:
        import dcor
    except ImportError as exc:
        print(f"dcor skipped: {import_reason(exc)}")
        dcor = None

    repeats = 1 if args.quick or args.tiny else args.repeats
    sizes_value = [1000, 10_000, 100_000] if args.quick else [1000, 10_000, 100_000, 1_000_000]
    sizes_dense = [1000, 4096] if args.quick else [1000, 2048, 4096, 8192]
    sizes_grad_alone = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    if args.tiny:
        sizes_value, sizes_dense, sizes_grad_alone = [1000, 4000], [1000], [4000]
    rng = np.random.default_rng(2001_05310)
    results: dict[str, Any] = {
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "repeats": repeats,
        "sizes": {"value": sizes_value, "dense": sizes_dense, "grad_alone": sizes_grad_alone},
        "clock": args.clock,
        "value": [],
        "forward_backward": [],
    }

    # ---------------------------------------------------------------- part 1: value
    print("weighted dCor^2 (value only), single thread; dcor is unweighted")
    print(
        f"{'n':>9} {'hepinfer [s]':>13} {'dcor mergesort [s]':>19} {'dcor avl [s]':>13} {'x mergesort':>12} {'x avl':>8}"
    )
    last: dict[str, float] = {}
    prev_n = 1
    for n in sizes_value:
        x = rng.normal(size=n)
        y = 0.3 * x + rng.normal(size=n) + 100.0
        w = rng.uniform(0.5, 1.5, size=n)
        t_h = _median_time(lambda x=x, y=y, w=w: disco.distance_correlation(x, y, w), repeats)
        row: dict[str, Any] = {"n": n, "hepinfer_s": t_h}
        if dcor is not None:
            v = disco.distance_correlation(x, y)
            for method in ("mergesort", "avl"):
                prev = last.get(method)
                if prev is not None and (
                    prev > args.dcor_cap or prev * n / prev_n * math.log(n) / math.log(prev_n) > args.dcor_cap
                ):
                    row[f"dcor_{method}_s"] = None
                    continue
                t0 = _clock()
                ref = dcor.distance_correlation_sqr(x, y, method=method)
                t1 = _clock() - t0
                if abs(ref - v) > 1e-8 * max(abs(ref), 1e-2):
                    print(f"  WARNING: dcor {method} {ref!r} vs hepinfer {v!r}")
                t = (
                    t1
                    if repeats == 1
                    else statistics.median(
                        [t1]
                        + [
                            _median_time(
                                lambda m=method, x=x, y=y: dcor.distance_correlation_sqr(x, y, method=m), 1
                            )
                            for _ in range(repeats - 1)
                        ]
                    )
                )
                row[f"dcor_{method}_s"] = t
                last[method] = t
        prev_n = n
        results["value"].append(row)
        ms, av = row.get("dcor_mergesort_s"), row.get("dcor_avl_s")
        print(
            f"{n:>9} {t_h:>13.4f} {ms if ms is not None else float('nan'):>19.4f} {av if av is not None else float('nan'):>13.4f}"
            f" {(ms / t_h) if ms else float('nan'):>12.1f} {(av / t_h) if av else float('nan'):>8.1f}"
        )

    # ---------------------------------------------------------------- part 2: forward + backward
    if torch is not None:
        print("\nDisCo loss forward + backward (float64 torch tensor), single thread")
        print(f"{'n':>9} {'hepinfer [s]':>13} {'dense torch [s]':>16} {'speed-up':>9}")
        for n in sorted(set(sizes_dense + sizes_grad_alone)):
            s_np = rng.normal(size=n)
            m = torch.tensor(rng.exponential(50.0, size=n) + 20 * s_np)
            w = torch.tensor(rng.uniform(0.5, 1.5, size=n))

            def run_h(s_np: Any = s_np, m: Any = m, w: Any = w) -> Any:
                s = torch.tensor(s_np, requires_grad=True)
                disco_loss(s, m, w).backward()
                return s.grad

            t_h = _median_time(run_h, repeats)
            row = {"n": n, "hepinfer_s": t_h, "dense_torch_s": None}
            if n in sizes_dense:

                def run_d(s_np: Any = s_np, m: Any = m, w: Any = w) -> Any:
                    s = torch.tensor(s_np, requires_grad=True)
                    dense_torch_disco(s, m, w).backward()
                    return s.grad

                g_h, g_d = run_h(), run_d()
                err = float((g_h - g_d).abs().max() / g_d.abs().max())
                if err > 1e-6:
                    print(f"  WARNING: gradients differ, max rel {err:.2e}")
                row["dense_torch_s"] = _median_time(run_d, repeats)
                row["max_rel_grad_diff"] = err
            results["forward_backward"].append(row)
            td = row["dense_torch_s"]
            print(
                f"{n:>9} {t_h:>13.4f} {td if td else float('nan'):>16.4f} {(td / t_h) if td else float('nan'):>9.1f}"
            )

    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
