"""Python smoke run of hepinfer._core built with AddressSanitizer + UBSan (.ci/sanitize).

    LD_PRELOAD=$(g++ -print-file-name=libasan.so) PYTHONPATH=<site> python .ci/sanitize_smoke.py tests/data [capi_test]

Exercises every engine through the Python module: forests (XGBoost JSON/UBJ, LightGBM, TMVA)
on float32/float64/strided inputs, single rows, leaf indices, threads; the same model files
truncated and with bytes flipped (each must load or raise hepinfer.Error, never crash);
ONNX networks (committed files, one written here with onnx.helper, corrupted bytes);
DisCo values and gradients; the jagged kernels; the C program of tests/capi (ASan-built). Any memory error
aborts the interpreter with the sanitizer's report; a wrong result raises AssertionError.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import hepinfer
import hepinfer.jagged as hj
from hepinfer import Forest, InputError, Model, ModelFormatError
from hepinfer.disco import distance_correlation, distance_correlation_and_grad

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data")
RNG = np.random.default_rng(20261123)


def mutations(content: bytes, n: int) -> list[bytes]:
    """Truncations and random byte flips of a file's content."""
    out = [content[: len(content) * k // 8] for k in range(8)]
    for _ in range(n):
        b = bytearray(content)
        for _ in range(int(RNG.integers(1, 8))):
            i = int(RNG.integers(0, len(b)))
            b[i] = int(RNG.integers(0, 256))
        out.append(bytes(b))
    return out


def expect_error(fn, kind=hepinfer.Error) -> None:
    try:
        fn()
    except kind:
        return
    raise AssertionError(f"{fn} did not raise {kind.__name__}")


def forests() -> None:
    files = sorted((DATA / "xgboost").glob("*.json")) + sorted((DATA / "xgboost").glob("*.ubj"))
    files += sorted((DATA / "lightgbm").glob("*.txt")) + sorted((DATA / "tmva").glob("*.xml"))
    assert len(files) >= 10, files
    for f in files:
        forest = Forest.load(f)
        nf = forest.n_features
        x = RNG.normal(size=(301, nf)).astype(np.float32)
        x[::7, 0] = np.nan
        x[::11, -1] = np.inf
        p = forest.predict(x)
        assert np.array_equal(p, forest.predict(x, n_threads=3), equal_nan=True), f
        assert np.array_equal(p, forest.predict(x.astype(np.float64)), equal_nan=True) or "lightgbm" in str(
            f
        ), f
        wide = np.zeros((301, 2 * nf), dtype=np.float32)
        wide[:, ::2] = x
        assert np.array_equal(p, forest.predict(wide[:, ::2]), equal_nan=True), f
        assert np.array_equal(p, forest.predict(np.asfortranarray(x)), equal_nan=True), f
        forest.predict(x, output="margin")
        leaves = forest.predict_leaf(x)
        assert leaves.shape == (301, forest.n_trees), f
        one = np.asarray(forest.predict_one(x[5]))
        assert np.array_equal(one.ravel(), np.asarray(p[5]).ravel(), equal_nan=True), f
        assert forest.predict(x[:0]).shape[0] == 0
        expect_error(lambda f=forest, a=x: f.predict(a[:, :-1]), InputError)
        expect_error(lambda f=forest, a=x: f.predict_one(a[0, :-1]), InputError)
        content = f.read_bytes()
        for bad in mutations(content, 40):
            try:
                g = Forest.load(bad)
            except hepinfer.Error:
                continue
            if g.n_features == nf:
                g.predict(x[:20])
        print(
            f"  forest {f.name}: {forest.n_trees} trees, {len(mutations(content, 0))}+40 corrupted copies",
            flush=True,
        )


def tiny_onnx_model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(RNG.normal(size=(6, 5)).astype(np.float32), "w")
    gamma = numpy_helper.from_array(np.ones(5, np.float32), "gamma")
    beta = numpy_helper.from_array(np.zeros(5, np.float32), "beta")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["n"], axis=-1),
        helper.make_node("Tanh", ["n"], ["t"]),
        helper.make_node("ReduceMean", ["t"], ["y"], axes=[1], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "smoke",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [w, gamma, beta],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def relu_fed_model() -> bytes:
    """x -> Relu -> Gemm(70, 100) -> Sigmoid: the dense layer's input is half exact zeros, so its
    rows take the zero-skipping kernel (gathered non-zero lists, 4 + 3 panels, a column tail)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array((RNG.normal(size=(70, 100)) / 8).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.normal(size=100).astype(np.float32), "b")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Gemm", ["r", "w", "b"], ["h"]),
        helper.make_node("Sigmoid", ["h"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "relu_fed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 70])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 100])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def networks() -> None:
    files = sorted((DATA / "nn").glob("*.onnx")) + [DATA / "onnx" / "mlp_3_4_2.onnx"]
    blobs = [(f.name, f.read_bytes()) for f in files] + [
        ("onnx.helper model", tiny_onnx_model()),
        ("ReLU-fed dense layer", relu_fed_model()),
    ]
    for name, blob in blobs:
        model = Model.load(blob)
        shape = [d if isinstance(d, int) and d >= 0 else 37 for d in model.inputs[0].shape]
        x = RNG.normal(size=shape).astype(np.float32)
        y = model.predict(x)
        assert np.array_equal(y, model.predict(x, n_threads=3)), name
        assert np.array_equal(y[:1], model.predict(x[:1])), name
        expect_error(lambda m=model, a=x: m.predict(a[..., :-1]), InputError)
        for bad in mutations(blob, 60):
            try:
                m = Model.load(bad)
            except hepinfer.Error:
                continue
            try:
                m.predict(x)
            except hepinfer.Error:
                pass
        print(f"  network {name}: output {np.shape(y)}", flush=True)
    expect_error(lambda: Model.load(DATA / "onnx" / "unsupported_hardmax.onnx"), ModelFormatError)


def disco() -> None:
    for n in (2, 3, 4, 17, 1000):
        x = np.round(RNG.normal(size=n), 1)
        y = RNG.normal(size=n)
        w = RNG.uniform(0.1, 2.0, size=n)
        v = distance_correlation(x, y, weights=w)
        v2, g = distance_correlation_and_grad(x, y, weights=w)
        assert v == v2 and g.shape == (n,) and np.all(np.isfinite(g))
        if n >= 4:
            distance_correlation_and_grad(x, y, unbiased=True)
        x2 = RNG.normal(size=(n, 3))
        distance_correlation(x2, y, n_threads=2)
        distance_correlation_and_grad(x2, y, weights=w)
    expect_error(lambda: distance_correlation([1.0, np.nan, 2.0], [1.0, 2.0, 3.0]), InputError)
    expect_error(lambda: distance_correlation([1.0], [1.0]), InputError)
    expect_error(lambda: distance_correlation([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError)
    expect_error(lambda: distance_correlation([1.0, 2.0], [1.0, 2.0], weights=[1.0, -1.0]), InputError)
    print("  disco: values and gradients, 1-D and vector, weights and errors", flush=True)


def jagged() -> None:
    counts = RNG.integers(0, 9, size=500)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    pt = np.round(RNG.exponential(30.0, size=n), 0)
    pt[::13] = np.nan
    for k in (1, 4, 50):
        (sel_off, _), _ = hj.top_k((offsets, pt), k, n_threads=2)
        assert np.all(np.diff(sel_off) <= k)
    import awkward as ak

    jets = ak.unflatten(
        ak.zip({"pt": pt, "eta": RNG.normal(size=n) * 2, "phi": RNG.uniform(-np.pi, np.pi, size=n)}), counts
    )
    hj.leading(jets, 4, by="pt", fill=-1.0, n_threads=3)
    hj.leading(jets, 4, by="pt", fill=-1.0, stacked=True, return_index=True, n_threads=3)
    hj.event_sum(jets.pt)
    hj.event_max(jets.pt)
    hj.event_mean(jets.eta)
    hj.event_count(jets)
    hj.min_delta_r(jets, jets[:, :2])
    hj.to_px_py_pz_e(np.asarray(pt), np.ones(n), np.zeros(n), np.full(n, 0.1))
    hj.delta_r(np.zeros(n), np.ones(n), np.ones(n), np.zeros(n))
    bad = offsets.copy()
    bad[3] = bad[4] + 5
    expect_error(lambda: hj.top_k((bad, pt), 2), ValueError)
    expect_error(lambda: hj.top_k((offsets, pt[:-1]), 2), ValueError)
    print("  jagged: top_k, leading, reductions, min_delta_r, conversions, bad offsets", flush=True)


def c_api() -> None:
    """The C program of tests/capi, built against the ASan core by .ci/sanitize (argv[2])."""
    if len(sys.argv) < 3:
        print("  C API: skipped (no capi_test given)")
        return
    exe = sys.argv[2]
    models = [
        DATA / "xgboost" / "xgb2.1.4_multi_softprob.json",
        DATA / "xgboost" / "xgb1.7.6_binary_logistic.ubj",
        DATA / "lightgbm" / "multiclass.txt",
        DATA / "tmva" / "fisher.xml",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "rows.csv"
        for model in models:
            forest = Forest.load(model)
            rows = RNG.normal(size=(40, forest.n_features))
            rows[RNG.random(rows.shape) < 0.1] = np.nan
            np.savetxt(csv, rows, delimiter=",", fmt="%.17g")
            rows = np.loadtxt(csv, delimiter=",", ndmin=2)
            proc = subprocess.run([exe, str(model), str(csv)], capture_output=True, text=True, errors="replace", check=False)
            assert proc.returncode == 0, (model, proc.stdout[-2000:], proc.stderr[-4000:])
            lines: dict = {}
            for line in proc.stdout.splitlines():
                tag, _, rest = line.partition(" ")
                lines.setdefault(tag, []).append(rest)
            batch = np.array([[float(v) for v in line.split(",")] for line in lines["batch"]])
            assert np.array_equal(batch, forest.predict(rows).reshape(len(rows), -1), equal_nan=True), model
            assert lines["checks"] == ["ok"], proc.stderr
            assert len(lines["error"]) > 10  # the program's own error-path calls
        bad = Path(tmp) / "bad.json"
        for i, content in enumerate(mutations(models[0].read_bytes(), 10)):
            bad.write_bytes(content)
            proc = subprocess.run([exe, str(bad), str(csv)], capture_output=True, text=True, errors="replace", check=False)
            assert proc.returncode in (0, 1), (i, proc.returncode, proc.stderr[-4000:])
    # 8 threads failing at once, each reading its own last error; n_threads = 64 vs 1 (no
    # RLIMIT_AS here: ASan's shadow memory does not fit under an address-space limit)
    for args in (["--error-threads", str(models[0])], ["--n-threads", "64", str(models[0]), "20000"]):
        proc = subprocess.run([exe, *args], capture_output=True, text=True, errors="replace", check=False)
        assert proc.returncode == 0 and proc.stdout.split()[-1] == "ok", (args, proc.stdout[-2000:], proc.stderr[-4000:])
    print("  C API: load, predict, every error path, corrupted files, per-thread errors, n_threads", flush=True)


def main() -> None:
    for stage in (forests, networks, disco, jagged, c_api):
        t0 = time.perf_counter()
        stage()
        print(f"{stage.__name__}: {time.perf_counter() - t0:.1f} s", flush=True)
    print("sanitize smoke: OK")


if __name__ == "__main__":
    main()
