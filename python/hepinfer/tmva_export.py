"""Export a binary-classification forest (XGBoost, LightGBM) to a TMVA BDT weight file.

:func:`to_tmva_xml` writes the XML that ``TMVA::Reader`` reads for a ``BDT`` method with
``BoostType=Grad`` (what CMS's ``xgboost2tmva`` scripts do by hand, but with exact
decisions), so a model trained in Python can run inside an existing TMVA-based analysis::

    hepinfer.tmva_export.to_tmva_xml("model.json", "BDTG.weights.xml", variables=["pt", "eta", ...])

    // C++ (ROOT >= 6.18)
    reader.AddVariable("pt", &pt); ...
    reader.BookMVA("BDTG", "BDTG.weights.xml");
    double v = reader.EvaluateMVA("BDTG");      // = 2 p - 1, p = xgboost's probability

What TMVA computes from the file, and how it relates to the original model:

* Decisions. TMVA (ROOT >= 6.18) sends an event right iff ``x >= Cut`` with ``x`` and
  ``Cut`` as ``Float_t`` (``cType=1``). XGBoost goes left iff ``float(x) < split``; LightGBM
  iff ``x <= threshold`` in double. Each ``Cut`` is the float ``c`` with ``x < c`` exactly
  when the original test holds for every float ``x``, so every decision is identical for
  float32 inputs (TMVA's Reader only has floats; LightGBM models read double inputs, which
  TMVA rounds to float first). ``root_cut_op=">"`` writes the cuts for ROOT <= 6.16's
  ``x > Cut`` instead (the previous float).
* Output. TMVA's Grad output is ``2 / (1 + exp(-2 F)) - 1 = tanh(F)`` with ``F`` the sum of
  the leaves' ``res``. For a logistic model (XGBoost ``binary:logistic``/``binary:logitraw``,
  LightGBM ``binary`` with sigmoid scale s), every leaf is multiplied by s/2 (exact in
  floating point for s = 1), and the base score becomes a first tree with a single leaf,
  so that ``F = s * margin / 2`` and **TMVA's value = 2 p - 1**, ``p = (value + 1) / 2``
  the original probability; ``F`` itself is half the XGBoost margin (logit). Any other
  objective is refused. Leaves are ``Float_t`` in TMVA: LightGBM's double leaves are
  rounded to float, and TMVA sums in double while XGBoost sums in float32, so scores agree
  to float32 rounding (~1e-7 relative), not bit for bit.
* Missing values. TMVA has no default directions: a NaN fails ``x >= Cut`` and takes the
  ``x < Cut`` branch. Nodes whose default direction is left are therefore exact for NaN
  too; nodes whose default direction is right are not. ``on_missing`` says what to do
  about those: ``"warn"`` (default, a UserWarning), ``"raise"`` or ``"ignore"``.
  LightGBM's ``x <= +inf`` splits (missing against every number) become their left
  subtree. LightGBM's zero-as-missing splits and categorical splits have no TMVA
  equivalent and are refused.

Names: variable names are written as exact XML attribute values (markup characters as
entities, TAB/CR/LF as character references); a name holding a character XML 1.0 cannot
represent at all (NUL, other C0 controls, U+FFFE/U+FFFF) is refused with an InputError naming
the variable, since TMVA could not read it back. Trees are walked with an explicit stack, so
trees thousands of levels deep export too.

The tests read every exported file back with hepinfer's own TMVA loader and with the
independent TMVA evaluator of tests/forest/tmva_reference.py.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union
from xml.sax.saxutils import quoteattr

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError

__all__ = ["tmva_xml", "to_tmva_xml"]

PathLike = Union[str, "os.PathLike[str]"]

_LEAF, _NUMERICAL = 0, 1
_LESS = 0


def _f32(v: float) -> float:
    return float(np.float32(v))


def _cut(t: float, op: int) -> float:
    """The float c with (float x OP t) <=> x < c for every float x: the engines' rule."""
    return _core.split_threshold(t, op, True)


def _xml_char_ok(o: int) -> bool:
    """XML 1.0's Char production: what a document may contain, literally or as a character reference."""
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or 0x10000 <= o <= 0x10FFFF


