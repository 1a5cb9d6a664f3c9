"""Single dense layers (MatMul + Add + Relu) and the 30-64-64-64-1 MLP, hepinfer vs onnxruntime
(one thread each), interleaved call by call in one process; prints the medians of the repeats,
(in process CPU time, see clock()) and their ratio (onnxruntime time / hepinfer time: above 1 means hepinfer is faster) and the ratio
of the fastest repeats ("best", steadier on a loaded machine). A measurement script for
the GEMM kernels (issue 16), not a test: `python benchmarks/dense_gemm.py [--repeats 7]`."""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from hepinfer.nn import Model

F = TensorProto.FLOAT


def cpu_model() -> str:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        return platform.processor()
    return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def mlp(rng, sizes):
    nodes, inits, h = [], {}, "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits[f"w{i}"] = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        inits[f"b{i}"] = rng.standard_normal(n).astype(np.float32) * 0.1
        nodes.append(helper.make_node("MatMul", [h, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]))
        last = i == len(sizes) - 2
        if last and len(sizes) > 2:
            h = f"a{i}"
        else:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
            h = f"r{i}"
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, ["batch", sizes[0]])],
        [helper.make_tensor_value_info(h, F, ["batch", sizes[-1]])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def clock() -> float:
    """CPU time of this process (both engines run one thread in the calling thread): the time a
    loaded machine spends running others is not counted, unlike the wall clock."""
    return time.process_time()


def timed(fn, reps):
    t0 = clock()
    for _ in range(reps):
        fn()
    return (clock() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated layer names (e.g. 512x512,mlp)")
    ap.add_argument("--batches", default="", help="comma-separated batch sizes")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    try:
        from hepinfer import _core

        kernels = _core.nn_cpu_kernels()
    except AttributeError:
        kernels = "(no nn_cpu_kernels: before issue 16)"
    print(f"cpu: {cpu_model()}; kernels: {kernels}")
    cases = [
        ((k, n), b)
        for k, n in [(256, 256), (512, 512), (1024, 1024), (17, 256), (256, 512), (512, 368)]
        for b in (1, 64, 256, 10000)
    ]
    cases += [("mlp", b) for b in (1, 256, 10000)]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if ("mlp" if c[0] == "mlp" else f"{c[0][0]}x{c[0][1]}") in keep]
    if args.batches:
        cases = [c for c in cases if str(c[1]) in args.batches.split(",")]
    print(f"{'layer':>14} {'batch':>6} {'hepinfer us':>12} {'ort us':>10} {'ratio':>6} {'best':>6}")
    for shape, batch in cases:
        sizes = [30, 64, 64, 64, 1] if shape == "mlp" else list(shape)
        blob = mlp(rng, sizes)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        mine = Model.load(blob)
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        ref = sess.run(None, {"x": x})[0]
        got = mine.predict(x, n_threads=1)
        np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)
        flops = 2 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        reps = max(1, min(500, int(5e7 / max(flops, 1))))
        th, to = [], []
        for _ in range(args.repeats):
            # alternate the two engines call by call (a loaded machine slows both alike); each
            # repeat's time is the mean over its calls
            h = o = 0.0
            for _ in range(reps):
                t0 = clock()
                mine.predict(x, n_threads=1)
                t1 = clock()
                sess.run(None, {"x": x})
                t2 = clock()
                h += t1 - t0
                o += t2 - t1
            th.append(h / reps)
            to.append(o / reps)
        mh, mo = statistics.median(th), statistics.median(to)
        best = min(to) / min(th)
        name = "mlp" if shape == "mlp" else f"{shape[0]}x{shape[1]}"
        print(
            f"{name:>14} {batch:>6} {mh * 1e6:>12.1f} {mo * 1e6:>10.1f} {mo / mh:>6.2f} {best:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
