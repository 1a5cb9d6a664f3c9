"""Standalone C++ code generation for tree ensembles.

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
expression each. ``layout="branches"`` forces the latter for every tree.

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

Neural networks: C++ generation for MLPs belongs to the network engine (hepinfer.nn) and
is not provided here; it would add an ``emit_cpp`` for ``hepinfer.nn`` models that writes
the same kind of header (``predict``/``n_features``/``n_outputs``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError

__all__ = ["emit_cpp", "generate_cpp", "main"]

PathLike = Union[str, "os.PathLike[str]"]

_LEAF, _NUMERICAL, _CATEGORICAL, _LINEAR = 0, 1, 2, 3
_LESS, _LESS_EQUAL = 0, 1
_MAX_ARRAY_DEPTH = 10
_INTERLEAVE = 8  # complete trees walked together (independent chains of loads overlap)
_ZERO_BAND = float(np.float32(1e-35))
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORDS = {
    "alignas", "alignof", "and", "auto", "bool", "break", "case", "catch", "char", "class", "const", "constexpr",
    "continue", "default", "delete", "do", "double", "else", "enum", "explicit", "export", "extern", "false", "float",
    "for", "friend", "goto", "if", "inline", "int", "long", "namespace", "new", "not", "operator", "or", "private",
    "protected", "public", "return", "short", "signed", "sizeof", "static", "struct", "switch", "template", "this",
    "throw", "true", "try", "typedef", "typename", "union", "unsigned", "using", "virtual", "void", "volatile",
    "while", "std", "detail",
}


# ------------------------------------------------------------------------- numbers
def _f32(v: float) -> float:
    return float(np.float32(v))


def _next_f32(v: float, direction: float) -> float:
    return float(np.nextafter(np.float32(v), np.float32(direction)))


def _float_up(t: float) -> float:
    f = _f32(t)
    return _next_f32(f, math.inf) if f < t else f


def _float_down(t: float) -> float:
    f = _f32(t)
    return _next_f32(f, -math.inf) if f > t else f


def _strict_float(t: float, op: int) -> float:
    """The float f with (float x) OP t  <=>  x < f for every float x (x not NaN)."""
    if op == _LESS:
        return _float_up(t)
    return _next_f32(_float_down(t), math.inf)


def _strict_double(t: float, op: int) -> float:
    return t if op == _LESS else float(np.nextafter(t, math.inf))


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
            raise InputError(f"precision {precision!r}: need 2 <= W <= 48 total bits and 1 <= I <= W integer bits")
        return "fixed", w, i
    raise InputError(f'precision must be "float", "double" or "fixed<W,I>" (e.g. "fixed<16,6>"), not {precision!r}')


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
        def rec(i: int) -> str:
            if int(tree["kind"][i]) == _LEAF:
                return str(leaf_base + leaf_pos[i]) + "u"
            return f"({self._cond(tree, i)} ? {rec(int(tree['left'][i]))} : {rec(int(tree['right'][i]))})"

        return rec(0)

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
        self.float_leaves = (
            self.mode != "fixed" and f32acc and all(_f32(v) == v for v in all_leaves + base)
        )

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
                    stack += [(int(tr["left"][i]), 2 * pos + 1, level + 1), (int(tr["right"][i]), 2 * pos + 2, level + 1)]
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
                expr = self._branch_expr(tr, leaf_base, leaf_pos)
                branch_funcs.append(
                    f"inline std::uint32_t tree_{t}(const cmp_t* x) noexcept {{\n  (void)x;\n  return {expr};\n}}\n"
                )
                tree_code.append(("branch", t))

        return self._assemble(D, n_int, n_slots, array_nodes, leaf_vals, leaf_ids, tree_code, branch_funcs, base)

    def _assemble(self, D, n_int, n_slots, array_nodes, leaf_vals, leaf_ids, tree_code, branch_funcs, base) -> str:
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
        w(f"// Generated by hepinfer {version} (hepinfer.codegen.emit_cpp) from {src}: objective {ir['objective']},")
        w(f"// {len(self.trees)} trees, {nf} features, {n_out} output(s), precision {self._precision_name()}.")
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
            w("constexpr const char* feature_names[n_features] = {" + ", ".join(_c_string(s) for s in names) + "};")
        w("")
        w("namespace detail {")
        w(f"using cmp_t = {self.cmp_t};")
        w(f"using leaf_t = {leaf_t};")
        # tables
        if n_slots:
            w("struct node_t {")
            w("  std::uint32_t column;  ///< 2*feature (NaN read as -inf: default left) or 2*feature+1 (+inf)")
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
        w(f"  if (std::isnan(v) || (v >= -{_lit_double(_ZERO_BAND)} && v <= {_lit_double(_ZERO_BAND)})) return default_left;")
        w("  return less_equal ? v <= t : v < t;")
        w("}")
        if cats:
            w("inline bool category_left(double v, const std::uint32_t* words, std::uint32_t n_words, bool default_left,")
            w("                          bool negative_right) noexcept {")
            w("  if (std::isnan(v)) return default_left;")
            w("  if (v <= -1.0 || v >= 2147483648.0 || (negative_right && v < 0.0)) return false;")
            w("  const std::uint32_t c = static_cast<std::uint32_t>(static_cast<std::int32_t>(v));")
            w("  if (c / 32u >= n_words) return false;")
            w("  return ((words[c / 32u] >> (c % 32u)) & 1u) != 0;")
            w("}")
        if lin:
            w("inline bool linear_left(const cmp_t* x, const double* c, double t, int less_equal, bool default_left) noexcept {")
            w(f"  double v = c[{self.nf}];")
            w(f"  for (int j = 0; j < {self.nf}; ++j) v += c[j] * static_cast<double>(x[j]);")
            w("  if (std::isnan(v)) return default_left;")
            w("  return less_equal ? v <= t : v < t;")
            w("}")

    def _emit_load(self, w) -> None:
        nf = self.nf
        w("/// The row as the trees see it: rounded to float for XGBoost/TMVA, transformed (TMVA), quantised (fixed).")
        w("template <typename In>")
        w("inline void load(const In* row, cmp_t* x) noexcept {")
        if self.mode == "fixed":
            w("  for (int j = 0; j < n_features; ++j) {")
            conv = "static_cast<double>(static_cast<float>(row[j]))" if self.f32_in else "static_cast<double>(row[j])"
            w(f"    const double v = {conv};")
            w(f"    const double s = std::floor(v * {_lit_double(2.0 ** self.frac)});")
            w("    x[j] = std::isnan(v) ? std::numeric_limits<std::int64_t>::min()   // marks NaN")
            w(f"         : s <= {float(self.qmin)!r} ? std::int64_t{{{self.qmin}}} : s >= {float(self.qmax)!r} ? std::int64_t{{{self.qmax}}}")
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
                    w(f"  for (int i = 0; i < {nf}; ++i) {{ double s = 0.0; for (int j = 0; j < {nf}; ++j) s += transform{k}_matrix[i * {nf} + j] * a[j]; b[i] = s; }}")
                elif kind == "centered_linear":
                    w(f"  for (int i = 0; i < {nf}; ++i) {{ double s = 0.0; for (int j = 0; j < {nf}; ++j) s += transform{k}_matrix[i * {nf} + j] * (a[j] - transform{k}_offset[j]); b[i] = s; }}")
                elif kind == "affine":
                    w(f"  for (int i = 0; i < {nf}; ++i) b[i] = (a[i] - transform{k}_offset[i]) * transform{k}_scale[i] + {_lit_double(float(tr['shift']))};")
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
            expand = (f"  cmp_t xe[{2 * self.nf}];\n"
                      f"  for (int j = 0; j < {self.nf}; ++j) {{\n"
                      f"    const bool nan = x[j] == {nan_x};\n"
                      f"    xe[2 * j] = nan ? std::int64_t{{{lo}}} : x[j];\n"
                      f"    xe[2 * j + 1] = nan ? std::int64_t{{{hi}}} : x[j];\n  }}")
        else:
            if acc_t == "float":
                base = [_lit_float(float(v)) for v in self.ir["base_margin"]]
            else:
                base = [_lit_double(float(v)) for v in self.ir["base_margin"]]
            w(f"  {acc_t} m[{ng}] = {{{', '.join(base)}}};")
            inf = "std::numeric_limits<cmp_t>::infinity()"
            expand = (f"  cmp_t xe[{2 * self.nf}];\n"
                      f"  for (int j = 0; j < {self.nf}; ++j) {{\n"
                      f"    const bool nan = x[j] != x[j];\n"
                      f"    xe[2 * j] = nan ? -{inf} : x[j];\n"
                      f"    xe[2 * j + 1] = nan ? {inf} : x[j];\n  }}")
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
            grp = (lambda e, t0=t: f"tree_group[{t0} + {e}]") if ng > 1 else (lambda e: "0")
            upd = (lambda g, v: f"m[{g}] += {v};") if (fixed or acc_t == "float" or not f32acc) else (
                lambda g, v: f"m[{g}] = static_cast<double>(static_cast<float>(m[{g}] + {v}));")
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
                    w(f"        i{q} = 2 * i{q} + 1 + static_cast<std::uint32_t>(xe[nd[{q * n_int} + i{q}].column] >= nd[{q * n_int} + i{q}].threshold);")
                w("      }")
                for q in range(K):
                    idx = f"{leaf0} + (k + {q}) * {nl}u + i{q} - n_internal"
                    w(f"      {upd(grp(f'k + {q}'), f'leaf_value[{idx}]')}")
                    w(f"      if (leaves) leaves[{t} + k + {q}] = leaf_id[{idx}];")
                w("    }")
            w(f"    for (; k < {count}u; ++k, nd += {n_int}) {{")
            w("      std::uint32_t i = 0;")
            w("      for (int d = 0; d < depth; ++d) i = 2 * i + 1 + static_cast<std::uint32_t>(xe[nd[i].column] >= nd[i].threshold);")
            idx = f"{leaf0} + k * {nl}u + i - n_internal"
            w(f"      {upd(grp('k'), f'leaf_value[{idx}]')}")
            w(f"      if (leaves) leaves[{t} + k] = leaf_id[{idx}];")
            w("    }")
            w("  }")
            t = t1
        if fixed:
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = static_cast<double>(m[g]) * {_lit_double(2.0 ** -self.frac)};")
        else:
            w(f"  for (int g = 0; g < {ng}; ++g) out[g] = static_cast<double>(m[g]);")
        w("}")

    def _emit_public(self, w, n_out: int, post: str) -> None:
        ng = self.ng
        scale = float(self.ir["sigmoid_scale"])
        w("/// The raw margins (sum of leaves plus base score) of one row of n_features values.")
        w("inline void margin(const float* row, double* out) noexcept { detail::margins(row, out, nullptr); }")
        w("inline void margin(const double* row, double* out) noexcept { detail::margins(row, out, nullptr); }")
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
                w(f"  for (int g = 0; g < {ng}; ++g) out[g] = 1.0 / (1.0 + std::exp(-{_lit_double(scale)} * m[g]));")
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
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
        file path, bytes, an xgboost/lightgbm Booster).
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
        for how results then differ from the engine's).
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
    p = argparse.ArgumentParser(prog="hepinfer codegen", description="write a standalone C++17 header for a forest")
    p.add_argument("model", help="XGBoost .json/.ubj, LightGBM .txt or TMVA .weights.xml")
    p.add_argument("-o", "--output", required=True, help="header to write, e.g. tagger.hpp")
    p.add_argument("--name", default=None, help="C++ namespace of the functions (default: from the header name)")
    p.add_argument("--namespace", default=None, help="enclosing namespace")
    p.add_argument("--precision", default="float", help='"float" (exact), "double" or "fixed<W,I>"')
    p.add_argument("--layout", default="auto", choices=["auto", "arrays", "branches"])
    args = p.parse_args(argv)
    name = args.name
    if name is None:
        stem = os.path.basename(args.output).split(".")[0]
        name = re.sub(r"\W", "_", stem) or "model"
        if name[0].isdigit():
            name = "_" + name
    try:
        emit_cpp(args.model, args.output, name=name, namespace=args.namespace, precision=args.precision,
                 layout=args.layout)
    except ValueError as e:
        print(f"hepinfer codegen: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (namespace {name})")
    return 0