def _xml_invalid(s: str) -> Optional[str]:
    """The first character of ``s`` that XML 1.0 cannot represent (NUL, most C0 controls, U+FFFE/U+FFFF,
    lone surrogates), or None."""
    return next((ch for ch in s if not _xml_char_ok(ord(ch))), None)


def _xml_printable(s: str) -> str:
    """Informational text (the source file name, the objective): characters XML cannot hold become \\xNN."""
    return "".join(ch if _xml_char_ok(ord(ch)) else f"\\x{ord(ch):02x}" for ch in s)


def _attr(s: str) -> str:
    """A quoted XML attribute value holding exactly ``s`` (which must pass _xml_invalid): markup characters
    as entities and TAB/LF/CR as character references, since a parser normalises literal ones to spaces."""
    return quoteattr(s, {"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


def _num(v: float) -> str:
    return f"{v:.16e}"


def tmva_xml(
    model: Any,
    *,
    variables: Optional[Sequence[str]] = None,
    on_missing: str = "warn",
    root_cut_op: str = ">=",
) -> str:
    """The text of the TMVA weight file :func:`to_tmva_xml` writes (same arguments, no file)."""
    from hepinfer import __version__
    from hepinfer.forest import Forest

    if on_missing not in ("warn", "raise", "ignore"):
        raise InputError(f'on_missing must be "warn", "raise" or "ignore", not {on_missing!r}')
    if root_cut_op not in (">=", ">"):
        raise InputError(
            f'root_cut_op must be ">=" (ROOT >= 6.18) or ">" (ROOT <= 6.16), not {root_cut_op!r}'
        )
    forest = model if isinstance(model, Forest) else Forest.load(model)
    ir = _core.forest_ir(forest._core)
    nf = int(ir["n_features"])
    objective = str(ir["objective"])
    logistic = ir["postprocess"] == "sigmoid" or objective == "binary:logitraw"
    if not logistic or int(ir["n_groups"]) != 1:
        raise InputError(
            f"only binary classifiers with a logistic output can be written as a TMVA Grad BDT; this model's "
            f"objective is {objective!r}"
        )
    if ir["transforms"] or len(ir["linear"]):
        raise InputError("models with input transformations or Fisher cuts cannot be exported")
    # TMVA Grad reports tanh(F) = 2 sigmoid(2F) - 1: leaves carry half the model's (scaled,
    # averaged for LightGBM random forests) margin
    scale = float(ir["sigmoid_scale"]) / 2.0 / float(ir.get("margin_divisor", 1.0))
    if variables is None:
        names = list(ir["feature_names"]) or [f"var{j}" for j in range(nf)]
    else:
        names = [str(v) for v in variables]
        if len(names) != nf:
            raise InputError(f"variables has {len(names)} names but the model has {nf} features")
    if len(set(names)) != len(names):
        raise InputError("variable names must be distinct")
    for j, name in enumerate(names):
        bad = _xml_invalid(name)
        if bad is not None:
            raise InputError(
                f"variable {j} ({name!r}) contains the character {bad!r}, which an XML 1.0 file cannot hold (not "
                "even as a character reference), so TMVA could not read the name back; pass variables=[...] with "
                "names TMVA::Reader::AddVariable can match"
            )

    nodes = ir["nodes"]
    kinds = nodes["kind"]
    if ((kinds != _LEAF) & (kinds != _NUMERICAL)).any() or nodes["zero_is_missing"][
        kinds == _NUMERICAL
    ].any():
        raise InputError("the model has categorical or zero-as-missing splits, which TMVA cannot represent")
    # `x <= +inf` (LightGBM: NaN against every number) sends every number left: such a node is
    # replaced by its left subtree, and NaN then follows the numbers (exact iff NaN went left)
    always_left = (kinds == _NUMERICAL) & (nodes["op"] != _LESS) & (nodes["threshold"] == math.inf)
    right_default = int(((kinds == _NUMERICAL) & (nodes["default_left"] == 0)).sum())
    if right_default:
        msg = (
            f"{right_default} splits send missing values (NaN) right, which TMVA cannot express: in TMVA a NaN "
            "takes the `x < Cut` branch there. Results are identical for inputs without NaN."
        )
        if on_missing == "raise":
            raise InputError(msg)
        if on_missing == "warn":
            warnings.warn(msg, UserWarning, stacklevel=3)

    offsets = ir["tree_offsets"]
    trees_xml: list[str] = []
    lo = [math.inf] * nf
    hi = [-math.inf] * nf
    max_depth = 0

    def leaf_xml(value: float, depth: int, pos: str, indent: str) -> str:
        res = _f32(value)
        ntype = 1 if res > 0 else -1
        return (
            f'{indent}<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="-1" Cut="{_num(0.0)}" cType="1" '
            f'res="{_num(res)}" rms="{_num(0.0)}" purity="{_num(0.5)}" nType="{ntype}"/>'
        )

    def tree_xml(itree: int, body: list[str]) -> str:
        return (
            f'    <BinaryTree type="DecisionTree" boostWeight="{_num(1.0)}" itree="{itree}">\n'
            + "\n".join(body)
            + "\n    </BinaryTree>"
        )

    base = float(ir["base_margin"][0]) * scale
    if base != 0.0:
        trees_xml.append(tree_xml(len(trees_xml), [leaf_xml(base, 0, "s", "      ")]))
    for t in range(len(offsets) - 1):
        a = int(offsets[t])
        body: list[str] = []

        # depth-first, left subtree first, with an explicit stack: trees may be thousands of levels deep
        stack: list[tuple[str, int, int, str]] = [("node", 0, 0, "s")]
        while stack:
            what, i, depth, pos = stack.pop()
            indent = "      " + "  " * min(depth, 40)  # bounded: a deep tree must not grow quadratically
            if what == "close":
                body.append(f"{indent}</Node>")
                continue
            k = a + i
            max_depth = max(max_depth, depth)
            while always_left[k]:
                i = int(nodes["left"][k])
                k = a + i
            if kinds[k] == _LEAF:
                body.append(leaf_xml(float(nodes["value"][k]) * scale, depth, pos, indent))
                continue
            f = int(nodes["feature"][k])
            c = _cut(float(nodes["threshold"][k]), int(nodes["op"][k]))
            if root_cut_op == ">":  # ROOT <= 6.16: right iff x > Cut, i.e. Cut is the float below c
                c = float(np.nextafter(np.float32(c), np.float32(-np.inf)))
            if not math.isfinite(c):
                raise InputError(
                    f"tree {t}: split threshold {float(nodes['threshold'][k])!r} has no finite TMVA cut"
                )
            lo[f] = min(lo[f], c)
            hi[f] = max(hi[f], c)
            # cType=1: TMVA's left child is taken when x >= Cut fails, i.e. x < Cut: the IR's left child
            body.append(
                f'{indent}<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="{f}" Cut="{_num(c)}" cType="1" '
                f'res="{_num(0.0)}" rms="{_num(0.0)}" purity="{_num(0.5)}" nType="0">'
            )
            stack += [
                ("close", 0, depth, ""),
                ("node", int(nodes["right"][k]), depth + 1, "r"),
                ("node", int(nodes["left"][k]), depth + 1, "l"),
            ]

        trees_xml.append(tree_xml(len(trees_xml), body))

    release = "6.18/00 [397824]" if root_cut_op == ">=" else "6.16/00 [397312]"
    options = [
        ("V", "False"),
        ("VerbosityLevel", "Default"),
        ("VarTransform", "None"),
        ("H", "False"),
        ("CreateMVAPdfs", "False"),
        ("IgnoreNegWeightsInTraining", "False"),
        ("NTrees", str(len(trees_xml))),
        ("MaxDepth", str(max_depth)),
        ("MinNodeSize", "5%"),
        ("nCuts", "20"),
        ("BoostType", "Grad"),
        ("AdaBoostR2Loss", "quadratic"),
        ("UseBaggedBoost", "False"),
        ("Shrinkage", _num(1.0)),
        ("AdaBoostBeta", _num(0.5)),
        ("UseRandomisedTrees", "False"),
        ("UseNvars", str(nf)),
        ("UsePoissonNvars", "True"),
        ("BaggedSampleFraction", _num(0.6)),
        ("UseYesNoLeaf", "False"),
        ("NegWeightTreatment", "pray"),
        ("Css", _num(1.0)),
        ("Cts_sb", _num(1.0)),
        ("Ctb_ss", _num(1.0)),
        ("Cbb", _num(1.0)),
        ("NodePurityLimit", _num(0.5)),
        ("SeparationType", "giniindex"),
        ("RegressionLossFunctionBDTG", "huber"),
        ("HuberQuantile", _num(0.7)),
        ("DoBoostMonitor", "False"),
        ("UseFisherCuts", "False"),
        ("MinLinCorrForFisher", _num(0.8)),
        ("UseExclusiveVars", "False"),
        ("DoPreselection", "False"),
        ("SigToBkgFraction", _num(1.0)),
        ("PruneMethod", "nopruning"),
        ("PruneStrength", _num(0.0)),
        ("PruningValFraction", _num(0.5)),
        ("SkipNormalization", "False"),
        ("nEventsMin", "0"),
        ("UseBaggedGrad", "False"),
        ("GradBaggingFraction", _num(0.6)),
        ("UseNTrainEvents", "0"),
        ("NNodesMax", "0"),
    ]
    source = os.path.basename(str(ir["source_name"])) or "<memory>"
    out: list[str] = ['<?xml version="1.0"?>', '<MethodSetup Method="BDT::BDT">', "  <GeneralInfo>"]
    for name, value in [
        ("TMVA Release", "4.2.1 [262657]"),
        ("ROOT Release", release),
        ("Creator", f"hepinfer {__version__} tmva_export from {source} ({objective})"),
        ("Training events", "0"),
        ("AnalysisType", "Classification"),
    ]:
        out.append(f"    <Info name={_attr(name)} value={_attr(_xml_printable(value))}/>")
    out.append("  </GeneralInfo>")
    out.append("  <Options>")
    for name, value in options:
        out.append(
            f'    <Option name="{name}" modified="{"Yes" if name in ("NTrees", "BoostType") else "No"}">{value}</Option>'
        )
    out.append("  </Options>")
    out.append(f'  <Variables NVar="{nf}">')
    for j, name in enumerate(names):
        mn = lo[j] if lo[j] <= hi[j] else 0.0
        mx = hi[j] if lo[j] <= hi[j] else 0.0
        q = _attr(name)
        out.append(
            f'    <Variable VarIndex="{j}" Expression={q} Label={q} Title={q} Unit="" Internal={q} Type="F" '
            f'Min="{_num(mn)}" Max="{_num(mx)}"/>'
        )
    out.append("  </Variables>")
    out.append('  <Spectators NSpec="0"/>')
    out.append('  <Classes NClass="2">')
    out.append('    <Class Name="Signal" Index="0"/>')
    out.append('    <Class Name="Background" Index="1"/>')
    out.append("  </Classes>")
    out.append('  <Transformations NTransformations="0"/>')
    out.append("  <MVAPdfs/>")
    # Grad trees are regression trees (AnalysisType 1): their leaves answer `res`
    out.append(f'  <Weights NTrees="{len(trees_xml)}" AnalysisType="1">')
    out += trees_xml
    out.append("  </Weights>")
    out.append("</MethodSetup>")
    return "\n".join(out) + "\n"


def to_tmva_xml(
    model: Any,
    path: PathLike,
    *,
    variables: Optional[Sequence[str]] = None,
    on_missing: str = "warn",
    root_cut_op: str = ">=",
) -> str:
    """Write ``model`` as a TMVA BDT (BoostType=Grad) weight file readable by ``TMVA::Reader``.

    Parameters
    ----------
    model
        A :class:`hepinfer.Forest` or anything :meth:`hepinfer.Forest.load` accepts; a binary
        classifier with a logistic output (XGBoost ``binary:logistic``/``binary:logitraw``,
        LightGBM ``binary``).
    path
        The ``.weights.xml`` file to write.
    variables
        The TMVA variable expressions, in the model's feature order (default: the model's
        feature names, else ``var0``, ``var1``, ...). ``TMVA::Reader::AddVariable`` must use them.
    on_missing
        What to do when some split sends NaN right (not representable in TMVA):
        ``"warn"``, ``"raise"`` or ``"ignore"``.
    root_cut_op
        ``">="`` for ROOT >= 6.18 (default) or ``">"`` for ROOT <= 6.16 readers.

    TMVA's value equals ``2 p - 1`` with ``p`` the model's probability (see the module
    docstring for exactly what is and is not identical). Returns the path written.
    """
    text = tmva_xml(model, variables=variables, on_missing=on_missing, root_cut_op=root_cut_op)
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
