"""Standalone C++ code generation for tree ensembles and small MLPs.

:func:`emit_cpp` writes ONE self-contained C++17 header that evaluates a forest loaded
by hepinfer (XGBoost, LightGBM or TMVA BDT) with exactly the engine's results: the same
float32 rounding of inputs and thresholds as XGBoost and TMVA, LightGBM's double
comparisons, default directions for NaN, LightGBM's zero-as-missing and categorical
bitsets, TMVA's Fisher cuts and input transformations, multiclass groups, the base
score and the objective's output function. The header needs nothing but the C++
standard library::

    hepinfer.codegen.emit_cpp("model.json", "tagger.hpp", name="tagger")
    # hepinfer codegen model.json -o tagger.hpp

and in C++::

    #include "tagger.hpp"
    double score = tagger::predict(row);        // row: const float* or const double*
    tagger::predict(row, out);                  // all outputs (multiclass)
    tagger::margin(row, out);                   // before the objective's link
    tagger::predict_leaf(row, leaves);          // leaf index per tree, as predict_leaf

Layout of the generated code: trees made only of plain numerical splits, of depth up to
10, are padded to complete trees of one common depth and stored as ``constexpr`` arrays of
(feature, threshold) pairs; each tree is walked a fixed number of steps by adding the
comparison result to the index (branch-free, eight trees interleaved), with NaN mapped
beforehand to -inf or +inf according to each node's default direction. Other trees
(categorical, zero-as-missing, Fisher cuts, deep trees) become one nested conditional
expression each, or beyond 64 levels one flat labelled ``if``/``goto`` statement per node
(trees thousands of levels deep compile too). ``layout="branches"`` forces the latter for
every tree. Strings from the model (file name, objective, feature and ONNX node names) are
escaped: comments cannot be ended or spliced, feature names are exact string literals.

Exactness notes: compile without ``-ffast-math``; TMVA models with Fisher cuts or
transformations also need ``-ffp-contract=off`` when the target has FMA instructions
(e.g. ``-march=native``), since the engine does not contract ``a*b+c``.

``precision="fixed<W,I>"`` (numerical splits only) evaluates in W-bit fixed point with I
integer bits (sign included), as firmware does: inputs are floored to multiples of
2^-(W-I) and saturated to the range, thresholds are replaced by the grid value that keeps
every decision of an input on the grid unchanged, leaves and the base score are rounded
to the nearest grid value and summed exactly in 64-bit integers. Consequently: for inputs
that lie on the grid and within range, every decision equals the engine's and each margin
differs from the engine's by at most (number of trees in that output + 1) * 2^-(W-I+1)
(plus the engine's own float32 rounding of XGBoost sums); an input off the grid can take
the other branch only when it lies within 2^-(W-I) above a threshold.

MLPs: ``emit_cpp("mlp.onnx", "tagger.hpp", name="tagger")`` reads a one-input, one-output
ONNX network made of a single chain of layers (what torch exports for ``nn.Sequential`` MLPs:
Gemm or MatMul + Add, Relu, LeakyRelu, Elu, Selu, Sigmoid, Tanh, Gelu (exact and tanh forms),
Clip, Softmax over the features, Flatten/Identity/Dropout/Reshape/Cast to float, and
BatchNormalization or Add/Sub/Mul/Div by constants, which are folded into the neighbouring
dense layer) with the ``onnx`` package, and writes the weights as ``constexpr`` arrays of
fixed sizes; ``tagger::predict(row, out)`` (``row``: any arithmetic type) and, for one output,
``float tagger::predict(row)``. Any other node is refused with an InputError naming it.
``precision``: ``"float"`` (float32 weights, activations and sums, as the engine: results agree
to about 1e-6 relative), ``"double"``, ``"float16"`` (activations rounded to ``_Float16`` after
every layer, weights rounded to float16, products summed in float32; needs GCC >= 12 or Clang)
or ``"fixed<W,I>"`` (ap_fixed<W,I,AP_RND,AP_SAT>-like: values are multiples of 2^-(W-I),
rounded to the nearest with ties towards +inf and saturated; dense layers accumulate exactly in
64-bit integers and round once; ReLU is exact; other activations and softmax are evaluated in
double from the fixed-point value and rounded back, as a fine lookup table would).
:func:`mlp_error_bound` gives, per event, a proven bound on the difference between the
float16/fixed-point header and exact arithmetic (inf where a value could saturate).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError

__all__ = ["emit_cpp", "generate_cpp", "main", "mlp_error_bound"]

PathLike = Union[str, "os.PathLike[str]"]

_LEAF, _NUMERICAL, _CATEGORICAL, _LINEAR = 0, 1, 2, 3
_LESS, _LESS_EQUAL = 0, 1
_MAX_ARRAY_DEPTH = 10
_NEST_DEPTH = 64  # branch trees deeper than this are written as flat labelled statements
_INTERLEAVE = 8  # complete trees walked together (independent chains of loads overlap)
_ZERO_BAND = float(np.float32(1e-35))
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORDS = {
    "alignas",
    "alignof",
    "and",
    "auto",
    "bool",
    "break",
    "case",
    "catch",
    "char",
    "class",
    "const",
    "constexpr",
    "continue",
    "default",
    "delete",
    "do",
    "double",
    "else",
    "enum",
    "explicit",
    "export",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "namespace",
    "new",
    "not",
    "operator",
    "or",
    "private",
    "protected",
    "public",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "template",
    "this",
    "throw",
    "true",
    "try",
    "typedef",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "while",
    "std",
    "detail",
}


# ------------------------------------------------------------------------- numbers
def _f32(v: float) -> float:
    return float(np.float32(v))


def _strict_float(t: float, op: int) -> float:
    """The float f with (float x) OP t  <=>  x < f for every float x (x not NaN): the engines' rule."""
    return _core.split_threshold(t, op, True)


def _strict_double(t: float, op: int) -> float:
    return _core.split_threshold(t, op, False)


def _lit_double(v: float) -> str:
    if math.isnan(v):
        return "std::numeric_limits<double>::quiet_NaN()"
    if math.isinf(v):
        return ("-" if v < 0 else "") + "std::numeric_limits<double>::infinity()"
    return _short_hex(v)


def _short_hex(v: float) -> str:
    """Exact hexadecimal literal (C++17) without trailing zeros: 0x1.8p+1."""
    return re.sub(r"\.?0+p", lambda m: ".p" if m.group(0).startswith(".") else "p", float(v).hex())


def _lit_float(v: float) -> str:
    if math.isnan(v):
        return "std::numeric_limits<float>::quiet_NaN()"
    if math.isinf(v):
        return ("-" if v < 0 else "") + "std::numeric_limits<float>::infinity()"
    assert _f32(v) == v
    return _short_hex(v) + "f"


def _parse_precision(precision: str) -> tuple[str, int, int]:
    p = precision.replace(" ", "")
    if p in ("float", "double"):
        return p, 0, 0
    m = re.fullmatch(r"fixed<(\d+),(-?\d+)>", p)
    if m:
        w, i = int(m.group(1)), int(m.group(2))
        if not 2 <= w <= 48 or not 1 <= i <= w:
            raise InputError(
                f"precision {precision!r}: need 2 <= W <= 48 total bits and 1 <= I <= W integer bits"
            )
        return "fixed", w, i
    raise InputError(
        f'precision must be "float", "double" or "fixed<W,I>" (e.g. "fixed<16,6>"), not {precision!r}'
    )


# ------------------------------------------------------------------------- model access
def _forest_ir(model: Any) -> dict:
    from hepinfer.forest import Forest

    forest = model if isinstance(model, Forest) else Forest.load(model)
    return _core.forest_ir(forest._core)


class _Tree:
    """One tree of the IR (node columns sliced, child indices relative)."""

    def __init__(self, ir: dict, t: int) -> None:
        nodes = ir["nodes"]
        a, b = int(ir["tree_offsets"][t]), int(ir["tree_offsets"][t + 1])
        self.group = int(ir["tree_group"][t])
        self.cols = {k: v[a:b] for k, v in nodes.items()}
        self.n = b - a

    def __getitem__(self, key: str) -> np.ndarray:
        return self.cols[key]

    def depth(self) -> int:
        best, stack = 0, [(0, 0)]
        while stack:
            i, d = stack.pop()
            if self["kind"][i] == _LEAF:
                best = max(best, d)
            else:
                stack += [(int(self["left"][i]), d + 1), (int(self["right"][i]), d + 1)]
        return best

    def leaf_id(self, i: int) -> int:
        lid = int(self["leaf_id"][i])
        return lid if lid >= 0 else i


