"""An independent evaluator of TMVA BDT weight files, written directly from TMVA's source
(DecisionTreeNode::GoesRight, DecisionTree::CheckEvent, MethodBDT::PrivateGetMvaValue, the
variable transformations), independent of hepinfer's IR: the reference of tests/forest/test_tmva.py
(hepinfer's TMVA loader) and tests/deploy/test_tmva_export.py (the TMVA files hepinfer writes)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np


def _f32(v):
    return float(np.float32(v))


class TMVAReference:
    def __init__(self, path, cut_op):
        root = ET.parse(path).getroot()
        opts = {o.get("name"): (o.text or "").strip() for o in root.iter("Option")}
        self.boost = opts.get("BoostType", "AdaBoost")
        self.yesno = opts.get("UseYesNoLeaf", "True").lower() in ("true", "1")
        if self.boost in ("RealAdaBoost", "AdaCost"):
            self.yesno = False
        self.ge = cut_op == ">="
        self.vars = [
            v.get("Expression") for v in sorted(root.find("Variables"), key=lambda v: int(v.get("VarIndex")))
        ]
        self.n = len(self.vars)
        w = root.find("Weights")
        self.regression_trees = int(w.get("AnalysisType", w.get("TreeType", "0"))) == 1
        self.trees = [(_f32(bt.get("boostWeight")), bt[0]) for bt in w]
        self.transforms = []
        trs = root.find("Transformations")
        for t in trs if trs is not None else []:
            sel = t.find("Selection")
            idx = [self.vars.index(i.get("Expression")) for i in sel.find("Input")]
            name = t.get("Name")
            if name == "Decorrelation":
                m = t.findall("Matrix")[-1]
                k = int(m.get("Rows"))
                mat = np.array([float(x) for x in m.text.split()]).reshape(k, k)
                self.transforms.append(("deco", idx, mat))
            elif name == "Normalize":
                cls = t.findall("Class")[-1]
                rng = sorted(cls.iter("Range"), key=lambda r: int(r.get("Index")))
                self.transforms.append(
                    ("norm", idx, [(np.float32(r.get("Min")), np.float32(r.get("Max"))) for r in rng])
                )
            elif name == "PCA":
                means = {int(s.get("ClassIndex")): s for s in t.findall("Statistics")}
                vecs = {int(s.get("ClassIndex")): s for s in t.findall("Eigenvectors")}
                c = max(means)
                k = len(idx)
                mean = np.array([float(x) for x in means[c].text.split()])
                ev = np.array([float(x) for x in vecs[c].text.split()]).reshape(k, k)
                self.transforms.append(("pca", idx, (mean, ev)))
            else:
                raise NotImplementedError(name)

    def _transform(self, x):
        x = [np.float32(v) for v in x]
        for kind, idx, p in self.transforms:
            inp = [x[i] for i in idx]
            if kind == "deco":  # TVectorD *= TMatrixD: y = M x in double, stored as Float_t
                out = [
                    np.float32(sum(p[i, j] * float(inp[j]) for j in range(len(inp)))) for i in range(len(inp))
                ]
            elif kind == "pca":  # X2P: p_i = sum_j (x_j - mean_j) E(j, i)
                mean, ev = p
                out = [
                    np.float32(sum((float(inp[j]) - mean[j]) * ev[j, i] for j in range(len(inp))))
                    for i in range(len(inp))
                ]
            else:  # Normalize in Float_t arithmetic
                out = []
                for v, (mn, mx) in zip(inp, p):
                    scale = np.float32(1.0 / float(np.float32(mx - mn)))
                    out.append(
                        np.float32(np.float32(np.float32(v - mn) * scale) * np.float32(2)) - np.float32(1)
                    )
            for i, v in zip(idx, out):
                x[i] = v
        return [float(v) for v in x]

    def _goes_right(self, node, x):
        ncoef = int(node.get("NCoef", "0"))
        cut = _f32(node.get("Cut"))
        if ncoef == 0:
            v = x[int(node.get("IVar"))]
            r = (v >= cut) if self.ge else (v > cut)  # NaN: False
        else:
            c = [float(node.get("fC%d" % i)) for i in range(ncoef)]
            f = c[-1]
            for i in range(ncoef - 1):
                f += c[i] * x[i]
            r = f > cut
        return r if node.get("cType") == "1" else not r

    def _check_event(self, node, x):
        while int(node.get("nType")) == 0:
            want = "r" if self._goes_right(node, x) else "l"
            node = next(ch for ch in node if ch.get("pos") == want)
        if self.regression_trees:
            return _f32(node.get("res"))
        if self.yesno and self.boost != "Grad":
            return float(int(node.get("nType")))
        if node.get("purity") is not None:
            return _f32(node.get("purity"))
        s, b = np.float32(node.get("nS")), np.float32(node.get("nB"))
        return float(s / (s + b))

    def __call__(self, row):
        x = self._transform(row)
        if self.boost == "Grad":
            s = sum(self._check_event(t, x) for _, t in self.trees)
            return 2.0 / (1.0 + math.exp(-2.0 * s)) - 1.0
        num = sum(w * self._check_event(t, x) for w, t in self.trees)
        norm = sum(w for w, _ in self.trees)
        return num / norm if norm > np.finfo(float).eps else 0.0

    def thresholds(self):
        """(feature, cut) of every numerical node; (None, cut) for Fisher nodes"""
        out = []
        for _, t in self.trees:
            for n in t.iter("Node"):
                if int(n.get("nType")) == 0:
                    out.append((None if int(n.get("NCoef", "0")) else int(n.get("IVar")), _f32(n.get("Cut"))))
        return out
