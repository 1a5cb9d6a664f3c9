"""Models exported from torch for the CUDA NN executor's tests (tests/nn/test_nn_device.py on the
host reference backend, tests/gpu/test_nn_gpu.py on a GPU): an MLP with a sigmoid output, a
multi-class softmax MLP, a dense autoencoder whose output is the reconstruction error, and PFNs
(masked sum and masked mean pooling, with a per-jet input) on [batch, particles, features]."""

from __future__ import annotations

import warnings

import numpy as np


def export(torch, module, args, path, input_names, dynamic, opset=17):
    axes = {n: dict(d) for n, d in zip(input_names, dynamic)}
    axes["y"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=input_names,
            output_names=["y"],
            dynamic_axes=axes,
            dynamo=False,
            opset_version=opset,
        )
    return str(path)


def dense_models(torch, folder, seed):
    """{name: (path, n_features)} for the MLP, the softmax MLP and the autoencoder."""
    nn = torch.nn
    torch.manual_seed(seed)

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(20, 16), nn.ELU(), nn.Linear(16, 4), nn.Tanh())
            self.dec = nn.Sequential(nn.Linear(4, 16), nn.ELU(), nn.Linear(16, 20))

        def forward(self, x):
            return ((x - self.dec(self.enc(x))) ** 2).mean(dim=1, keepdim=True)

    models = {
        "mlp": (
            nn.Sequential(
                nn.Linear(30, 64),
                nn.ReLU(),
                nn.Linear(64, 64),
                nn.ReLU(),
                nn.Linear(64, 64),
                nn.ReLU(),
                nn.Linear(64, 1),
                nn.Sigmoid(),
            ),
            30,
        ),
        "softmax": (
            nn.Sequential(nn.Linear(12, 48), nn.GELU(), nn.Linear(48, 5), nn.Softmax(dim=-1)),
            12,
        ),
        "autoencoder": (AutoEncoder(), 20),
    }
    out = {}
    for name, (module, d) in models.items():
        path = export(torch, module, (torch.randn(3, d),), folder / f"{name}.onnx", ["x"], [{0: "batch"}])
        out[name] = (path, d)
    return out


def pfn_models(torch, folder, seed):
    """{name: path}: PFN with masked sum pooling, with masked mean pooling (count clamped at 1),
    and with a per-jet input concatenated to the pooled latent vector."""
    nn = torch.nn
    torch.manual_seed(seed)

    class PFN(nn.Module):
        def __init__(self, mean=False, jet_feat=0):
            super().__init__()
            self.mean, self.jet_feat = mean, jet_feat
            self.phi = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
            self.f = nn.Sequential(nn.Linear(16 + jet_feat, 32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, particles, mask, *jet):
            h = (self.phi(particles) * mask.unsqueeze(-1)).sum(dim=1)
            if self.mean:
                h = h / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
            if self.jet_feat:
                h = torch.cat([h, jet[0]], dim=1)
            return torch.softmax(self.f(h), dim=-1)

    dyn = [{0: "batch", 1: "n_particles"}] * 2
    args = (torch.randn(3, 9, 4), torch.ones(3, 9))
    return {
        "pfn_sum": export(torch, PFN(), args, folder / "pfn_sum.onnx", ["particles", "mask"], dyn),
        "pfn_mean": export(torch, PFN(mean=True), args, folder / "pfn_mean.onnx", ["particles", "mask"], dyn),
        "pfn_jet": export(
            torch,
            PFN(jet_feat=2),
            (*args, torch.randn(3, 2)),
            folder / "pfn_jet.onnx",
            ["particles", "mask", "jet"],
            [*dyn, {0: "batch"}],
        ),
    }


def knn_model(torch, folder):
    """A kNN (TopK + gather) model: not supported on CUDA yet."""

    class Knn(torch.nn.Module):
        def forward(self, points):
            d = ((points.unsqueeze(2) - points.unsqueeze(1)) ** 2).sum(-1)
            idx = d.topk(3, dim=-1, largest=False).indices
            return idx.float().sum(dim=(1, 2)).unsqueeze(1)

    return export(
        torch,
        Knn(),
        (torch.randn(2, 8, 2),),
        folder / "knn.onnx",
        ["points"],
        [{0: "batch", 1: "n_particles"}],
    )


def jagged_jets(rng, n_jets):
    """Offsets (with empty and one-particle jets) and (n, 4) float32 particle content."""
    lengths = np.minimum(rng.poisson(rng.gamma(4.0, 10.0, n_jets)), 100)
    if n_jets >= 3:
        lengths[:3] = [0, 1, 2]
        rng.shuffle(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return offsets, rng.standard_normal((int(offsets[-1]), 4)).astype(np.float32)


def padded(content, offsets, P=None):
    """(n_jets, P, 4) zero-padded particles and their (n_jets, P) float mask (P >= 1)."""
    n_jets = len(offsets) - 1
    lengths = np.diff(offsets)
    P = max(1, int(lengths.max()) if n_jets else 1) if P is None else P
    x = np.zeros((n_jets, P, content.shape[1]), np.float32)
    m = np.zeros((n_jets, P), np.float32)
    for j in range(n_jets):
        x[j, : lengths[j]] = content[offsets[j] : offsets[j + 1]]
        m[j, : lengths[j]] = 1
    return x, m


# ---- the reference runner shared by both test files (the fixtures dense/pfns are in conftest.py)
def ort_run(path, feeds):
    """onnxruntime's first output for `feeds` (the reference)."""
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