# ------------------------------------------------------------------------- generator
class _Generator:
    def __init__(self, ir: dict, name: str, namespace: Optional[str], precision: str, layout: str) -> None:
        self.ir = ir
        self.name = name
        self.namespace = namespace
        self.mode, self.width, self.int_bits = _parse_precision(precision)
        if layout not in ("auto", "arrays", "branches"):
            raise InputError(f'layout must be "auto", "arrays" or "branches", not {layout!r}')
        self.layout = layout
        self.nf = int(ir["n_features"])
        self.ng = int(ir["n_groups"])
        self.trees = [_Tree(ir, t) for t in range(len(ir["tree_group"]))]
        self.f32_in = bool(ir["float32_inputs"])
        if self.mode == "fixed":
            self.frac = self.width - self.int_bits
            self.qmin = -(1 << (self.width - 1))
            self.qmax = (1 << (self.width - 1)) - 1
            self.cmp_t = "std::int64_t"
        elif self.mode == "double" or not self.f32_in:
            # precision="double" on a float32 model still rounds inputs to float (the model's semantics)
            self.cmp_t = "double" if not self.f32_in else "float"
        else:
            self.cmp_t = "float"
        self._check()

    # ---- what can be generated
    def _check(self) -> None:
        if self.nf <= 0:
            raise InputError("the model has no input features; nothing to generate")
        if self.mode == "fixed":
            if self.ir["transforms"]:
                raise InputError("precision='fixed<W,I>' does not support TMVA input transformations")
            for tree in self.trees:
                kinds = {int(k) for k in tree["kind"]}
                if kinds - {_LEAF, _NUMERICAL} or tree["zero_is_missing"][tree["kind"] == _NUMERICAL].any():
                    raise InputError(
                        "precision='fixed<W,I>' supports numerical splits only (no categorical, zero-as-missing "
                        "or Fisher splits); use precision='float'"
                    )

    # ---- thresholds: "left iff x < c" on the comparison type, when expressible
    def _strict(self, t: float, op: int) -> Optional[Union[float, int]]:
        if op == _LESS_EQUAL and t == math.inf:
            return None
        if self.mode == "fixed":
            s = t * 2.0**self.frac
            if math.isnan(s):
                return None
            if math.isinf(s):
                g = self.qmax + 1 if s > 0 else self.qmin
            else:
                g = math.ceil(s) if op == _LESS else math.floor(s) + 1
            return int(min(max(g, self.qmin), self.qmax + 1))
        if self.cmp_t == "float":
            return _strict_float(t, op)
        return _strict_double(t, op)

    def _lit_cmp(self, c: float) -> str:
        if self.mode == "fixed":
            return f"std::int64_t{{{int(c)}}}"
        return _lit_float(float(c)) if self.cmp_t == "float" else _lit_double(float(c))

    def _array_eligible(self, tree: _Tree) -> bool:
        if self.layout == "branches":
            return False
        for i in range(tree.n):
            k = int(tree["kind"][i])
            if k == _LEAF:
                continue
            if k != _NUMERICAL or tree["zero_is_missing"][i]:
                return False
            c = self._strict(float(tree["threshold"][i]), int(tree["op"][i]))
            if c is None:
                return False
            if tree["default_left"][i] and self.mode != "fixed" and c == -math.inf:
                return False  # NaN is read as -inf there: it must still go left
        return True

    def _quant_leaf(self, v: float) -> int:
        return int(np.round(v * 2.0**self.frac))

    def _lit_leaf(self, v: float) -> str:
        if self.mode == "fixed":
            return str(self._quant_leaf(v))
        if self.float_leaves:
            return _lit_float(v)
        return _lit_double(v)

    # ---- branch code for one tree
    def _cond(self, tree: _Tree, i: int) -> str:
        k = int(tree["kind"][i])
        f = int(tree["feature"][i])
        dl = bool(tree["default_left"][i])
        op = int(tree["op"][i])
        t = float(tree["threshold"][i])
        dl_s = "true" if dl else "false"
        if k == _NUMERICAL and not tree["zero_is_missing"][i]:
            c = self._strict(t, op)
            if c is not None:
                # x < c goes left; NaN fails it (default right) or passes the negation (default left)
                return f"!(x[{f}] >= {self._lit_cmp(c)})" if dl else f"(x[{f}] < {self._lit_cmp(c)})"
            # x <= +inf: every number goes left, NaN takes the default
            return "true" if dl else f"(x[{f}] == x[{f}])"
        if k == _NUMERICAL:  # zero-as-missing (LightGBM)
            return f"zero_missing_left(static_cast<double>(x[{f}]), {_lit_double(t)}, {int(op == _LESS_EQUAL)}, {dl_s})"
        if k == _CATEGORICAL:
            b, e = int(tree["cat_begin"][i]), int(tree["cat_end"][i])
            neg = "true" if tree["cat_negative_right"][i] else "false"
            return f"category_left(static_cast<double>(x[{f}]), categories + {b}, {e - b}u, {dl_s}, {neg})"
        if k == _LINEAR:
            lb = int(tree["lin_begin"][i])
            return f"linear_left(x, linear + {lb}, {_lit_double(t)}, {int(op == _LESS_EQUAL)}, {dl_s})"
        raise InputError(f"unknown node kind {k}")

    def _branch_expr(self, tree: _Tree, leaf_base: int, leaf_pos: dict[int, int]) -> str:
        """The tree as one nested conditional expression (built with an explicit stack)."""
        done: dict[int, str] = {}
        stack = [(0, False)]
        while stack:
            i, children_done = stack.pop()
            if int(tree["kind"][i]) == _LEAF:
                done[i] = str(leaf_base + leaf_pos[i]) + "u"
                continue
            left, right = int(tree["left"][i]), int(tree["right"][i])
            if children_done:
                done[i] = f"({self._cond(tree, i)} ? {done.pop(left)} : {done.pop(right)})"
            else:
                stack += [(i, True), (right, False), (left, False)]
        return done[0]

    def _branch_body(self, tree: _Tree, leaf_base: int, leaf_pos: dict[int, int]) -> str:
        """The statements of ``tree_<t>()``: ``return <nested ?:>;`` for trees up to _NEST_DEPTH
        levels, otherwise one flat labelled statement per internal node (``n7: if (c) { goto n8; }
        else { return 3u; }``), which compilers handle at any depth (nested expressions hit parser and
        bracket-depth limits: clang stops at 256 by default)."""
        if tree.depth() <= _NEST_DEPTH:
            return f"  return {self._branch_expr(tree, leaf_base, leaf_pos)};"

        def target(j: int) -> str:
            if int(tree["kind"][j]) == _LEAF:
                return f"return {leaf_base + leaf_pos[j]}u;"
            return f"goto n{j};"

        lines: list[str] = []
        stack = [0]
        while stack:
            i = stack.pop()
            left, right = int(tree["left"][i]), int(tree["right"][i])
            label = f"n{i}: " if i != 0 else ""  # every internal node but the root is a goto target
            lines.append(
                f"  {label}if ({self._cond(tree, i)}) {{ {target(left)} }} else {{ {target(right)} }}"
            )
            stack += [j for j in (right, left) if int(tree["kind"][j]) != _LEAF]
        return "\n".join(lines)

    # ---- the whole header
    def generate(self) -> str:
        ir = self.ir
        trees = self.trees
        eligible = [self._array_eligible(tr) for tr in trees]
        depths = [tr.depth() if e else -1 for tr, e in zip(trees, eligible)]
        D = max([d for d in depths if d >= 0], default=-1)
        if D > _MAX_ARRAY_DEPTH:
            D = max([d for d in depths if 0 <= d <= _MAX_ARRAY_DEPTH], default=-1)
        for t, tr in enumerate(trees):
            if eligible[t] and (depths[t] > _MAX_ARRAY_DEPTH or depths[t] > D):
                eligible[t] = False
            elif eligible[t] and D > 8:
                internal = int((tr["kind"] != _LEAF).sum())
                if (1 << D) > 4 * internal + 16 and self.layout != "arrays":
                    eligible[t] = False
        if self.layout == "arrays" and not all(eligible):
            raise InputError("layout='arrays' needs numerical splits only and depth <= 10 in every tree")
        if D < 0 or not any(eligible):
            D = 0
        if D == 0:
            eligible = [False] * len(trees)  # depth-0 trees (a single leaf) are cheaper as branches

        base = [float(v) for v in ir["base_margin"]]
        all_leaves = [float(v) for v in ir["nodes"]["value"][ir["nodes"]["kind"] == _LEAF]]
        f32acc = bool(ir["float32_accumulate"])
        self.float_leaves = self.mode != "fixed" and f32acc and all(_f32(v) == v for v in all_leaves + base)

        # flat leaf table: complete trees get 2^D slots, branch trees one per leaf
        n_int = (1 << D) - 1 if D > 0 else 0
        leaf_vals: list[float] = []
        leaf_ids: list[int] = []
        array_nodes: list[tuple[int, Union[float, int]]] = []
        tree_code: list[tuple[str, Any]] = []  # ("array", (slot, leaf_base)) or ("branch", function index)
        branch_funcs: list[str] = []
        n_slots = 0
        for t, tr in enumerate(trees):
            leaf_base = len(leaf_vals)
            if eligible[t]:
                nodes: list[tuple[int, Union[float, int]]] = [(0, 0)] * n_int
                lv = [0.0] * (1 << D)
                lid = [0] * (1 << D)
                stack = [(0, 0, 0)]
                while stack:
                    i, pos, level = stack.pop()
                    if level == D:
                        lv[pos - n_int] = float(tr["value"][i])
                        lid[pos - n_int] = tr.leaf_id(i)
                        continue
                    if int(tr["kind"][i]) == _LEAF:  # pad: both subtrees reach this leaf
                        nodes[pos] = (0, 0.0 if self.mode != "fixed" else 0)
                        stack += [(i, 2 * pos + 1, level + 1), (i, 2 * pos + 2, level + 1)]
                        continue
                    c = self._strict(float(tr["threshold"][i]), int(tr["op"][i]))
                    assert c is not None
                    col = 2 * int(tr["feature"][i]) + (0 if tr["default_left"][i] else 1)
                    nodes[pos] = (col, c)
                    stack += [
                        (int(tr["left"][i]), 2 * pos + 1, level + 1),
                        (int(tr["right"][i]), 2 * pos + 2, level + 1),
                    ]
                array_nodes += nodes
                leaf_vals += lv
                leaf_ids += lid
                tree_code.append(("array", (n_slots, leaf_base)))
                n_slots += 1
            else:
                leaf_pos: dict[int, int] = {}
                for i in range(tr.n):
                    if int(tr["kind"][i]) == _LEAF:
                        leaf_pos[i] = len(leaf_vals) - leaf_base
                        leaf_vals.append(float(tr["value"][i]))
                        leaf_ids.append(tr.leaf_id(i))
                body = self._branch_body(tr, leaf_base, leaf_pos)
                branch_funcs.append(
                    f"inline std::uint32_t tree_{t}(const cmp_t* x) noexcept {{\n  (void)x;\n{body}\n}}\n"
                )
                tree_code.append(("branch", t))

        return self._assemble(
            D, n_int, n_slots, array_nodes, leaf_vals, leaf_ids, tree_code, branch_funcs, base
        )

    def _assemble(
        self, D, n_int, n_slots, array_nodes, leaf_vals, leaf_ids, tree_code, branch_funcs, base
    ) -> str:
        ir = self.ir
        ng, nf = self.ng, self.nf
        post = ir["postprocess"]
        n_out = 1 if post == "argmax" else ng
        fixed = self.mode == "fixed"
        f32acc = bool(ir["float32_accumulate"])
        leaf_t = "std::int64_t" if fixed else ("float" if self.float_leaves else "double")
        acc_t = leaf_t
        L: list[str] = []
        w = L.append
        try:
            from hepinfer import __version__ as version
        except ImportError:  # pragma: no cover
            version = "?"
        src = os.path.basename(str(ir["source_name"])) or "<memory>"
        w(
            f"// Generated by hepinfer {_comment(version)} (hepinfer.codegen.emit_cpp) from {_comment(src)}: "
            f"objective {_comment(ir['objective'])},"
        )
        w(
            f"// {len(self.trees)} trees, {nf} features, {n_out} output(s), precision {self._precision_name()}."
        )
        w("// Self-contained C++17: needs only the standard library. Do not edit.")
        w("// Exact results need IEEE arithmetic as written: no -ffast-math (and -ffp-contract=off on FMA")
        w("// targets for models with TMVA transformations or Fisher cuts).")
        w("#pragma once")
        w("#include <cmath>")
        w("#include <cstddef>")
        w("#include <cstdint>")
        w("#include <limits>")
        w("")
        if self.namespace:
            w(f"namespace {self.namespace} {{")
        w(f"namespace {self.name} {{")
        w("")
        w(f"constexpr int n_features = {nf};")
        w(f"constexpr int n_outputs = {n_out};   ///< values written by predict()")
        w(f"constexpr int n_margins = {ng};   ///< values written by margin()")
        w(f"constexpr int n_trees = {len(self.trees)};")
        names = list(ir["feature_names"])
        if names:
            w(
                "constexpr const char* feature_names[n_features] = {"
                + ", ".join(_c_string(s) for s in names)
                + "};"
            )
        w("")
        w("namespace detail {")
        w(f"using cmp_t = {self.cmp_t};")
        w(f"using leaf_t = {leaf_t};")
        # tables
        if n_slots:
            w("struct node_t {")
            w(
                "  std::uint32_t column;  ///< 2*feature (NaN read as -inf: default left) or 2*feature+1 (+inf)"
            )
            w("  cmp_t threshold;       ///< go left iff value < threshold")
            w("};")
            w(f"constexpr int depth = {D};")
            w(f"constexpr std::uint32_t n_internal = {n_int}u;")
            w(f"alignas(64) inline constexpr node_t nodes[{n_slots * n_int}] = {{")
            w(_wrap(f"{{{c}u, {self._lit_cmp(v)}}}" for c, v in array_nodes))
            w("};")
        w(f"alignas(64) inline constexpr leaf_t leaf_value[{len(leaf_vals)}] = {{")
        w(_wrap(self._lit_leaf(v) for v in leaf_vals))
        w("};")
        w(f"inline constexpr std::int32_t leaf_id[{len(leaf_ids)}] = {{")
        w(_wrap(str(v) for v in leaf_ids))
        w("};")
        if ng > 1:
            w(f"inline constexpr std::int32_t tree_group[{len(self.trees)}] = {{")
            w(_wrap(str(tr.group) for tr in self.trees))
            w("};")
        cats = [int(v) for v in ir["categories"]]
        if cats:
            w(f"inline constexpr std::uint32_t categories[{len(cats)}] = {{")
            w(_wrap(f"{v}u" for v in cats))
            w("};")
        lin = [float(v) for v in ir["linear"]]
        if lin:
            w(f"inline constexpr double linear[{len(lin)}] = {{")
            w(_wrap(_lit_double(v) for v in lin))
            w("};")
        self._emit_transform_tables(w)
        self._emit_helpers(w, bool(cats), bool(lin))
        for code in branch_funcs:
            w(code)
        self._emit_load(w)
        self._emit_walk(w, D, n_int, tree_code, acc_t, f32acc)
        w("}  // namespace detail")
        w("")
        self._emit_public(w, n_out, post)
        w(f"}}  // namespace {self.name}")
        if self.namespace:
            w(f"}}  // namespace {self.namespace}")
        return "\n".join(L) + "\n"

    def _precision_name(self) -> str:
        if self.mode == "fixed":
            return f"fixed<{self.width},{self.int_bits}>"
        return self.cmp_t + " comparisons"

    def _emit_transform_tables(self, w) -> None:
        for k, tr in enumerate(self.ir["transforms"]):
            for key in ("matrix", "offset", "scale"):
                vals = [float(v) for v in tr[key]]
                if vals:
                    w(f"inline constexpr double transform{k}_{key}[{len(vals)}] = {{")
                    w(_wrap(_lit_double(v) for v in vals))
                    w("};")

    def _emit_helpers(self, w, cats: bool, lin: bool) -> None:
        w("inline bool zero_missing_left(double v, double t, int less_equal, bool default_left) noexcept {")
        w(
            f"  if (std::isnan(v) || (v >= -{_lit_double(_ZERO_BAND)} && v <= {_lit_double(_ZERO_BAND)})) return default_left;"
        )
        w("  return less_equal ? v <= t : v < t;")
        w("}")
        if cats:
            w(
                "inline bool category_left(double v, const std::uint32_t* words, std::uint32_t n_words, bool default_left,"
            )
            w("                          bool negative_right) noexcept {")
            w("  if (std::isnan(v)) return default_left;")
            w("  if (v <= -1.0 || v >= 2147483648.0 || (negative_right && v < 0.0)) return false;")
            w("  const std::uint32_t c = static_cast<std::uint32_t>(static_cast<std::int32_t>(v));")
            w("  if (c / 32u >= n_words) return false;")
            w("  return ((words[c / 32u] >> (c % 32u)) & 1u) != 0;")
            w("}")
        if lin:
            w(
                "inline bool linear_left(const cmp_t* x, const double* c, double t, int less_equal, bool default_left) noexcept {"
            )
            w(f"  double v = c[{self.nf}];")
            w(f"  for (int j = 0; j < {self.nf}; ++j) v += c[j] * static_cast<double>(x[j]);")
            w("  if (std::isnan(v)) return default_left;")
            w("  return less_equal ? v <= t : v < t;")
            w("}")

    def _emit_load(self, w) -> None:
        nf = self.nf
        w(
            "/// The row as the trees see it: rounded to float for XGBoost/TMVA, transformed (TMVA), quantised (fixed)."
        )
        w("template <typename In>")
        w("inline void load(const In* row, cmp_t* x) noexcept {")
        if self.mode == "fixed":
            w("  for (int j = 0; j < n_features; ++j) {")
            conv = (
                "static_cast<double>(static_cast<float>(row[j]))"
                if self.f32_in
                else "static_cast<double>(row[j])"
            )
            w(f"    const double v = {conv};")
            w(f"    const double s = std::floor(v * {_lit_double(2.0**self.frac)});")
            w("    x[j] = std::isnan(v) ? std::numeric_limits<std::int64_t>::min()   // marks NaN")
            w(
                f"         : s <= {float(self.qmin)!r} ? std::int64_t{{{self.qmin}}} : s >= {float(self.qmax)!r} ? std::int64_t{{{self.qmax}}}"
            )
            w("         : static_cast<std::int64_t>(s);")
            w("  }")
        elif self.f32_in:
            w("  for (int j = 0; j < n_features; ++j) x[j] = static_cast<cmp_t>(static_cast<float>(row[j]));")
        else:
            w("  for (int j = 0; j < n_features; ++j) x[j] = static_cast<cmp_t>(row[j]);")
        if self.ir["transforms"]:
            w(f"  double a[{nf}], b[{nf}];")
            w(f"  for (int j = 0; j < {nf}; ++j) a[j] = static_cast<double>(x[j]);")
            for k, tr in enumerate(self.ir["transforms"]):
                kind = tr["kind"]
                if kind == "linear":
                    w(
                        f"  for (int i = 0; i < {nf}; ++i) {{ double s = 0.0; for (int j = 0; j < {nf}; ++j) s += transform{k}_matrix[i * {nf} + j] * a[j]; b[i] = s; }}"
                    )
                elif kind == "centered_linear":
                    w(
                        f"  for (int i = 0; i < {nf}; ++i) {{ double s = 0.0; for (int j = 0; j < {nf}; ++j) s += transform{k}_matrix[i * {nf} + j] * (a[j] - transform{k}_offset[j]); b[i] = s; }}"
                    )
                elif kind == "affine":
                    w(
                        f"  for (int i = 0; i < {nf}; ++i) b[i] = (a[i] - transform{k}_offset[i]) * transform{k}_scale[i] + {_lit_double(float(tr['shift']))};"
                    )
                else:
                    raise InputError(f"unsupported TMVA transformation {kind!r}")
                w(f"  for (int i = 0; i < {nf}; ++i) a[i] = static_cast<double>(static_cast<float>(b[i]));")
            w(f"  for (int j = 0; j < {nf}; ++j) x[j] = static_cast<cmp_t>(a[j]);")
        w("}")

    def _emit_walk(self, w, D, n_int, tree_code, acc_t, f32acc) -> None:
        ng = self.ng
        fixed = self.mode == "fixed"
        w("/// Base margin plus the leaves of every tree, summed in tree order; optionally the leaf ids.")
        w("template <typename In>")
        w("inline void margins(const In* row, double* out, std::int32_t* leaves) noexcept {")
        w(f"  cmp_t x[{self.nf}];")
        w("  load(row, x);")
        if fixed:
            base = [str(self._quant_leaf(float(v))) for v in self.ir["base_margin"]]
            w(f"  std::int64_t m[{ng}] = {{{', '.join(base)}}};")
            # NaN marker -> outside the range, by default direction
            nan_x = "std::numeric_limits<std::int64_t>::min()"
            lo, hi = self.qmin - 1, self.qmax + 1
            expand = (
                f"  cmp_t xe[{2 * self.nf}];\n"
                f"  for (int j = 0; j < {self.nf}; ++j) {{\n"
                f"    const bool nan = x[j] == {nan_x};\n"
                f"    xe[2 * j] = nan ? std::int64_t{{{lo}}} : x[j];\n"
                f"    xe[2 * j + 1] = nan ? std::int64_t{{{hi}}} : x[j];\n  }}"
            )
        else:
            if acc_t == "float":
                base = [_lit_float(float(v)) for v in self.ir["base_margin"]]
            else:
                base = [_lit_double(float(v)) for v in self.ir["base_margin"]]
            w(f"  {acc_t} m[{ng}] = {{{', '.join(base)}}};")
            inf = "std::numeric_limits<cmp_t>::infinity()"
            expand = (
                f"  cmp_t xe[{2 * self.nf}];\n"
                f"  for (int j = 0; j < {self.nf}; ++j) {{\n"
                f"    const bool nan = x[j] != x[j];\n"
                f"    xe[2 * j] = nan ? -{inf} : x[j];\n"
                f"    xe[2 * j + 1] = nan ? {inf} : x[j];\n  }}"
            )
        if any(kind == "array" for kind, _ in tree_code):
            w(expand)
        if fixed and any(kind == "branch" for kind, _ in tree_code):
            raise InputError("precision='fixed<W,I>' needs every tree in the array layout (depth <= 10)")

        def add(t: int, idx: str) -> str:
            g = f"tree_group[{t}]" if ng > 1 else "0"
            if fixed or acc_t == "float" or not f32acc:
                s = f"m[{g}] += leaf_value[{idx}];"
            else:  # XGBoost sums in float32, tree by tree
                s = f"m[{g}] = static_cast<double>(static_cast<float>(m[{g}] + leaf_value[{idx}]));"
            return s + f" if (leaves) leaves[{t}] = leaf_id[{idx}];"

        # runs of consecutive array trees are walked in a loop, _INTERLEAVE trees interleaved
        t = 0
        n = len(tree_code)
        while t < n:
            kind, info = tree_code[t]
            if kind == "branch":
                w(f"  {{ const std::uint32_t k = tree_{info}(x); {add(t, 'k')} }}")
                t += 1
                continue
            t1 = t
            while t1 < n and tree_code[t1][0] == "array":
                t1 += 1
            slot0, leaf0 = info
            count = t1 - t
            nl = 1 << D
            grp: Callable[..., str] = (
                (lambda e, t0=t: f"tree_group[{t0} + {e}]") if ng > 1 else (lambda e: "0")
            )
            upd = (
                (lambda g, v: f"m[{g}] += {v};")
                if (fixed or acc_t == "float" or not f32acc)
                else (lambda g, v: f"m[{g}] = static_cast<double>(static_cast<float>(m[{g}] + {v}));")
            )
            w("  {")
            w(f"    // trees {t}..{t1 - 1}: complete trees of depth {D}")
            w(f"    const node_t* nd = nodes + {slot0 * n_int};")
            w("    std::uint32_t k = 0;")
            K = _INTERLEAVE
            if count >= K:
                w(f"    for (; k + {K} <= {count}u; k += {K}, nd += {K * n_int}) {{")
                w("      std::uint32_t " + ", ".join(f"i{q} = 0" for q in range(K)) + ";")
                w("      for (int d = 0; d < depth; ++d) {")
                for q in range(K):
                    w(
                        f"        i{q} = 2 * i{q} + 1 + static_cast<std::uint32_t>(xe[nd[{q * n_int} + i{q}].column] >= nd[{q * n_int} + i{q}].threshold);"
                    )
                w("      }")
                for q in range(K):
                    idx = f"{leaf0} + (k + {q}) * {nl}u + i{q} - n_internal"
                    w(f"      {upd(grp(f'k + {q}'), f'leaf_value[{idx}]')}")
                    w(f"      if (leaves) leaves[{t} + k + {q}] = leaf_id[{idx}];")
                w("    }")
            w(f"    for (; k < {count}u; ++k, nd += {n_int}) {{")
            w("      std::uint32_t i = 0;")
            w(
                "      for (int d = 0; d < depth; ++d) i = 2 * i + 1 + static_cast<std::uint32_t>(xe[nd[i].column] >= nd[i].threshold);"
            )
            idx = f"{leaf0} + k * {nl}u + i - n_internal"
            w(f"      {upd(grp('k'), f'leaf_value[{idx}]')}")
            w(f"      if (leaves) leaves[{t} + k] = leaf_id[{idx}];")
            w("    }")
            w("  }")
            t = t1
        if fixed:
            w(
                f"  for (int g = 0; g < {ng}; ++g) out[g] = static_cast<double>(m[g]) * {_lit_double(2.0**-self.frac)};"
            )
        else:
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = static_cast<double>(m[g]);")
        w("}")

    def _emit_public(self, w, n_out: int, post: str) -> None:
        ng = self.ng
        scale = float(self.ir["sigmoid_scale"])
        w("/// The raw margins (sum of leaves plus base score) of one row of n_features values.")
        w(
            "inline void margin(const float* row, double* out) noexcept { detail::margins(row, out, nullptr); }"
        )
        w(
            "inline void margin(const double* row, double* out) noexcept { detail::margins(row, out, nullptr); }"
        )
        w("/// The leaf index reached in each tree (n_trees values, the source library's numbering).")
        w("inline void predict_leaf(const float* row, std::int32_t* leaves) noexcept {")
        w(f"  double m[{ng}];")
        w("  detail::margins(row, m, leaves);")
        w("}")
        w("inline void predict_leaf(const double* row, std::int32_t* leaves) noexcept {")
        w(f"  double m[{ng}];")
        w("  detail::margins(row, m, leaves);")
        w("}")
        w("namespace detail {")
        divisor = float(self.ir.get("margin_divisor", 1.0))
        if divisor != 1.0:
            # LightGBM random forests: outputs use the average of the trees, margins the sum
            w("inline void finish(const double* sum, double* out) noexcept {")
            w(f"  double m[{ng}];")
            w(f"  for (int g = 0; g < {ng}; ++g) m[g] = sum[g] / {_lit_double(divisor)};")
        else:
            w("inline void finish(const double* m, double* out) noexcept {")
        if post == "identity":
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = m[g];")
        elif post == "sigmoid":
            if scale == 1.0:
                w(f"  for (int g = 0; g < {ng}; ++g) out[g] = 1.0 / (1.0 + std::exp(-m[g]));")
            else:
                w(
                    f"  for (int g = 0; g < {ng}; ++g) out[g] = 1.0 / (1.0 + std::exp(-{_lit_double(scale)} * m[g]));"
                )
        elif post == "signed_square":
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = (m[g] < 0 ? -1.0 : 1.0) * m[g] * m[g];")
        elif post == "log1p_exp":
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = std::log1p(std::exp(m[g]));")
        elif post == "exp":
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = std::exp(m[g]);")
        elif post == "tmva_grad":
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = 2.0 / (1.0 + std::exp(-2.0 * m[g])) - 1.0;")
        elif post == "softmax":
            w("  double mx = m[0];")
            w(f"  for (int g = 1; g < {ng}; ++g) mx = mx < m[g] ? m[g] : mx;")
            w("  double s = 0.0;")
            w(f"  for (int g = 0; g < {ng}; ++g) s += (out[g] = std::exp(m[g] - mx));")
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] /= s;")
        elif post == "argmax":
            w("  int best = 0;")
            w(f"  for (int g = 1; g < {ng}; ++g) if (m[g] > m[best]) best = g;")
            w("  out[0] = static_cast<double>(best);")
        else:
            raise InputError(f"unsupported output function {post!r}")
        w("}")
        w("}  // namespace detail")
        w("/// The model's output (what hepinfer's predict returns) for one row of n_features values.")
        for T in ("float", "double"):
            w(f"inline void predict(const {T}* row, double* out) noexcept {{")
            w(f"  double m[{ng}];")
            w("  detail::margins(row, m, nullptr);")
            w("  detail::finish(m, out);")
            w("}")
        if n_out == 1:
            for T in ("float", "double"):
                w(f"inline double predict(const {T}* row) noexcept {{")
                w("  double out;")
                w("  predict(row, &out);")
                w("  return out;")
                w("}")


