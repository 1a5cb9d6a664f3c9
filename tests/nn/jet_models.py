"""Jet networks exported from torch to ONNX for the tests of hepinfer.nn.Model.predict_jagged
(tests/nn/test_nn_jagged.py) and of hepinfer.score on jagged branches (tests/scoring/test_score.py):
a particle-flow network (PFN), ParticleNet-Lite (two EdgeConv blocks), the TorchScript export, and
the zero-padding of jagged particles that the padded models see. Plain helpers, no fixtures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def export(module, args, path, input_names, dynamic):
    """TorchScript ONNX export (opset 17) with the given symbolic axes per input."""
    axes = {n: dict(d) for n, d in zip(input_names, dynamic)}
    axes["y"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=["y"],
            dynamic_axes=axes,
            dynamo=False,
            opset_version=17,
        )
    return path


class PFN(torch.nn.Module):
    """Particle-flow network: Phi per particle, masked sum over particles, F on the sum
    (optionally with a per-jet input concatenated to the latent sum)."""

    def __init__(self, n_feat=4, latent=16, jet_feat=0):
        super().__init__()
        self.jet_feat = jet_feat
        self.phi = torch.nn.Sequential(
            torch.nn.Linear(n_feat, 32), torch.nn.ReLU(), torch.nn.Linear(32, latent), torch.nn.ReLU()
        )
        self.f = torch.nn.Sequential(
            torch.nn.Linear(latent + jet_feat, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
        )

    def forward(self, particles, mask, *jet):
        h = (self.phi(particles) * mask.unsqueeze(-1)).sum(dim=1)
        if self.jet_feat:
            h = torch.cat([h, jet[0]], dim=1)
        return torch.softmax(self.f(h), dim=-1)


def knn_gather(points, features, k):
    """For every particle, the features of its k nearest neighbours in (eta, phi): (B, C, P, k)."""
    inner = -2 * torch.matmul(points.transpose(2, 1), points)
    xx = torch.sum(points**2, dim=1, keepdim=True)
    idx = (-xx - inner - xx.transpose(2, 1)).topk(k=k + 1, dim=-1)[1][:, :, 1:]
    B, C, P = features.shape
    flat = (idx + torch.arange(0, B).view(-1, 1, 1) * P).reshape(-1)
    return features.transpose(2, 1).reshape(B * P, C)[flat, :].view(B, P, k, C).permute(0, 3, 1, 2)


class EdgeBlock(torch.nn.Module):
    def __init__(self, k, c_in, widths):
        super().__init__()
        self.k = k
        layers, last = [], 2 * c_in
        for c in widths:
            layers += [torch.nn.Conv2d(last, c, 1, bias=False), torch.nn.BatchNorm2d(c), torch.nn.ReLU()]
            last = c
        self.mlp = torch.nn.Sequential(*layers)
        self.shortcut = torch.nn.Sequential(
            torch.nn.Conv1d(c_in, last, 1, bias=False), torch.nn.BatchNorm1d(last)
        )

    def forward(self, points, features):
        nb = knn_gather(points, features, self.k)
        center = features.unsqueeze(-1).repeat(1, 1, 1, self.k)
        x = self.mlp(torch.cat([center, nb - center], dim=1)).mean(dim=-1)
        return torch.relu(x + self.shortcut(features))


class ParticleNetLite(torch.nn.Module):
    """Two EdgeConv blocks in (eta, phi), padded points pushed 1e9 away, masked mean pooling."""

    def __init__(self, k):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(4)
        self.ec1 = EdgeBlock(k, 4, (32, 32))
        self.ec2 = EdgeBlock(k, 32, (48, 48))
        self.head = torch.nn.Sequential(torch.nn.Linear(48, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def forward(self, points, features, mask):
        points = points * mask + (1 - mask) * 1e9
        x = self.bn(features) * mask
        x = self.ec1(points, x) * mask
        x = self.ec2(points, x) * mask
        x = x.sum(dim=-1) / mask.sum(dim=-1)
        return torch.softmax(self.head(x), dim=-1)


def randomize_batchnorm(module, gen):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(n, generator=gen) * 0.2 + 1)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


# ----------------------------------------------------------------------------- padding
def pad(content, offsets, P, channels_first):
    """Zero-padded (n_jets, P, F) (or channels-first (n_jets, F, P)) array and its mask (n_jets, P)."""
    n_jets = len(offsets) - 1
    F = content.shape[1]
    out = np.zeros((n_jets, P, F), np.float32)
    mask = np.zeros((n_jets, P), np.float32)
    for j in range(n_jets):
        a, b = offsets[j], offsets[j + 1]
        out[j, : b - a] = content[a:b]
        mask[j, : b - a] = 1
    if channels_first:
        out = np.ascontiguousarray(out.transpose(0, 2, 1))
    return out, mask


def pnet_padded_feeds(content, offsets, P):
    x, mask = pad(content, offsets, P, channels_first=True)
    return {
        "points": np.ascontiguousarray(x[:, 1:3]),
        "features": x,
        "mask": np.ascontiguousarray(mask[:, None, :]),
    }
