"""Seed corpora for the loader fuzzers that tests/data does not hold (used by .ci/fuzz).

    python tests/fuzz/make_seeds.py OUT_DIR

writes small real models, each into OUT_DIR/<target>/:

- onnx/: graphs built with onnx.helper covering every operator family the loader implements
  (dense layers, convolutions, gathers, shape arithmetic, reductions, comparisons, TopK,
  normalisations), with float, int64 and bool inputs and symbolic dimensions;
- lightgbm/: LightGBM models (binary with missing values and a categorical feature,
  multiclass, regression, random forest) trained on a few hundred random rows;
- xgboost_json/, xgboost_ubj/: XGBoost models that tests/data lacks (categorical splits,
  multi:softmax, a DART booster, feature names).

A library that is not installed is reported and skipped (the script still exits 0), so the
fuzzers start from whatever seeds are available.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _onnx_seeds(out: Path) -> int:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    f32 = TensorProto.FLOAT

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(array, name)

    def save(name: str, nodes, inputs, outputs, inits=(), opset: int = 17) -> None:
        graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz-seed"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        (out / f"gen_{name}.onnx").write_bytes(model.SerializeToString())

    def w(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    x4 = helper.make_tensor_value_info("x", f32, ["batch", 4])
    y2 = helper.make_tensor_value_info("y", f32, ["batch", 2])
    # dense layers with every activation the loader fuses or runs on its own
    acts = [
        "Relu",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "LeakyRelu",
        "Softplus",
        "HardSigmoid",
        "Gelu",
        "Erf",
        "Abs",
        "Neg",
        "Exp",
        "Sin",
        "Cos",
        "Sign",
        "Round",
        "Floor",
        "Ceil",
        "Reciprocal",
        "Sqrt",
        "Log",
    ]
    for i in range(0, len(acts), 4):
        group = acts[i : i + 4]
        nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h0"], transB=1)]
        prev = "h0"
        for k, act in enumerate(group):
            nodes.append(helper.make_node(act, [prev], [f"a{k}"]))
            prev = f"a{k}"
        nodes.append(helper.make_node("MatMul", [prev, "W1"], ["m"]))
        nodes.append(helper.make_node("Add", ["m", "b1"], ["y"]))
        save(
            f"mlp_{'_'.join(a.lower() for a in group)}",
            nodes,
            [x4],
            [y2],
            [init("W0", w(8, 4)), init("b0", w(8)), init("W1", w(8, 2)), init("b1", w(2))],
            opset=20,
        )
    # binary, comparison, logic and Where
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Div", ["m", "c"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["p"]),
        helper.make_node("Sub", ["p", "x"], ["s"]),
        helper.make_node("Max", ["s", "x", "c"], ["mx"]),
        helper.make_node("Min", ["mx", "x"], ["mn"]),
        helper.make_node("Sum", ["mn", "x"], ["sm"]),
        helper.make_node("Mean", ["sm", "x"], ["me"]),
        helper.make_node("Less", ["me", "c"], ["lt"]),
        helper.make_node("GreaterOrEqual", ["x", "c"], ["ge"]),
        helper.make_node("Xor", ["lt", "ge"], ["xo"]),
        helper.make_node("Not", ["xo"], ["nt"]),
        helper.make_node("And", ["nt", "ge"], ["an"]),
        helper.make_node("Or", ["an", "lt"], ["orr"]),
        helper.make_node("Where", ["orr", "me", "x"], ["wh"]),
        helper.make_node("Clip", ["wh", "lo", "hi"], ["cl"]),
        helper.make_node("ReduceSum", ["cl", "ax"], ["y"], keepdims=1),
    ]
    save(
        "elementwise_where",
        nodes,
        [x4],
        [helper.make_tensor_value_info("y", f32, ["batch", 1])],
        [
            init("c", w(4)),
            init("two", np.array(2.0, np.float32)),
            init("lo", np.array(-3.0, np.float32)),
            init("hi", np.array(3.0, np.float32)),
            init("ax", np.array([1], np.int64)),
        ],
    )
    # reductions, softmax and normalisations over a 3-d (batch, particles, features) input
    x3 = helper.make_tensor_value_info("x", f32, ["batch", "n", 3])
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "bb"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("Softmax", ["ln"], ["sm"], axis=1),
        helper.make_node("LogSoftmax", ["sm"], ["ls"], axis=-1),
        helper.make_node("ReduceMax", ["ls"], ["r1"], axes=[1], keepdims=0),
        helper.make_node("ReduceMean", ["x"], ["r2"], axes=[1], keepdims=0),
        helper.make_node("ReduceMin", ["x"], ["r3"], axes=[1], keepdims=0),
        helper.make_node("ReduceProd", ["x"], ["r4"], axes=[1], keepdims=0),
        helper.make_node("ReduceL2", ["x"], ["r5"], axes=[1], keepdims=0),
        helper.make_node("ReduceSumSquare", ["x"], ["r6"], axes=[1], keepdims=0),
        helper.make_node("Concat", ["r1", "r2", "r3", "r4", "r5", "r6"], ["y"], axis=1),
    ]
    save(
        "deepsets_reductions",
        nodes,
        [x3],
        [helper.make_tensor_value_info("y", f32, ["batch", 18])],
        [init("g", w(3)), init("bb", w(3))],
        opset=17,
    )
    # convolution and batch norm (EdgeConv-style 1x1 convolutions over particles)
    xc = helper.make_tensor_value_info("x", f32, ["batch", 3, 5])
    nodes = [
        helper.make_node(
            "Conv", ["x", "K", "kb"], ["c"], kernel_shape=[3], pads=[1, 1], strides=[1], dilations=[1]
        ),
        helper.make_node("BatchNormalization", ["c", "s", "bias", "mean", "var"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Conv", ["r", "K2"], ["c2"], kernel_shape=[1], group=2),
        helper.make_node("Transpose", ["c2"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["t"], ["y"], axis=1),
    ]
    save(
        "conv1d_batchnorm",
        nodes,
        [xc],
        [helper.make_tensor_value_info("y", f32, ["batch", 20])],
        [
            init("K", w(4, 3, 3)),
            init("kb", w(4)),
            init("s", w(4)),
            init("bias", w(4)),
            init("mean", w(4)),
            init("var", np.abs(w(4)) + 0.1),
            init("K2", w(4, 2, 1)),
        ],
    )
    # shape arithmetic: Shape, Gather, Slice, Concat, Reshape, Unsqueeze, Squeeze, Expand, Tile, Split, Range
    i64 = TensorProto.INT64
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Concat", ["b1", "four"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["r"]),
        helper.make_node("Slice", ["r", "st", "en", "ax1", "step"], ["sl"]),
        helper.make_node("Split", ["sl", "split"], ["p0", "p1"], axis=1),
        helper.make_node("Tile", ["p0", "reps"], ["tl"]),
        helper.make_node("Expand", ["p1", "exshape"], ["ex"]),
        helper.make_node("Add", ["tl", "ex"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "ax2"], ["u"]),
        helper.make_node("Squeeze", ["u", "ax2"], ["q"]),
        helper.make_node("Size", ["q"], ["n"]),
        helper.make_node("Range", ["zero_s", "three", "one_s"], ["rg"]),
        helper.make_node("Cast", ["rg"], ["rgf"], to=f32),
        helper.make_node(
            "ConstantOfShape", ["one_vec"], ["ones"], value=helper.make_tensor("v", f32, [1], [0.5])
        ),
        helper.make_node("Mul", ["rgf", "ones"], ["rr"]),
        helper.make_node("ReduceSum", ["rr"], ["rs"], keepdims=0),
        helper.make_node("Add", ["q", "rs"], ["y"]),
        helper.make_node("Cast", ["n"], ["nn"], to=f32),
    ]
    x2 = helper.make_tensor_value_info("x", f32, ["batch", 2, 2])
    save(
        "shape_arithmetic",
        nodes,
        [x2],
        [helper.make_tensor_value_info("y", f32, ["batch", 2]), helper.make_tensor_value_info("nn", f32, [])],
        [
            init("zero", np.array(0, np.int64)),
            init("ax0", np.array([0], np.int64)),
            init("four", np.array([4], np.int64)),
            init("st", np.array([0], np.int64)),
            init("en", np.array([4], np.int64)),
            init("ax1", np.array([1], np.int64)),
            init("step", np.array([1], np.int64)),
            init("split", np.array([2, 2], np.int64)),
            init("reps", np.array([1, 1], np.int64)),
            init("exshape", np.array([1, 2], np.int64)),
            init("ax2", np.array([2], np.int64)),
            init("zero_s", np.array(0, np.int64)),
            init("three", np.array(3, np.int64)),
            init("one_s", np.array(1, np.int64)),
            init("one_vec", np.array([3], np.int64)),
        ],
        opset=17,
    )
    # integer inputs: gathers with indices from the caller, TopK, Identity, Dropout, Constant
    idx = helper.make_tensor_value_info("idx", i64, ["batch", 3])
    nodes = [
        helper.make_node("Constant", [], ["emb"], value=init("e", w(7, 2))),
        helper.make_node("Gather", ["emb", "idx"], ["g"], axis=0),
        helper.make_node("ReduceSum", ["g", "ax1"], ["gs"], keepdims=0),
        helper.make_node("GatherElements", ["x", "idx"], ["ge"], axis=1),
        helper.make_node("TopK", ["x", "k"], ["tv", "ti"], axis=-1, largest=1, sorted=1),
        helper.make_node("Identity", ["tv"], ["id"]),
        helper.make_node("Dropout", ["id"], ["dr"]),
        helper.make_node("Concat", ["gs", "ge", "dr"], ["y"], axis=1),
    ]
    save(
        "gathers_topk",
        nodes,
        [x4, idx],
        [
            helper.make_tensor_value_info("y", f32, ["batch", 7]),
            helper.make_tensor_value_info("ti", i64, ["batch", 2]),
        ],
        [init("ax1", np.array([1], np.int64)), init("k", np.array([2], np.int64))],
        opset=17,
    )
    # a bool input and a fixed batch
    mask = helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 4])
    xf = helper.make_tensor_value_info("x", f32, [2, 4])
    nodes = [
        helper.make_node("Where", ["mask", "x", "zero_f"], ["wx"]),
        helper.make_node("Equal", ["wx", "zero_f"], ["eq"]),
        helper.make_node("Cast", ["eq"], ["eqf"], to=f32),
        helper.make_node("Greater", ["wx", "eqf"], ["gt"]),
        helper.make_node("LessOrEqual", ["wx", "eqf"], ["le"]),
        helper.make_node("Or", ["gt", "le"], ["y"]),
    ]
    save(
        "bool_mask_fixed_batch",
        nodes,
        [xf, mask],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, [2, 4])],
        [init("zero_f", np.array(0.0, np.float32))],
        opset=17,
    )

    # external data: one seed per file of the harness's model folder (fuzz_onnx.cpp), so that
    # mutations reach the symlinks out of the folder, to /dev/zero, a FIFO and a large file
    def external(name: str, dims, location: str, offset: int | None, length: int | None) -> onnx.TensorProto:
        t = TensorProto()
        t.name, t.data_type, t.data_location = name, f32, TensorProto.EXTERNAL
        t.dims.extend(dims)
        for k, v in (("location", location), ("offset", offset), ("length", length)):
            if v is not None:
                e = t.external_data.add()
                e.key, e.value = k, str(v)
        return t

    for i, (location, offset, length) in enumerate(
        [
            ("w.bin", 16, 16),
            ("w.bin", 0, None),
            ("big.bin", 1_000_000_000, 16),
            ("sub/w.bin", 64, 16),
            ("link_inside.bin", 0, 16),
            ("link_outside.bin", 0, 16),
            ("link_dir/secret.bin", 0, 16),
            ("link_zero.bin", 0, 16),
            ("fifo.bin", 0, 16),
            ("big.bin", 0, None),
        ]
    ):
        n = 4 if length is not None else 1024
        x = helper.make_tensor_value_info("x", f32, ["batch", n])
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            f"external{i}",
            [x],
            [helper.make_tensor_value_info("y", f32, ["batch", n])],
            initializer=[external("w", [n], location, offset, length)],
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fuzz-seed"
        )
        model.ir_version = 8  # not checked: the checker would look for the files
        (out / f"gen_external_{i}.onnx").write_bytes(model.SerializeToString())

    # load-time memory (sized so that a loader without a total budget goes past the harness's
    # -rss_limit_mb, each tensor staying under its 16 MiB per-tensor limit): many fixed-shape
    # inputs (a dry run allocates them: 16 x 64 MiB) and 200 Expand branches of 4 MiB all live
    # at once, from an input (dry run) and from a constant (folding)
    names = [f"x{i}" for i in range(16)]
    save(
        "many_fixed_inputs",
        [helper.make_node("Sum", names, ["y"])],
        [helper.make_tensor_value_info(n, f32, [1, 1 << 24]) for n in names],
        [helper.make_tensor_value_info("y", f32, [1, 1 << 24])],
    )
    for src in ("x", "one"):
        nb = 200
        nodes = [helper.make_node("Expand", [src, "shape"], [f"e{i}"]) for i in range(nb)]
        nodes += [helper.make_node("ReduceSum", [f"e{i}", "ax1"], [f"r{i}"]) for i in range(nb)]
        nodes += [
            helper.make_node(
                "Add", ["x" if i == 0 else f"a{i - 1}", f"r{i}"], ["y" if i == nb - 1 else f"a{i}"]
            )
            for i in range(nb)
        ]
        save(
            f"expand_branches_{src}",
            nodes,
            [helper.make_tensor_value_info("x", f32, [1, 1])],
            [helper.make_tensor_value_info("y", f32, [1, 1])],
            [
                init("shape", np.array([1, 1 << 20], np.int64)),
                init("ax1", np.array([1], np.int64)),
                init("one", np.ones((1, 1), np.float32)),
            ],
        )
    # If on a runtime condition (the TorchScript exporter's squeeze of a dimension it cannot see),
    # nested one level, with a branch initializer: the sub-graph reader and the inlining
    then_inner = helper.make_graph(
        [helper.make_node("Squeeze", ["x3", "ax"], ["r"])],
        "then_inner",
        [],
        [helper.make_tensor_value_info("r", f32, ["batch", 3])],
        initializer=[init("ax", np.array([1], np.int64))],
    )
    else_inner = helper.make_graph(
        [helper.make_node("ReduceSum", ["x3", "ax1"], ["r"], keepdims=0)],
        "else_inner",
        [],
        [helper.make_tensor_value_info("r", f32, ["batch", 3])],
    )
    then_outer = helper.make_graph(
        [helper.make_node("If", ["c"], ["r"], then_branch=then_inner, else_branch=else_inner)],
        "then_outer",
        [],
        [helper.make_tensor_value_info("r", f32, ["batch", 3])],
    )
    else_outer = helper.make_graph(
        [
            helper.make_node("Relu", ["x3"], ["t"]),
            helper.make_node("ReduceMax", ["t"], ["r"], axes=[1], keepdims=0),
        ],
        "else_outer",
        [],
        [helper.make_tensor_value_info("r", f32, ["batch", 3])],
    )
    save(
        "if_squeeze",
        [
            helper.make_node("Shape", ["x3"], ["s"]),
            helper.make_node("Gather", ["s", "i1"], ["d"], axis=0),
            helper.make_node("Equal", ["d", "one_i"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then_outer, else_branch=else_outer, name="if"),
        ],
        [helper.make_tensor_value_info("x3", f32, ["batch", "k", 3])],
        [helper.make_tensor_value_info("y", f32, ["batch", 3])],
        [
            init("i1", np.array(1, np.int64)),
            init("one_i", np.array(1, np.int64)),
            init("ax1", np.array([1], np.int64)),
        ],
    )
    return len(list(out.iterdir()))


def _lightgbm_seeds(out: Path) -> int:
    import lightgbm as lgb

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    n = 300
    X = rng.normal(size=(n, 4))
    X[rng.random(size=X.shape) < 0.1] = np.nan
    X[:, 3] = rng.integers(0, 6, size=n)
    y_bin = (np.nan_to_num(X[:, 0]) + (X[:, 3] == 2) > 0.3).astype(int)
    y_reg = np.nan_to_num(X[:, 1]) * 2 + X[:, 3]
    y_multi = rng.integers(0, 3, size=n)
    base = {"verbose": -1, "num_leaves": 5, "min_data_in_leaf": 5, "seed": 1}
    cases = {
        "binary_categorical": ({"objective": "binary", "max_cat_to_onehot": 2}, y_bin, [3]),
        "binary_zero_as_missing": ({"objective": "binary", "zero_as_missing": True}, y_bin, []),
        "multiclass": ({"objective": "multiclass", "num_class": 3}, y_multi, []),
        "multiclassova": ({"objective": "multiclassova", "num_class": 3}, y_multi, []),
        "regression": ({"objective": "regression"}, y_reg, []),
        "poisson": ({"objective": "poisson"}, np.abs(y_reg), []),
        "random_forest": (
            {"objective": "binary", "boosting": "rf", "bagging_fraction": 0.7, "bagging_freq": 1},
            y_bin,
            [],
        ),
    }
    for name, (params, y, cat) in cases.items():
        ds = lgb.Dataset(X, y, categorical_feature=cat or "auto", free_raw_data=False)
        booster = lgb.train({**base, **params}, ds, num_boost_round=3)
        (out / f"gen_{name}.txt").write_text(booster.model_to_string())
    return len(list(out.iterdir()))


def _xgboost_seeds(out_json: Path, out_ubj: Path) -> int:
    import xgboost as xgb

    out_json.mkdir(parents=True, exist_ok=True)
    out_ubj.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    n = 300
    X = rng.normal(size=(n, 3))
    X[rng.random(size=X.shape) < 0.1] = np.nan
    X[:, 2] = rng.integers(0, 5, size=n)
    y_bin = (np.nan_to_num(X[:, 0]) + (X[:, 2] == 1) > 0.2).astype(int)
    y_multi = rng.integers(0, 3, size=n)
    import pandas as pd

    frame = pd.DataFrame({"pt": X[:, 0], "eta": X[:, 1], "flavour": pd.Categorical(X[:, 2].astype(int))})
    cases = {
        "categorical": ({"objective": "binary:logistic", "max_cat_to_onehot": 1}, frame, y_bin, True),
        "softmax": ({"objective": "multi:softmax", "num_class": 3}, X, y_multi, False),
        "dart": ({"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.3}, X, y_bin, False),
        "poisson_named": (
            {"objective": "count:poisson"},
            pd.DataFrame(X, columns=["a", "b", "c"]),
            np.abs(np.nan_to_num(X[:, 0])),
            False,
        ),
    }
    for name, (params, data, y, categorical) in cases.items():
        dm = xgb.DMatrix(data, y, enable_categorical=categorical)
        booster = xgb.train({"max_depth": 2, "seed": 1, **params}, dm, num_boost_round=3)
        booster.save_model(str(out_json / f"gen_{name}.json"))
        booster.save_model(str(out_ubj / f"gen_{name}.ubj"))
    return 2 * len(cases)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = Path(argv[1])
    for what, make in [
        ("onnx", lambda: _onnx_seeds(out / "onnx")),
        ("lightgbm", lambda: _lightgbm_seeds(out / "lightgbm")),
        ("xgboost", lambda: _xgboost_seeds(out / "xgboost_json", out / "xgboost_ubj")),
    ]:
        try:
            print(f"make_seeds: {what}: {make()} seed models")
        except ImportError as e:
            print(f"make_seeds: {what}: skipped ({e})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