def _c_string(s: str) -> str:
    """A C++ string literal whose bytes are the UTF-8 encoding of ``s``: printable ASCII stays as
    is (but for the backslash, the quote and ``?``, which could start a trigraph before C++17), every
    other byte (control characters, NUL, line breaks, non-ASCII) becomes a three-digit octal escape,
    which cannot run into the characters after it as a hexadecimal escape would."""
    out = []
    for byte in s.encode("utf-8", "surrogatepass"):
        ch = chr(byte)
        if ch in '\\"?':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _comment(s: object) -> str:
    """Text from a model (file name, objective, ONNX node name) made safe for a ``//`` comment:
    no line break (LF, CR, or any other character Python does not print: NUL, controls, U+2028,
    bidirectional overrides) survives, nor a backslash that could splice the next line into the
    comment, nor ``*/``; such characters are written as \\xNN / \\uNNNN / \\UNNNNNNNN escapes."""
    out = []
    for ch in str(s):
        if ch == "\\" or not ch.isprintable():
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else (f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"))
        else:
            out.append(ch)
    # "\\x5c" stands for a backslash, so no escape ends the text with one; "*/" could close a block comment
    return "".join(out).replace("*/", "*\\x2f").replace("??", "?\\x3f")


def _wrap(items, width: int = 110) -> str:
    lines, cur = [], "  "
    for it in items:
        piece = it + ", "
        if len(cur) + len(piece) > width and cur.strip():
            lines.append(cur.rstrip())
            cur = "  "
        cur += piece
    if cur.strip():
        lines.append(cur.rstrip())
    return "\n".join(lines)


# ------------------------------------------------------------------------- MLPs (ONNX)
_ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "gelu", "gelu_tanh", "clip")
# Lipschitz constants (sup of |f'|) used by mlp_error_bound
_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875
_GELU_LIPSCHITZ = 1.1290  # max of d/dx [x Phi(x)] = 1.12880...; the tanh form stays below it too
_HALF_U = 2.0**-11  # unit roundoff of IEEE binary16
_HALF_TINY = 2.0**-25  # half the spacing of binary16 subnormals
_HALF_MAX = 65504.0
_F32_U = 2.0**-24


class _Layer:
    """One step of an MLP: dense (w [out, in], b [out]), affine (s, t), act (kind, a, b) or softmax."""

    def __init__(self, op: str, node: str, **kw: Any) -> None:
        self.op = op
        self.node = node
        self.w: np.ndarray = kw.get("w", np.zeros((0, 0)))
        self.b: np.ndarray = kw.get("b", np.zeros(0))
        self.kind: str = kw.get("kind", "")
        self.alpha: float = float(kw.get("alpha", 0.0))
        self.beta: float = float(kw.get("beta", 0.0))


def _is_onnx_model(model: Any) -> bool:
    if type(model).__name__ == "ModelProto":
        return True
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model).lower().endswith(".onnx")
    return False


def _onnx_chain(model: Any) -> tuple[int, list[_Layer], str]:
    """Read an ONNX MLP into a chain of layers (float64 copies of the float32 weights)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover
        raise InputError(
            "MLP code generation reads the ONNX file with the 'onnx' package: pip install onnx"
        ) from e
    if type(model).__name__ == "ModelProto":
        proto, source = model, "<ModelProto>"
    else:
        source = os.fspath(model)
        try:
            proto = onnx.load(source)
        except Exception as e:  # noqa: BLE001 (onnx.load raises many types)
            raise InputError(f"{source}: cannot read the ONNX file ({e})") from None
    g = proto.graph
    opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    const: dict[str, np.ndarray] = {
        t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer
    }
    inputs = [i for i in g.input if i.name not in const]
    if len(inputs) != 1 or len(g.output) != 1:
        raise InputError(
            f"{source}: an MLP has one input and one output; this graph has {len(inputs)} inputs and "
            f"{len(g.output)} outputs"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value") or dims[1].dim_value <= 0:
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        raise InputError(
            f"{source}: input '{inputs[0].name}' has shape {shape}; an MLP takes [batch, n_features]"
        )
    n_in = int(dims[1].dim_value)
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise InputError(f"{source}: input '{inputs[0].name}' is not float32")

    def attrs(node: Any) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    cur, size = inputs[0].name, n_in
    layers: list[_Layer] = []
    supported = (
        "Gemm, MatMul, Add, Sub, Mul, Div (with constants), BatchNormalization, Relu, LeakyRelu, Elu, "
        "Selu, Sigmoid, Tanh, Gelu, Clip, Softmax, Flatten, Identity, Dropout, Reshape, Cast"
    )
    for node in g.node:
        label = f"node '{node.name or node.output[0]}' ({node.op_type})"
        a = attrs(node)
        if node.op_type == "Constant":
            if "value" in a:
                const[node.output[0]] = numpy_helper.to_array(a["value"]).astype(np.float64)
            elif "value_float" in a or "value_floats" in a:
                const[node.output[0]] = np.asarray(a.get("value_float", a.get("value_floats")), np.float64)
            elif "value_int" in a or "value_ints" in a:
                const[node.output[0]] = np.asarray(a.get("value_int", a.get("value_ints")), np.float64)
            else:
                raise InputError(f"{source}: {label}: unsupported constant")
            continue
        ins = [n for n in node.input if n]
        data = [n for n in ins if n not in const]
        if not data and node.op_type == "Identity":
            const[node.output[0]] = const[ins[0]]
            continue
        if not data:
            raise InputError(
                f"{source}: {label} computes on constants only; not supported for MLP code generation"
            )
        if (data != [cur] or (ins[0] != cur and node.op_type not in ("Add", "Mul"))) and not (
            node.op_type == "Sub" and ins == [ins[0], cur]
        ):
            raise InputError(
                f"{source}: {label} does not continue the chain of layers from '{cur}' (the MLP "
                "generator takes one chain: each layer feeds only the next)"
            )

        def vec(name: str, what: str, size: int = size, label: str = label) -> np.ndarray:
            v = np.asarray(const[name], np.float64).reshape(-1) if name in const else None
            if v is None or v.size not in (1, size):
                raise InputError(f"{source}: {label}: {what} must be a constant scalar or vector of {size}")
            return np.broadcast_to(v, (size,)).copy()

        op = node.op_type
        if op == "Gemm":
            if a.get("transA", 0):
                raise InputError(f"{source}: {label}: transA=1 is not supported")
            B = const.get(ins[1])
            if B is None or B.ndim != 2:
                raise InputError(f"{source}: {label}: the weight must be a constant matrix")
            W = float(a.get("alpha", 1.0)) * (B if a.get("transB", 0) else B.T)
            if W.shape[1] != size:
                raise InputError(
                    f"{source}: {label}: weight takes {W.shape[1]} inputs, the layer before gives {size}"
                )
            size = W.shape[0]
            bias: np.ndarray = np.zeros(size)
            if len(ins) > 2:
                bias = float(a.get("beta", 1.0)) * vec(ins[2], "the bias", size=size)
            layers.append(_Layer("dense", label, w=W, b=bias))
        elif op == "MatMul":
            B = const.get(ins[1])
            if ins[0] != cur or B is None or B.ndim != 2 or B.shape[0] != size:
                raise InputError(f"{source}: {label}: needs x @ W with a constant [{size}, n] matrix W")
            size = B.shape[1]
            layers.append(_Layer("dense", label, w=B.T.copy(), b=np.zeros(size)))
        elif op in ("Add", "Sub", "Mul", "Div"):
            other = ins[1] if ins[0] == cur else ins[0]
            v = vec(other, "the other operand")
            if op == "Add":
                s, t = np.ones(size), v
            elif op == "Sub":
                s, t = (np.ones(size), -v) if ins[0] == cur else (-np.ones(size), v)
            elif op == "Mul":
                s, t = v, np.zeros(size)
            else:
                if ins[0] != cur:
                    raise InputError(f"{source}: {label}: only x / constant is supported")
                s, t = 1.0 / v, np.zeros(size)  # type: ignore[assignment]
            layers.append(_Layer("affine", label, w=s, b=t))
        elif op == "BatchNormalization":
            if a.get("training_mode", 0):
                raise InputError(f"{source}: {label}: training_mode=1 is not supported")
            scale, bias, mean, var = (vec(n, "a batch-norm parameter") for n in ins[1:5])
            s = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
            layers.append(_Layer("affine", label, w=s, b=bias - mean * s))
        elif op == "Relu":
            layers.append(_Layer("act", label, kind="relu"))
        elif op == "LeakyRelu":
            layers.append(_Layer("act", label, kind="leaky_relu", alpha=a.get("alpha", 0.01)))
        elif op == "Elu":
            layers.append(_Layer("act", label, kind="elu", alpha=a.get("alpha", 1.0)))
        elif op == "Selu":
            layers.append(
                _Layer(
                    "act",
                    label,
                    kind="selu",
                    alpha=a.get("alpha", _SELU_ALPHA),
                    beta=a.get("gamma", _SELU_GAMMA),
                )
            )
        elif op in ("Sigmoid", "Tanh"):
            layers.append(_Layer("act", label, kind=op.lower()))
        elif op == "Gelu":
            approx = a.get("approximate", b"none")
            approx = approx.decode() if isinstance(approx, bytes) else str(approx)
            layers.append(_Layer("act", label, kind="gelu_tanh" if approx == "tanh" else "gelu"))
        elif op == "Clip":
            lo = a.get("min", -math.inf) if len(ins) < 2 else float(const[ins[1]].reshape(-1)[0])
            hi = a.get("max", math.inf) if len(ins) < 3 else float(const[ins[2]].reshape(-1)[0])
            layers.append(_Layer("act", label, kind="clip", alpha=lo, beta=hi))
        elif op == "Softmax":
            axis = int(a.get("axis", -1 if opset >= 13 else 1))
            if axis not in (-1, 1):
                raise InputError(
                    f"{source}: {label}: softmax over axis {axis}; only the feature axis is supported"
                )
            layers.append(_Layer("softmax", label))
        elif op in ("Flatten", "Identity", "Dropout"):
            if op == "Flatten" and int(a.get("axis", 1)) != 1:
                raise InputError(f"{source}: {label}: only axis=1 is supported")
        elif op == "Reshape":
            target = const.get(ins[1])
            if target is None or target.size != 2 or int(target.reshape(-1)[1]) not in (size, -1):
                raise InputError(f"{source}: {label}: only a reshape to [batch, {size}] is supported")
        elif op == "Cast":
            if int(a.get("to", 0)) != onnx.TensorProto.FLOAT:
                raise InputError(f"{source}: {label}: only a cast to float32 is supported")
        else:
            raise InputError(
                f"{source}: {label} is not supported by the MLP code generator (supported: {supported})"
            )
        cur = node.output[0]
    if cur != g.output[0].name:
        raise InputError(
            f"{source}: the graph output '{g.output[0].name}' is not the end of the chain of layers"
        )
    if not any(layer.op == "dense" for layer in layers):
        raise InputError(f"{source}: no Gemm/MatMul layer: not an MLP")
    return n_in, _fold_affine(layers), source


def _fold_affine(layers: list[_Layer]) -> list[_Layer]:
    """Fold element-wise affine steps (Add/Mul by constants, batch norm) into a neighbouring dense layer."""
    out: list[_Layer] = []
    pending: Optional[_Layer] = None  # affine waiting for the next dense layer
    for layer in layers:
        if layer.op == "affine":
            if pending is not None:
                pending = _Layer(
                    "affine", pending.node, w=pending.w * layer.w, b=pending.b * layer.w + layer.b
                )
            elif out and out[-1].op == "dense":
                d = out[-1]
                out[-1] = _Layer("dense", d.node, w=d.w * layer.w[:, None], b=d.b * layer.w + layer.b)
            else:
                pending = layer
            continue
        if pending is not None:
            if layer.op == "dense":
                layer = _Layer(
                    "dense", layer.node, w=layer.w * pending.w[None, :], b=layer.b + layer.w @ pending.b
                )
            else:
                out.append(pending)
            pending = None
        out.append(layer)
    if pending is not None:
        out.append(pending)
    return out


def _parse_mlp_precision(precision: str) -> tuple[str, int, int]:
    p = precision.replace(" ", "")
    if p in ("float", "double", "float16"):
        return p, 0, 0
    m = re.fullmatch(r"fixed<(\d+),(-?\d+)>", p)
    if m:
        w, i = int(m.group(1)), int(m.group(2))
        if not 2 <= w <= 32 or not 1 <= i <= w:
            raise InputError(
                f"precision {precision!r}: need 2 <= W <= 32 total bits and 1 <= I <= W integer bits"
            )
        return "fixed", w, i
    raise InputError(
        f'precision must be "float", "double", "float16" or "fixed<W,I>" (e.g. "fixed<18,8>"), '
        f"not {precision!r}"
    )


class _FixedFormat:
    """ap_fixed<W,I>-like numbers: raw integers q with value q * 2^-F, F = W - I; rounding to the
    nearest grid value (ties towards +inf) and saturation to [-2^(W-1), 2^(W-1) - 1]."""

    def __init__(self, width: int, int_bits: int) -> None:
        self.width, self.frac = width, width - int_bits
        self.qmin, self.qmax = -(1 << (width - 1)), (1 << (width - 1)) - 1
        self.step = 2.0**-self.frac

    def quantize(self, v: np.ndarray) -> np.ndarray:
        q = np.floor(np.asarray(v, np.float64) / self.step + 0.5)
        return np.clip(np.nan_to_num(q, nan=0.0), self.qmin, self.qmax).astype(np.int64)

    def value(self, q: np.ndarray) -> np.ndarray:
        return q.astype(np.float64) * self.step


class _MLPGenerator:
    def __init__(self, model: Any, name: str, namespace: Optional[str], precision: str) -> None:
        self.n_in, self.layers, self.source = _onnx_chain(model)
        self.name, self.namespace = name, namespace
        self.mode, width, int_bits = _parse_mlp_precision(precision)
        self.fmt = _FixedFormat(width, int_bits) if self.mode == "fixed" else None
        sizes = [self.n_in]
        for layer in self.layers:
            sizes.append(layer.w.shape[0] if layer.op == "dense" else sizes[-1])
        self.sizes = sizes
        self.n_out = sizes[-1]
        if self.fmt is not None:
            # exact int64 accumulation: n products of two W-bit numbers plus the bias must fit
            for layer in self.layers:
                if layer.op == "dense":
                    n = layer.w.shape[1] + 1
                    if n * 2.0 ** (2 * (width - 1)) >= 2.0**62:
                        raise InputError(
                            f"precision {precision!r}: a {layer.w.shape[1]}-input layer could overflow the "
                            "64-bit accumulator; use fewer total bits"
                        )

    # ---- literals

    @property
    def _fx(self) -> _FixedFormat:
        """The fixed-point format (only called on the fixed-point paths)."""
        assert self.fmt is not None, "not a fixed-point network"
        return self.fmt

    def _weights(self, v: np.ndarray) -> np.ndarray:
        if self.mode == "double":
            return v
        if self.mode == "float16":
            with np.errstate(over="ignore"):
                return v.astype(np.float16).astype(np.float64)
        return v.astype(np.float32).astype(np.float64)

    def _lit(self, v: float) -> str:
        if self.mode == "double":
            return _lit_double(v)
        return _lit_float(v)

    def generate(self) -> str:
        L: list[str] = []
        w = L.append
        try:
            from hepinfer import __version__ as version
        except ImportError:  # pragma: no cover
            version = "?"
        fixed = self.fmt is not None
        arch = " -> ".join(str(s) for s in self.sizes)
        src = os.path.basename(self.source)
        pname = f"fixed<{self._fx.width},{self._fx.width - self._fx.frac}>" if self.fmt else self.mode
        w(
            f"// Generated by hepinfer {_comment(version)} (hepinfer.codegen.emit_cpp) from {_comment(src)}: MLP {arch},"
        )
        w(f"// precision {pname}. Self-contained C++17: needs only the standard library. Do not edit.")
        w("// Compile with -O3 (GCC's -O2 does not vectorise the dense loops) and the target's -march.")
        if self.mode == "float16":
            w("// Needs a compiler with the _Float16 type (GCC >= 12 or Clang on x86-64 and ARM).")
        if fixed:
            w(
                f"// Fixed point as ap_fixed<{self._fx.width},{self._fx.width - self._fx.frac},AP_RND,AP_SAT>: values "
                f"are multiples of 2^-{self._fx.frac}, rounded to the"
            )
            w(
                "// nearest (ties towards +inf) and saturated; dense layers accumulate exactly in 64-bit integers;"
            )
            w(
                "// activations other than ReLU are evaluated in double from the fixed-point value and rounded back."
            )
        w("#pragma once")
        for h in ("cmath", "cstddef", "cstdint"):
            w(f"#include <{h}>")
        w("")
        if self.namespace:
            w(f"namespace {self.namespace} {{")
        w(f"namespace {self.name} {{")
        w("")
        w(f"constexpr std::size_t n_features = {self.n_in};")
        w(f"constexpr std::size_t n_outputs = {self.n_out};")
        w("")
        w("namespace detail {")
        if fixed:
            self._emit_fixed_helpers(w)
        else:
            val_t = {"float": "float", "double": "double", "float16": "_Float16"}[self.mode]
            acc_t = "double" if self.mode == "double" else "float"
            store_t = acc_t
            w(f"using value_t = {val_t};   ///< activations")
            w(f"using accum_t = {acc_t};   ///< sums and activation functions")
            w(f"using weight_t = {store_t};  ///< weights (values representable in value_t)")
            self._emit_float_helpers(w)
        for k, layer in enumerate(self.layers):
            if layer.op in ("dense", "affine"):
                wt = layer.w.T if layer.op == "dense" else layer.w  # dense: stored by input
                if fixed:
                    W = self._fx.quantize(wt).reshape(-1)
                    B = self._fx.quantize(layer.b)
                    w(f"inline constexpr std::int32_t w{k}[{W.size}] = {{")
                    w(_wrap(str(int(v)) for v in W))
                    w("};")
                    w(f"inline constexpr std::int32_t b{k}[{B.size}] = {{")
                    w(_wrap(str(int(v)) for v in B))
                    w("};")
                else:
                    W = self._weights(wt).reshape(-1)
                    B = self._weights(layer.b)
                    w(f"alignas(64) inline constexpr weight_t w{k}[{W.size}] = {{")
                    w(_wrap(self._lit(float(v)) for v in W))
                    w("};")
                    w(f"inline constexpr weight_t b{k}[{B.size}] = {{")
                    w(_wrap(self._lit(float(v)) for v in B))
                    w("};")
        w("}  // namespace detail")
        w("")
        self._emit_predict(w)
        w(f"}}  // namespace {self.name}")
        if self.namespace:
            w(f"}}  // namespace {self.namespace}")
        return "\n".join(L) + "\n"

    def _emit_float_helpers(self, w) -> None:
        w("/// y = W x + b with W stored by input (w[i * NO + o] = W[o][i]): the NO sums are independent")
        w(
            "/// (no dependency chain, vectorisable); each one adds b, W[o][0] x[0], W[o][1] x[1], ... in order."
        )
        w("template <std::size_t NO, std::size_t NI>")
        w("inline void dense(const weight_t* w, const weight_t* b, const value_t* x, value_t* y) noexcept {")
        w("  accum_t acc[NO];")
        w("  for (std::size_t o = 0; o < NO; ++o) acc[o] = b[o];")
        w("  for (std::size_t i = 0; i < NI; ++i) {")
        w("    const accum_t xi = static_cast<accum_t>(x[i]);")
        w("    const weight_t* col = w + i * NO;")
        w("    for (std::size_t o = 0; o < NO; ++o) acc[o] += col[o] * xi;")
        w("  }")
        w("  for (std::size_t o = 0; o < NO; ++o) y[o] = static_cast<value_t>(acc[o]);")
        w("}")
        w("template <std::size_t N>")
        w("inline void affine(const weight_t* s, const weight_t* t, value_t* x) noexcept {")
        w(
            "  for (std::size_t i = 0; i < N; ++i) x[i] = static_cast<value_t>(s[i] * static_cast<accum_t>(x[i]) + t[i]);"
        )
        w("}")
        w("template <std::size_t N, typename F>")
        w("inline void apply(value_t* x, F f) noexcept {")
        w("  for (std::size_t i = 0; i < N; ++i) x[i] = static_cast<value_t>(f(static_cast<accum_t>(x[i])));")
        w("}")
        w("template <std::size_t N>")
        w("inline void softmax(value_t* x) noexcept {")
        w("  accum_t m = x[0], e[N], s = 0;")
        w("  for (std::size_t i = 1; i < N; ++i) m = x[i] > m ? static_cast<accum_t>(x[i]) : m;")
        w("  for (std::size_t i = 0; i < N; ++i) s += (e[i] = std::exp(static_cast<accum_t>(x[i]) - m));")
        w("  for (std::size_t i = 0; i < N; ++i) x[i] = static_cast<value_t>(e[i] / s);")
        w("}")

    def _emit_fixed_helpers(self, w) -> None:
        f = self._fx
        w(f"constexpr int frac_bits = {f.frac};   ///< value = raw * 2^-frac_bits")
        w(f"constexpr std::int64_t raw_min = {f.qmin}, raw_max = {f.qmax};")
        w("using value_t = std::int64_t;  ///< raw fixed-point value")
        w(
            "inline value_t saturate(std::int64_t v) noexcept { return v < raw_min ? raw_min : (v > raw_max ? raw_max : v); }"
        )
        w("/// Round a value with 2*frac_bits fractional bits to frac_bits (nearest, ties up), saturating.")
        w("inline value_t narrow(std::int64_t acc) noexcept {")
        w("  const std::int64_t half = std::int64_t{1} << (frac_bits - 1);")
        w("  const std::int64_t num = acc + half, den = std::int64_t{1} << frac_bits;")
        w("  std::int64_t q = num / den;")
        w("  if ((num % den != 0) && (num < 0)) --q;  // floor division")
        w("  return saturate(q);")
        w("}")
        w("inline value_t quantize(double v) noexcept {")
        w("  if (!(v == v)) return 0;")
        w("  const double s = std::floor(std::ldexp(v, frac_bits) + 0.5);")
        w("  if (s <= static_cast<double>(raw_min)) return raw_min;")
        w("  if (s >= static_cast<double>(raw_max)) return raw_max;")
        w("  return static_cast<value_t>(s);")
        w("}")
        w("inline double real(value_t q) noexcept { return std::ldexp(static_cast<double>(q), -frac_bits); }")
        if f.frac == 0:
            raise InputError("fixed<W,I> needs at least one fractional bit (I < W)")
        w("/// y = W x + b, exact in 64-bit integers, W stored by input (w[i * NO + o] = W[o][i]).")
        w("template <std::size_t NO, std::size_t NI>")
        w(
            "inline void dense(const std::int32_t* w, const std::int32_t* b, const value_t* x, value_t* y) noexcept {"
        )
        w("  std::int64_t acc[NO];")
        w(
            "  for (std::size_t o = 0; o < NO; ++o) acc[o] = static_cast<std::int64_t>(b[o]) * (std::int64_t{1} << frac_bits);"
        )
        w("  for (std::size_t i = 0; i < NI; ++i) {")
        w("    const std::int64_t xi = x[i];")
        w("    const std::int32_t* col = w + i * NO;")
        w("    for (std::size_t o = 0; o < NO; ++o) acc[o] += static_cast<std::int64_t>(col[o]) * xi;")
        w("  }")
        w("  for (std::size_t o = 0; o < NO; ++o) y[o] = narrow(acc[o]);")
        w("}")
        w("template <std::size_t N>")
        w("inline void affine(const std::int32_t* s, const std::int32_t* t, value_t* x) noexcept {")
        w("  for (std::size_t i = 0; i < N; ++i)")
        w(
            "    x[i] = narrow(static_cast<std::int64_t>(s[i]) * x[i] + static_cast<std::int64_t>(t[i]) * (std::int64_t{1} << frac_bits));"
        )
        w("}")
        w("template <std::size_t N, typename F>")
        w("inline void apply(value_t* x, F f) noexcept {")
        w("  for (std::size_t i = 0; i < N; ++i) x[i] = quantize(f(real(x[i])));")
        w("}")
        w("template <std::size_t N>")
        w("inline void softmax(value_t* x) noexcept {")
        w("  double m = real(x[0]), e[N], s = 0;")
        w("  for (std::size_t i = 1; i < N; ++i) m = real(x[i]) > m ? real(x[i]) : m;")
        w("  for (std::size_t i = 0; i < N; ++i) s += (e[i] = std::exp(real(x[i]) - m));")
        w("  for (std::size_t i = 0; i < N; ++i) x[i] = quantize(e[i] / s);")
        w("}")

    def _act_lambda(self, layer: _Layer) -> str:
        fixed = self.fmt is not None
        T = "double" if fixed else "accum_t"
        lit = _lit_double if fixed or self.mode == "double" else (lambda v: _lit_float(_f32(v)))
        k = layer.kind
        if k == "relu":
            return f"[](const {T} v) {{ return v < 0 ? {T}(0) : v; }}"
        if k == "leaky_relu":
            return f"[](const {T} v) {{ return v < 0 ? {lit(layer.alpha)} * v : v; }}"
        if k == "elu":
            return f"[](const {T} v) {{ return v < 0 ? {lit(layer.alpha)} * std::expm1(v) : v; }}"
        if k == "selu":
            return f"[](const {T} v) {{ return {lit(layer.beta)} * (v < 0 ? {lit(layer.alpha)} * std::expm1(v) : v); }}"
        if k == "sigmoid":
            return f"[](const {T} v) {{ return {T}(1) / ({T}(1) + std::exp(-v)); }}"
        if k == "tanh":
            return f"[](const {T} v) {{ return std::tanh(v); }}"
        if k == "gelu":
            return f"[](const {T} v) {{ return {T}(0.5) * v * ({T}(1) + std::erf(v * {lit(1 / math.sqrt(2))})); }}"
        if k == "gelu_tanh":
            return (
                f"[](const {T} v) {{ return {T}(0.5) * v * ({T}(1) + std::tanh({lit(math.sqrt(2 / math.pi))} * "
                f"(v + {lit(0.044715)} * v * v * v))); }}"
            )
        if k == "clip":
            lo = "-INFINITY" if layer.alpha == -math.inf else lit(layer.alpha)
            hi = "INFINITY" if layer.beta == math.inf else lit(layer.beta)
            return f"[](const {T} v) {{ return v < {lo} ? {T}({lo}) : (v > {hi} ? {T}({hi}) : v); }}"
        raise InputError(f"activation {k}")  # pragma: no cover

    def _emit_predict(self, w) -> None:
        fixed = self.fmt is not None
        width = max(self.sizes)
        w("/// Evaluates one event: `row` holds n_features values, `out` receives n_outputs values.")
        w("template <typename T>")
        w("inline void predict(const T* row, float* out) noexcept {")
        w("  using namespace detail;")
        w(f"  value_t a[{width}], b[{width}];")
        w("  value_t* x = a;")
        w("  value_t* y = b;")
        conv = "quantize(static_cast<double>(row[i]))" if fixed else "static_cast<value_t>(row[i])"
        w(f"  for (std::size_t i = 0; i < n_features; ++i) x[i] = {conv};")
        size = self.n_in
        for k, layer in enumerate(self.layers):
            if layer.op == "dense":
                n_out = layer.w.shape[0]
                w(f"  dense<{n_out}, {size}>(w{k}, b{k}, x, y);  // {_comment(layer.node)}")
                w("  { value_t* t = x; x = y; y = t; }")
                size = n_out
            elif layer.op == "affine":
                w(f"  affine<{size}>(w{k}, b{k}, x);  // {_comment(layer.node)}")
            elif layer.op == "softmax":
                w(f"  softmax<{size}>(x);  // {_comment(layer.node)}")
            elif fixed and layer.kind == "relu":
                w(
                    f"  for (std::size_t i = 0; i < {size}; ++i) x[i] = x[i] < 0 ? 0 : x[i];  // {_comment(layer.node)}"
                )
            else:
                w(f"  apply<{size}>(x, {self._act_lambda(layer)});  // {_comment(layer.node)}")
        back = "static_cast<float>(real(x[i]))" if fixed else "static_cast<float>(x[i])"
        w(f"  for (std::size_t i = 0; i < n_outputs; ++i) out[i] = {back};")
        w("}")
        if self.n_out == 1:
            w("/// The single output of one event.")
            w("template <typename T>")
            w("inline float predict(const T* row) noexcept {")
            w("  float out;")
            w("  predict(row, &out);")
            w("  return out;")
            w("}")

    # ---- the worst-case difference to real arithmetic, per event
    def error_bound(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        if self.mode in ("float", "double"):
            raise InputError("error bounds are for precision='fixed<W,I>' or 'float16'")
        fixed = self.fmt is not None
        x = X.copy()
        if fixed:
            f = self._fx
            lo, hi = f.qmin * f.step, f.qmax * f.step

            def err(v: np.ndarray, e: np.ndarray) -> np.ndarray:
                return np.full_like(v, f.step / 2)

            def out_of_range(v: np.ndarray, e: np.ndarray) -> np.ndarray:
                return ((v - e) < lo - f.step / 2) | ((v + e) > hi + f.step / 2)

            def quant(v: np.ndarray) -> np.ndarray:
                return f.value(f.quantize(v))
        else:

            def err(v: np.ndarray, e: np.ndarray) -> np.ndarray:
                return _HALF_U * (np.abs(v) + e) + _HALF_TINY

            def out_of_range(v: np.ndarray, e: np.ndarray) -> np.ndarray:
                return np.abs(v) + e > _HALF_MAX

            def quant(v: np.ndarray) -> np.ndarray:
                return v.astype(np.float16).astype(np.float64)

        e = err(x, np.zeros_like(x))
        bad = out_of_range(x, np.zeros_like(x)).any(axis=1)
        for layer in self.layers:
            if layer.op in ("dense", "affine"):
                W = layer.w if layer.op == "dense" else np.diag(layer.w)
                Wq, bq = quant(W), quant(layer.b)
                y = x @ W.T + layer.b
                absdot = np.abs(x) + e
                e_new = e @ np.abs(Wq).T + np.abs(x) @ np.abs(Wq - W).T + np.abs(bq - layer.b)
                if not fixed:  # float accumulation of n products (exact products of halves)
                    n = W.shape[1] + 1
                    gamma = n * _F32_U / (1 - n * _F32_U)
                    e_new = e_new + gamma * (absdot @ np.abs(Wq).T + np.abs(bq))
                e = e_new + err(y, e_new)
                x = y
            elif layer.op == "softmax":
                z = np.exp(x - x.max(axis=1, keepdims=True))
                y = z / z.sum(axis=1, keepdims=True)
                e_new = np.repeat(0.5 * e.max(axis=1, keepdims=True), x.shape[1], axis=1) + 4 * _F32_U
                e, x = e_new + err(y, e_new), y
            else:
                L = {
                    "relu": 1.0,
                    "leaky_relu": max(1.0, abs(layer.alpha)),
                    "elu": max(1.0, abs(layer.alpha)),
                    "selu": abs(layer.beta) * max(1.0, abs(layer.alpha)),
                    "sigmoid": 0.25,
                    "tanh": 1.0,
                    "gelu": _GELU_LIPSCHITZ,
                    "gelu_tanh": _GELU_LIPSCHITZ,
                    "clip": 1.0,
                }[layer.kind]
                y = _numpy_activation(layer, x)
                e_new = L * e + 4 * _F32_U * np.abs(y)
                if fixed and layer.kind == "relu":
                    e = e_new
                else:
                    e = e_new + err(y, e_new)
                x = y
            bad |= out_of_range(x, e).any(axis=1)
        bound = e.max(axis=1)
        bound[bad] = np.inf
        return bound


def _numpy_activation(layer: _Layer, x: np.ndarray) -> np.ndarray:
    k = layer.kind
    if k == "relu":
        return np.maximum(x, 0)
    if k == "leaky_relu":
        return np.where(x < 0, layer.alpha * x, x)
    if k == "elu":
        return np.where(x < 0, layer.alpha * np.expm1(np.minimum(x, 0)), x)
    if k == "selu":
        return layer.beta * np.where(x < 0, layer.alpha * np.expm1(np.minimum(x, 0)), x)
    if k == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if k == "tanh":
        return np.tanh(x)
    if k == "gelu":
        from math import erf

        return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))
    if k == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if k == "clip":
        return np.clip(x, layer.alpha, layer.beta)
    raise InputError(f"activation {k}")  # pragma: no cover


def mlp_error_bound(model: Any, X: Any, precision: str) -> np.ndarray:
    """Worst-case |header - exact| per event for an MLP generated with ``precision``.

    For ``"fixed<W,I>"`` and ``"float16"``: the largest difference, over the outputs, between
    what the generated header computes for each row of ``X`` and the network evaluated in
    exact real arithmetic with the file's weights. The bound propagates, layer by layer,
    the input rounding, the weight and bias rounding (the actual rounded values), the
    rounding of every result (half a grid step for fixed point, 2^-11 relative plus half a
    subnormal step for float16, plus float32 accumulation for float16) and each activation's
    Lipschitz constant (softmax: 1/2 in the max norm). It is ``inf`` for rows where a value can
    saturate (fixed point) or overflow (float16). Compare against a float32 engine with a
    margin for the engine's own rounding (about 1e-6 relative).
    """
    return _MLPGenerator(model, "model", None, precision).error_bound(np.asarray(X, np.float64))


# ------------------------------------------------------------------------- public API
def generate_cpp(
    model: Any,
    *,
    name: str = "model",
    namespace: Optional[str] = None,
    precision: str = "float",
    layout: str = "auto",
) -> str:
    """The text of the C++17 header :func:`emit_cpp` writes (same arguments, no file)."""
    for ident, what in ((name, "name"), (namespace, "namespace")):
        if ident is None:
            continue
        parts = ident.split("::") if what == "namespace" else [ident]
        if not all(_IDENT.match(p) and p not in _KEYWORDS for p in parts):
            raise InputError(f"{what} {ident!r} is not a valid C++ identifier")
    if _is_onnx_model(model):
        if layout != "auto":
            raise InputError("layout applies to forests only")
        return _MLPGenerator(model, name, namespace, precision).generate()
    if type(model).__name__ == "Model" and type(model).__module__.startswith("hepinfer"):
        raise InputError("pass the network's .onnx file (or an onnx.ModelProto) to generate code for an MLP")
    ir = _forest_ir(model)
    return _Generator(ir, name, namespace, precision, layout).generate()


def emit_cpp(
    model: Any,
    path: PathLike,
    *,
    name: str = "model",
    namespace: Optional[str] = None,
    precision: str = "float",
    layout: str = "auto",
) -> str:
    """Write a self-contained C++17 header that evaluates ``model`` exactly as hepinfer does.

    Parameters
    ----------
    model
        A :class:`hepinfer.Forest`, or anything :meth:`hepinfer.Forest.load` accepts (a model
        file path, bytes, an xgboost/lightgbm Booster); or an MLP as an ``.onnx`` file path or
        an ``onnx.ModelProto`` (see "MLPs" in the module docstring).
    path
        The header to write (e.g. ``"tagger.hpp"``).
    name
        The C++ namespace holding ``predict``, ``margin``, ``predict_leaf``, ``n_features``,
        ``n_outputs`` (``tagger::predict(row)``).
    namespace
        An optional enclosing namespace (``"myanalysis"`` or ``"a::b"``).
    precision
        ``"float"`` (default; comparisons in the model's own precision: exact), ``"double"``
        (the same: a model's comparisons are never widened, since that would change results)
        or ``"fixed<W,I>"`` (W-bit fixed point with I integer bits; see the module docstring
        for how results then differ from the engine's). MLPs: ``"float"``, ``"double"``,
        ``"float16"`` or ``"fixed<W,I>"`` (W <= 32).
    layout
        ``"auto"``, ``"arrays"`` (every tree as a constexpr complete-tree table) or
        ``"branches"`` (every tree as nested conditionals).

    Returns the path written, as a string.
    """
    text = generate_cpp(model, name=name, namespace=namespace, precision=precision, layout=layout)
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``hepinfer codegen MODEL -o HEADER [--name N] [--namespace NS] [--precision P] [--layout L]``."""
    p = argparse.ArgumentParser(
        prog="hepinfer codegen", description="write a standalone C++17 header for a forest or an MLP"
    )
    p.add_argument("model", help="XGBoost .json/.ubj, LightGBM .txt, TMVA .weights.xml or an MLP .onnx")
    p.add_argument("-o", "--output", required=True, help="header to write, e.g. tagger.hpp")
    p.add_argument(
        "--name", default=None, help="C++ namespace of the functions (default: from the header name)"
    )
    p.add_argument("--namespace", default=None, help="enclosing namespace")
    p.add_argument(
        "--precision",
        default="float",
        help='"float" (exact), "double", "fixed<W,I>", or for MLPs also "float16"',
    )
    p.add_argument("--layout", default="auto", choices=["auto", "arrays", "branches"])
    args = p.parse_args(argv)
    name = args.name
    if name is None:
        stem = os.path.basename(args.output).split(".")[0]
        name = re.sub(r"\W", "_", stem) or "model"
        if name[0].isdigit():
            name = "_" + name
    try:
        emit_cpp(
            args.model,
            args.output,
            name=name,
            namespace=args.namespace,
            precision=args.precision,
            layout=args.layout,
        )
    except ValueError as e:
        print(f"hepinfer codegen: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (namespace {name})")
    return 0
