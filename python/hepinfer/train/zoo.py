"""Networks as experiments deploy them, at the sizes of the published models, for the NN engine's
zoo benchmark (``benchmarks/nn_zoo.py``) and tests (``tests/nn/test_zoo.py``).

Each entry of :data:`ZOO` is a function ``build(**sizes) -> ZooModel``: the torch module (eval
mode, fixed seed), how to make inputs for a batch, the input names and dynamic axes for
``torch.onnx.export`` and, for constituent models, how to lay jagged jets out (which input holds
which per-particle columns, along which axis, and the mask). Called without arguments it
gives the published size; tests pass smaller sizes so that they run in seconds.

================  =====================================================================================
``particlenet``   ParticleNet (Qu & Gouskos 2020) as weaver builds it for JetClass: k = 16, EdgeConv
                  (64,64,64)/(128,128,128)/(256,256,256), fusion 384, fc 256, BatchNorm, 17 features,
                  up to 100 particles, 10 classes
``part``          Particle Transformer (Qu, Li, Qian 2022), the paper's configuration: embedding
                  (128,512,128), pairwise features (ln kT, ln z, ln ΔR, ln m²) embedded (64,64,64,8)
                  as attention bias, 8 particle-attention + 2 class-attention blocks, 8 heads
``deepjet``       DeepJet (CMS): 1x1 convolution stacks per collection, LSTMs over 25 charged, 25
                  neutral candidates and 4 secondary vertices, dense 200 + 7x100, 6 classes
``deeptau``       DeepTau-like: inner 11x11 and outer 21x21 grids, 1x1 and 3x3 convolutions, PReLU,
                  max/average pooling, high-level features, 4 classes
``calogan``       CaloGAN-like convolutional generator (latent 128 + energy, ConvTranspose2d to 12x12)
``vae_decoder``   VAE decoder for calorimeter showers: 17 -> 256 -> 512 -> 368, SiLU, Softplus
``realnvp``       RealNVP normalising flow (32 dims, conditional on the energy), sampling direction
``mlp``, ``ae``,  the models ``benchmarks/nn.py`` has always timed (kept identical so that numbers
``pfn``,          compare across rounds): 30-64-64-64-1 MLP, 20-16-4-16-20 autoencoder error,
``pnet_lite``     PFN with a masked sum, ParticleNet-Lite (EdgeConv 32/64, k = 16)
``efn``           :class:`hepinfer.train.nets.EnergyFlowNetwork`
================  =====================================================================================

Everything is written for this project from the papers and weaver's descriptions; the ONNX
export route of each model (e.g. ParT's symmetric pair features through ``tril`` + ``nonzero`` +
index assignment) follows what the public exports do, since that is what the engine must read.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hepinfer.train.nets import EnergyFlowNetwork

__all__ = [
    "ZOO",
    "JaggedLayout",
    "ZooModel",
    "export",
    "jagged_particles",
    "jets",
    "op_histogram",
    "padded",
]

# --------------------------------------------------------------------------- the entry type


@dataclass
class JaggedLayout:
    """How a constituent model reads jets of variable length.

    The per-particle content of a jet is one ``(n, n_columns)`` float32 array (made by
    ``content``). Input ``name`` of ``particle_inputs`` takes the columns ``columns`` of it,
    with the particle dimension at ``axis`` of the padded input (1: ``(batch, particles,
    features)``, 2: channels first ``(batch, features, particles)``). The mask input ``mask``
    is ``(batch, particles)`` or, with ``mask_channel``, ``(batch, 1, particles)``.
    """

    particle_inputs: dict[str, tuple[int, slice]]
    mask: str
    mask_channel: bool
    n_columns: int
    max_particles: int
    content: Callable[[int, np.random.Generator], np.ndarray]


@dataclass
class ZooModel:
    """One zoo network: the torch module and what its export and timing need."""

    name: str
    module: nn.Module
    inputs: Callable[[int, np.random.Generator], dict[str, np.ndarray]]
    dynamic_axes: dict[str, dict[int, str]]
    jagged: Optional[JaggedLayout] = None
    description: str = ""
    output_names: list[str] = field(default_factory=lambda: ["y"])

    @property
    def input_names(self) -> list[str]:
        return list(self.dynamic_axes)

    def example(self, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
        return self.inputs(batch, np.random.default_rng(seed))

    def torch_run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            out = self.module(*(torch.from_numpy(feeds[n]) for n in self.input_names))
        return out.numpy()


# --------------------------------------------------------------------------- jets


def jets(n_jets: int, rng: np.random.Generator, max_particles: int = 100) -> np.ndarray:
    """Offsets (``n_jets + 1``, int64) of jets with a realistic multiplicity: Poisson of a
    Gamma(4, 10) mean (mean ~40, tail to 100), clipped to ``1..max_particles``."""
    counts = np.clip(rng.poisson(rng.gamma(4.0, 10.0, n_jets)), 1, max_particles)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def padded(layout: JaggedLayout, offsets: np.ndarray, content: np.ndarray, pad: int) -> dict[str, np.ndarray]:
    """The padded model inputs of jagged jets (``pad`` particles; longer jets are cut)."""
    counts = np.minimum(np.diff(offsets), pad)
    n_jets = len(counts)
    x = np.zeros((n_jets, pad, layout.n_columns), np.float32)
    rows = np.repeat(np.arange(n_jets), counts)
    cols = np.concatenate([np.arange(c) for c in counts]) if n_jets else np.zeros(0, np.int64)
    src = np.concatenate([np.arange(a, a + c) for a, c in zip(offsets[:-1], counts)]) if n_jets else cols
    x[rows, cols] = content[src]
    mask = (np.arange(pad)[None, :] < counts[:, None]).astype(np.float32)
    feeds: dict[str, np.ndarray] = {}
    for name, (axis, columns) in layout.particle_inputs.items():
        part = x[..., columns]
        feeds[name] = np.ascontiguousarray(part.transpose(0, 2, 1) if axis == 2 else part)
    feeds[layout.mask] = np.ascontiguousarray(mask[:, None, :] if layout.mask_channel else mask)
    return feeds


def jagged_particles(layout: JaggedLayout, content: np.ndarray) -> dict[str, np.ndarray]:
    """``particles`` for :meth:`hepinfer.nn.Model.predict_jagged` (views of ``content``)."""
    return {name: content[:, columns] for name, (_axis, columns) in layout.particle_inputs.items()}


def _inputs_with_counts(layout: JaggedLayout) -> Callable[[int, np.random.Generator], dict[str, np.ndarray]]:
    """Padded inputs of ``batch`` jets at the realistic multiplicity; the first jet of a batch
    of two or more is full (``max_particles``) and the second has a single particle."""

    def make(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        offsets = jets(batch, rng, layout.max_particles)
        counts = np.diff(offsets)
        if batch >= 2:
            counts[0], counts[1] = layout.max_particles, 1
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return padded(layout, offsets, layout.content(int(offsets[-1]), rng), layout.max_particles)

    return make


def _normal_content(n_columns: int) -> Callable[[int, np.random.Generator], np.ndarray]:
    return lambda n, rng: rng.standard_normal((n, n_columns)).astype(np.float32)


def _four_vector_content(n_features: int) -> Callable[[int, np.random.Generator], np.ndarray]:
    """``n_features`` standard-normal features, then (px, py, pz, E) of a massive particle."""

    def make(n: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal((n, n_features + 4)).astype(np.float32)
        p = rng.standard_normal((n, 3)) * 20.0
        m = rng.uniform(0.0, 0.5, n)
        x[:, n_features : n_features + 3] = p
        x[:, n_features + 3] = np.sqrt((p * p).sum(axis=1) + m * m)
        return x

    return make


# --------------------------------------------------------------------------- ParticleNet


def _pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x * x, dim=1, keepdim=True)
    return (xx.transpose(2, 1) + inner + xx).clamp(min=0)


def _knn_gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(batch, channels, particles) gathered at idx (batch, particles, k) -> (b, c, p, k), through
    one flat index over batch and particles (weaver's cpu_mode route)."""
    b, c, p = x.shape
    k = idx.shape[-1]
    flat = (idx + torch.arange(0, b).view(-1, 1, 1) * p).reshape(-1)
    fts = x.transpose(0, 1).reshape(c, -1)[:, flat].view(c, b, p, k)
    return fts.transpose(1, 0).contiguous()


class EdgeConvBlock(nn.Module):
    """EdgeConv: kNN in ``points``, edge features (x_i, x_j - x_i), 1x1 Conv2d + BN + ReLU stack,
    mean over the k neighbours, a 1x1 Conv1d + BN shortcut, ReLU."""

    def __init__(self, k: int, c_in: int, c_out: Sequence[int]) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        last = 2 * c_in
        for c in c_out:
            layers += [nn.Conv2d(last, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            last = c
        self.mlp = nn.Sequential(*layers)
        self.sc: nn.Module = (
            nn.Identity()
            if c_in == c_out[-1]
            else nn.Sequential(nn.Conv1d(c_in, c_out[-1], 1, bias=False), nn.BatchNorm1d(c_out[-1]))
        )

    def forward(self, points: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        idx = _pairwise_distance(points).topk(k=self.k + 1, dim=-1, largest=False, sorted=True)[1][:, :, 1:]
        center = features.unsqueeze(-1).repeat(1, 1, 1, self.k)
        x = torch.cat((center, _knn_gather(features, idx) - center), dim=1)
        return torch.relu(self.sc(features) + self.mlp(x).mean(dim=-1))


class ParticleNet(nn.Module):
    """ParticleNet with weaver's inference conventions: inputs ``points`` (b, 2, p), ``features``
    (b, c, p), ``mask`` (b, 1, p) as float 0/1; padded points pushed to 1e9, padded features
    zeroed after every block; fusion of all blocks; mean over the real particles; softmax."""

    def __init__(
        self,
        n_features: int = 17,
        n_classes: int = 10,
        k: int = 16,
        blocks: Sequence[Sequence[int]] = ((64, 64, 64), (128, 128, 128), (256, 256, 256)),
        fc: int = 256,
    ) -> None:
        super().__init__()
        self.bn_fts = nn.BatchNorm1d(n_features)
        convs = []
        last = n_features
        for widths in blocks:
            convs.append(EdgeConvBlock(k, last, widths))
            last = widths[-1]
        self.edge_convs = nn.ModuleList(convs)
        fused = sum(w[-1] for w in blocks)
        fusion = int(np.clip((fused // 128) * 128, 128, 1024))
        self.fusion = nn.Sequential(
            nn.Conv1d(fused, fusion, 1, bias=False), nn.BatchNorm1d(fusion), nn.ReLU()
        )
        self.fc = nn.Sequential(nn.Linear(fusion, fc), nn.ReLU(), nn.Dropout(0.1), nn.Linear(fc, n_classes))

    def forward(self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        padding = ~mask.bool()
        counts = mask.float().sum(dim=-1)
        counts = torch.max(counts, torch.ones_like(counts))
        fts = self.bn_fts(features).masked_fill(padding, 0)
        outputs = []
        for i, conv in enumerate(self.edge_convs):
            pts = (points if i == 0 else fts).masked_fill(padding, 1e9)
            fts = conv(pts, fts).masked_fill(padding, 0)
            outputs.append(fts)
        fts = self.fusion(torch.cat(outputs, dim=1)).masked_fill(padding, 0)
        return torch.softmax(self.fc(fts.sum(dim=-1) / counts), dim=1)


def particlenet(
    n_features: int = 17,
    n_classes: int = 10,
    k: int = 16,
    blocks: Sequence[Sequence[int]] = ((64, 64, 64), (128, 128, 128), (256, 256, 256)),
    fc: int = 256,
    max_particles: int = 100,
) -> ZooModel:
    torch.manual_seed(1)
    module = _randomise_batchnorm(ParticleNet(n_features, n_classes, k, blocks, fc)).eval()
    layout = JaggedLayout(
        # content columns: the features, of which columns 1, 2 are (eta, phi)
        particle_inputs={"points": (2, slice(1, 3)), "features": (2, slice(0, n_features))},
        mask="mask",
        mask_channel=True,
        n_columns=n_features,
        max_particles=max_particles,
        content=_normal_content(n_features),
    )
    axes = {n: {0: "batch", 2: "particles"} for n in ("points", "features", "mask")}
    return ZooModel(
        "particlenet",
        module,
        _inputs_with_counts(layout),
        axes,
        layout,
        f"ParticleNet k={k} EdgeConv {'/'.join(str(tuple(b)) for b in blocks)} fc {fc}",
    )


# --------------------------------------------------------------------------- Particle Transformer


def _delta_phi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def _pair_features(xi: torch.Tensor, xj: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(ln kT, ln z, ln ΔR, ln m²) of particle pairs; xi, xj (b, 4, ...) as (px, py, pz, E)."""

    def pt_rap_phi(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        px, py, pz, e = x.split((1, 1, 1, 1), dim=1)
        pt = torch.sqrt((px * px + py * py).clamp(min=eps))
        rap = 0.5 * torch.log(1 + (2 * pz) / (e - pz).clamp(min=1e-20))
        return pt, rap, torch.atan2(py, px)

    pti, rapi, phii = pt_rap_phi(xi)
    ptj, rapj, phij = pt_rap_phi(xj)
    delta = ((rapi - rapj) ** 2 + _delta_phi(phii, phij) ** 2).sqrt()
    lndelta = torch.log(delta.clamp(min=eps))
    ptmin = torch.minimum(pti, ptj)
    lnkt = torch.log((ptmin * delta).clamp(min=eps))
    lnz = torch.log((ptmin / (pti + ptj).clamp(min=eps)).clamp(min=eps))
    s = xi + xj
    m2 = s[:, 3:4] ** 2 - (s[:, :3] ** 2).sum(dim=1, keepdim=True)
    lnm2 = torch.log(m2.clamp(min=eps))
    return torch.cat([lnkt, lnz, lndelta, lnm2], dim=1)


class PairEmbed(nn.Module):
    """Pairwise features of the lower triangle (i >= j) embedded by 1x1 convolutions and scattered
    into a symmetric (b, heads, p, p) attention bias: the route of ParT's ONNX export (tril +
    nonzero indices, gathers, index assignment; closed-form indices under torch.export)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(4)]
        last = 4
        for d in dims:
            layers += [nn.Conv1d(last, d, 1), nn.BatchNorm1d(d), nn.GELU()]
            last = d
        self.embed = nn.Sequential(*layers[:-1])  # pre-activation output
        self.out_dim = dims[-1]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        b, _, p = v.shape
        if torch.compiler.is_exporting():
            # torch.export (the dynamo ONNX exporter) cannot trace nonzero's data-dependent
            # length: the same lower-triangle indices in closed form (exact in float32 for
            # thousands of particles)
            idx = torch.arange(p * (p + 1) // 2)
            i = ((torch.sqrt(8 * idx.float() + 1) - 1) / 2).floor().long()
            j = idx - i * (i + 1) // 2
        else:
            i, j = torch.ones(p, p, dtype=torch.long).tril().nonzero().T
        elements = self.embed(_pair_features(v[:, :, i], v[:, :, j]))
        y = elements.new_zeros(b, self.out_dim, p, p)
        y[:, :, i, j] = elements
        y[:, :, j, i] = elements
        return y


class ParTBlock(nn.Module):
    """ParT's (class-)attention block: pre/post LayerNorms around multi-head attention (scaled dot
    product with the pair bias and key padding as additive masks) and around the GELU MLP,
    per-head scales, residual scale."""

    def __init__(self, dim: int, heads: int, ffn_ratio: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.pre_attn_norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.post_attn_norm = nn.LayerNorm(dim)
        self.pre_fc_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * ffn_ratio)
        self.post_fc_norm = nn.LayerNorm(dim * ffn_ratio)
        self.fc2 = nn.Linear(dim * ffn_ratio, dim)
        self.c_attn = nn.Parameter(1 + 0.1 * torch.randn(heads))
        self.w_resid = nn.Parameter(1 + 0.1 * torch.randn(dim))

    def _attention(self, q_in: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = q_in.shape
        s = kv.shape[1]
        w, bias = self.in_proj.weight, self.in_proj.bias
        q = F.linear(q_in, w[:d], bias[:d]).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(kv, w[d : 2 * d], bias[d : 2 * d]).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        v = F.linear(kv, w[2 * d :], bias[2 * d :]).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, mask) * self.c_attn.view(1, self.heads, 1, 1)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, x_cls: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if x_cls is None:
            residual = x
            h = self.pre_attn_norm(x)
            h = self._attention(h, h, mask)
        else:
            residual = x_cls
            u = self.pre_attn_norm(torch.cat((x_cls, x), dim=1))
            h = self._attention(x_cls, u, mask)
        x = self.post_attn_norm(h) + residual
        residual = x
        h = self.fc2(self.post_fc_norm(F.gelu(self.fc1(self.pre_fc_norm(x)))))
        return h + self.w_resid * residual


class ParticleTransformer(nn.Module):
    """ParT for inference: inputs ``x`` (b, features, p), ``v`` (b, 4, p) four-vectors (px, py, pz,
    E), ``mask`` (b, 1, p) float 0/1; output softmax over the classes. Padded particles are
    masked out of every attention with -inf (an empty jet gives NaN, as in weaver)."""

    def __init__(
        self,
        n_features: int = 17,
        n_classes: int = 10,
        embed_dims: Sequence[int] = (128, 512, 128),
        pair_dims: Sequence[int] = (64, 64, 64),
        heads: int = 8,
        layers: int = 8,
        cls_layers: int = 2,
    ) -> None:
        super().__init__()
        dim = embed_dims[-1]
        self.input_bn = nn.BatchNorm1d(n_features)
        emb: list[nn.Module] = []
        last = n_features
        for d in embed_dims:
            emb += [nn.LayerNorm(last), nn.Linear(last, d), nn.GELU()]
            last = d
        self.embed = nn.Sequential(*emb)
        self.heads = heads
        self.pair_embed = PairEmbed((*pair_dims, heads))
        self.blocks = nn.ModuleList([ParTBlock(dim, heads) for _ in range(layers)])
        self.cls_blocks = nn.ModuleList([ParTBlock(dim, heads) for _ in range(cls_layers)])
        self.norm = nn.LayerNorm(dim)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.fc = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = mask.bool()  # (b, 1, p)
        padding = ~valid.squeeze(1)  # (b, p)
        b, _, p = x.shape
        # padded four-vectors become a unit light-like vector along x: the pair features stay
        # finite (the ONNX export of atan2 is NaN at (0, 0), and NaN + -inf is NaN)
        unit = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=v.dtype).view(1, 4, 1)
        v = torch.where(valid, v, unit)
        h = self.embed(self.input_bn(x).transpose(1, 2)).masked_fill(~valid.transpose(1, 2), 0)
        key_mask = torch.zeros(b, 1, 1, p, dtype=h.dtype).masked_fill(padding.view(b, 1, 1, p), float("-inf"))
        attn_mask = self.pair_embed(v) + key_mask  # (b, heads, p, p)
        for block in self.blocks:
            h = block(h, attn_mask)
        cls_padding = torch.cat((torch.zeros_like(padding[:, :1]), padding), dim=1)
        cls_mask = torch.zeros(b, 1, 1, p + 1, dtype=h.dtype).masked_fill(
            cls_padding.view(b, 1, 1, p + 1), float("-inf")
        )
        cls = self.cls_token.expand(b, -1, -1)
        for block in self.cls_blocks:
            cls = block(h, cls_mask, x_cls=cls)
        return torch.softmax(self.fc(self.norm(cls.squeeze(1))), dim=1)


def part(
    n_features: int = 17,
    n_classes: int = 10,
    embed_dims: Sequence[int] = (128, 512, 128),
    pair_dims: Sequence[int] = (64, 64, 64),
    heads: int = 8,
    layers: int = 8,
    cls_layers: int = 2,
    max_particles: int = 100,
) -> ZooModel:
    torch.manual_seed(2)
    module: nn.Module = ParticleTransformer(
        n_features, n_classes, embed_dims, pair_dims, heads, layers, cls_layers
    )
    module = _randomise_batchnorm(module).eval()
    layout = JaggedLayout(
        particle_inputs={"x": (2, slice(0, n_features)), "v": (2, slice(n_features, n_features + 4))},
        mask="mask",
        mask_channel=True,
        n_columns=n_features + 4,
        max_particles=max_particles,
        content=_four_vector_content(n_features),
    )
    axes = {n: {0: "batch", 2: "particles"} for n in ("x", "v", "mask")}
    return ZooModel(
        "part",
        module,
        _inputs_with_counts(layout),
        axes,
        layout,
        f"ParT embed {tuple(embed_dims)} pair {tuple(pair_dims)} {layers}+{cls_layers} blocks {heads} heads",
    )


# --------------------------------------------------------------------------- DeepJet


def _conv_stack(c_in: int, widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv1d(c_in, w, 1), nn.ReLU(), nn.Dropout(0.1)]
        c_in = w
    return nn.Sequential(*layers), c_in


class DeepJet(nn.Module):
    """DeepJet: global features (b, 15), charged candidates (b, 25, 16), neutral candidates
    (b, 25, 6), secondary vertices (b, 4, 12); input BatchNorm, 1x1 convolutions per collection,
    LSTMs read each collection backwards (Keras' go_backwards), dense head, softmax."""

    def __init__(
        self,
        n_global: int = 15,
        n_cpf: int = 16,
        n_npf: int = 6,
        n_sv: int = 12,
        cpf_convs: Sequence[int] = (64, 32, 32, 8),
        npf_convs: Sequence[int] = (32, 16, 4),
        sv_convs: Sequence[int] = (64, 32, 32, 8),
        lstm: Sequence[int] = (150, 50, 50),
        dense: Sequence[int] = (200, 100, 100, 100, 100, 100, 100, 100),
        n_classes: int = 6,
    ) -> None:
        super().__init__()
        self.bn = nn.ModuleList([nn.BatchNorm1d(n) for n in (n_global, n_cpf, n_npf, n_sv)])
        self.convs = nn.ModuleList()
        self.lstms = nn.ModuleList()
        for c_in, widths, hidden in zip((n_cpf, n_npf, n_sv), (cpf_convs, npf_convs, sv_convs), lstm):
            stack, width = _conv_stack(c_in, widths)
            self.convs.append(stack)
            self.lstms.append(nn.LSTM(width, hidden, batch_first=True))
        layers: list[nn.Module] = []
        last = n_global + sum(lstm)
        for d in dense:
            layers += [nn.Linear(last, d), nn.ReLU(), nn.Dropout(0.1)]
            last = d
        self.dense = nn.Sequential(*layers, nn.Linear(last, n_classes))

    def forward(
        self, global_features: torch.Tensor, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor
    ) -> torch.Tensor:
        parts = [self.bn[0](global_features)]
        for i, x in enumerate((cpf, npf, sv)):
            h = self.convs[i](self.bn[i + 1](x.transpose(1, 2)))  # (b, c, n)
            _, (h_n, _) = self.lstms[i](torch.flip(h.transpose(1, 2), dims=[1]))
            parts.append(h_n[-1])
        return torch.softmax(self.dense(torch.cat(parts, dim=1)), dim=1)


def deepjet(
    n_cpf: int = 25,
    n_npf: int = 25,
    n_sv: int = 4,
    cpf_convs: Sequence[int] = (64, 32, 32, 8),
    npf_convs: Sequence[int] = (32, 16, 4),
    sv_convs: Sequence[int] = (64, 32, 32, 8),
    lstm: Sequence[int] = (150, 50, 50),
    dense: Sequence[int] = (200, 100, 100, 100, 100, 100, 100, 100),
) -> ZooModel:
    torch.manual_seed(3)
    module: nn.Module = DeepJet(
        cpf_convs=cpf_convs, npf_convs=npf_convs, sv_convs=sv_convs, lstm=lstm, dense=dense
    )
    module = _randomise_batchnorm(module).eval()

    def inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        def normal(*shape: int) -> np.ndarray:
            return rng.standard_normal((batch, *shape)).astype(np.float32)

        return {
            "global": normal(15),
            "cpf": normal(n_cpf, 16),
            "npf": normal(n_npf, 6),
            "sv": normal(n_sv, 12),
        }

    axes = {n: {0: "batch"} for n in ("global", "cpf", "npf", "sv")}
    return ZooModel(
        "deepjet", module, inputs, axes, None, f"DeepJet LSTM {tuple(lstm)} over ({n_cpf},{n_npf},{n_sv})"
    )


# --------------------------------------------------------------------------- DeepTau-like CNN


def _embed_1x1(c_in: int, widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(c_in, w, 1), nn.BatchNorm2d(w), nn.PReLU(w)]
        c_in = w
    return nn.Sequential(*layers), c_in


class DeepTauCNN(nn.Module):
    """DeepTau-like: per grid cell 1x1 convolutions embed the cell's candidates; 3x3 convolutions
    and pooling reduce the inner 11x11 and outer 21x21 grids; a dense head joins them with the
    tau's high-level features; softmax over (e, mu, tau, jet)."""

    def __init__(
        self,
        n_high_level: int = 47,
        n_cell: int = 188,
        embed: Sequence[int] = (128, 64),
        channels: int = 64,
        dense: Sequence[int] = (200, 100),
    ) -> None:
        super().__init__()
        c = channels
        self.high = nn.Sequential(nn.Linear(n_high_level, 128), nn.PReLU(128))
        inner_embed, w = _embed_1x1(n_cell, embed)
        self.inner = nn.Sequential(
            inner_embed,
            nn.Conv2d(w, c, 3, padding=1),
            nn.PReLU(c),
            nn.MaxPool2d(2, ceil_mode=True),  # 11 -> 6
            nn.Conv2d(c, c, 3),  # 6 -> 4
            nn.PReLU(c),
            nn.AdaptiveAvgPool2d(1),
        )
        outer_embed, w = _embed_1x1(n_cell, embed)
        self.outer = nn.Sequential(
            outer_embed,
            nn.Conv2d(w, c, 3, padding=1),
            nn.PReLU(c),
            nn.MaxPool2d(2),  # 21 -> 10
            nn.Conv2d(c, c, 3, padding=1),
            nn.PReLU(c),
            nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),  # 10 -> 5
            nn.Conv2d(c, c, 3),  # 5 -> 3
            nn.PReLU(c),
            nn.AdaptiveMaxPool2d(1),
        )
        layers: list[nn.Module] = []
        last = 128 + 2 * c
        for d in dense:
            layers += [nn.Linear(last, d), nn.PReLU(d)]
            last = d
        self.head = nn.Sequential(*layers, nn.Linear(last, 4))

    def forward(self, high_level: torch.Tensor, inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
        h = torch.cat(
            [self.high(high_level), self.inner(inner).flatten(1), self.outer(outer).flatten(1)], dim=1
        )
        return torch.softmax(self.head(h), dim=1)


def deeptau(
    n_cell: int = 188,
    embed: Sequence[int] = (128, 64),
    channels: int = 64,
    dense: Sequence[int] = (200, 100),
) -> ZooModel:
    torch.manual_seed(4)
    module = _randomise_batchnorm(DeepTauCNN(47, n_cell, embed, channels, dense)).eval()

    def inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        def normal(*shape: int) -> np.ndarray:
            return rng.standard_normal((batch, *shape)).astype(np.float32)

        return {"high_level": normal(47), "inner": normal(n_cell, 11, 11), "outer": normal(n_cell, 21, 21)}

    axes = {n: {0: "batch"} for n in ("high_level", "inner", "outer")}
    return ZooModel(
        "deeptau", module, inputs, axes, None, f"DeepTau-like CNN {n_cell} per cell, 11x11 + 21x21"
    )


# --------------------------------------------------------------------------- generative models


class CaloGANGenerator(nn.Module):
    """DCGAN-style shower generator: (latent, energy) -> dense -> (c, 3, 3) -> ConvTranspose2d
    to 6x6 and 12x12 -> 3x3 convolution -> ReLU energies scaled by the incident energy."""

    def __init__(self, latent: int = 128, channels: Sequence[int] = (256, 128, 64)) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.c0 = c0
        self.dense = nn.Sequential(nn.Linear(latent + 1, c0 * 9), nn.LeakyReLU(0.2))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(c0, c1, 4, stride=2, padding=1),  # 3 -> 6
            nn.BatchNorm2d(c1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(c1, c2, 3, stride=2, padding=1, output_padding=1),  # 6 -> 12
            nn.BatchNorm2d(c2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c2, 1, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, z: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        h = self.dense(torch.cat([z, energy], dim=1)).view(-1, self.c0, 3, 3)
        return self.up(h) * energy.view(-1, 1, 1, 1)


def calogan(latent: int = 128, channels: Sequence[int] = (256, 128, 64)) -> ZooModel:
    torch.manual_seed(5)
    module = _randomise_batchnorm(CaloGANGenerator(latent, channels)).eval()

    def inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "z": rng.standard_normal((batch, latent)).astype(np.float32),
            "energy": rng.uniform(1.0, 100.0, (batch, 1)).astype(np.float32),
        }

    axes = {n: {0: "batch"} for n in ("z", "energy")}
    return ZooModel(
        "calogan", module, inputs, axes, None, f"CaloGAN-like generator {tuple(channels)} -> 12x12"
    )


def vae_decoder(widths: Sequence[int] = (17, 256, 512, 368)) -> ZooModel:
    """VAE decoder of a calorimeter fast simulation: latent + condition -> cells, SiLU, Softplus."""
    torch.manual_seed(6)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    module = nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]), nn.Softplus()).eval()
    n_in = widths[0]
    return ZooModel(
        "vae_decoder",
        module,
        lambda batch, rng: {"z": rng.standard_normal((batch, n_in)).astype(np.float32)},
        {"z": {0: "batch"}},
        None,
        "VAE decoder " + " -> ".join(str(w) for w in widths),
    )


class Coupling(nn.Module):
    """RealNVP affine coupling, sampling direction: x_b -> x_b * exp(s) + t with (s, t) from
    (x_a, condition); ``swap`` picks which half is transformed."""

    def __init__(self, dim: int, hidden: int, swap: bool) -> None:
        super().__init__()
        self.n_half = dim // 2
        self.swap = swap
        self.net = nn.Sequential(
            nn.Linear(self.n_half + 1, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * (dim - self.n_half)),
        )
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        a, b = x[:, : self.n_half], x[:, self.n_half :]
        if self.swap:
            a, b = x[:, -self.n_half :], x[:, : -self.n_half]
        s, t = self.net(torch.cat([a, condition], dim=1)).chunk(2, dim=1)
        b = b * torch.exp(self.scale * torch.tanh(s)) + t
        return torch.cat([b, a], dim=1) if self.swap else torch.cat([a, b], dim=1)


class RealNVP(nn.Module):
    """Conditional RealNVP in the sampling direction: Gaussian noise -> sample, alternating
    couplings with a fixed permutation between them."""

    def __init__(self, dim: int = 32, hidden: int = 128, n_couplings: int = 8) -> None:
        super().__init__()
        self.couplings = nn.ModuleList([Coupling(dim, hidden, i % 2 == 1) for i in range(n_couplings)])
        g = torch.Generator().manual_seed(0)
        self.register_buffer("permutation", torch.randperm(dim, generator=g))

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = z
        for i, coupling in enumerate(self.couplings):
            x = coupling(x, condition)
            if i % 2 == 1:
                x = x[:, self.permutation]
        return x


def realnvp(dim: int = 32, hidden: int = 128, n_couplings: int = 8) -> ZooModel:
    torch.manual_seed(7)
    module = RealNVP(dim, hidden, n_couplings).eval()

    def inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "z": rng.standard_normal((batch, dim)).astype(np.float32),
            "condition": rng.uniform(0.0, 1.0, (batch, 1)).astype(np.float32),
        }

    axes = {n: {0: "batch"} for n in ("z", "condition")}
    return ZooModel("realnvp", module, inputs, axes, None, f"RealNVP {dim} dims, {n_couplings} couplings")


# --------------------------------------------------------------------------- benchmarks/nn.py's models


class BenchMLP(nn.Module):
    """30 -> 64 -> 64 -> 64 -> 1, ReLU, sigmoid head (``benchmarks/nn.py``'s ``mlp``)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(30, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class BenchAE(nn.Module):
    """Dense autoencoder 20 -> 16 -> 4 -> 16 -> 20, output the per-event reconstruction error."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(20, 16), nn.ELU(), nn.Linear(16, 4), nn.Tanh())
        self.dec = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.1), nn.Linear(16, 20))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.dec(self.enc(x)) - x) ** 2).mean(dim=1)


class BenchPFN(nn.Module):
    """Deep Sets / PFN on (batch, particles, 4) with a mask (batch, particles), masked sum."""

    def __init__(self) -> None:
        super().__init__()
        self.phi = nn.Sequential(
            nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU()
        )
        self.f = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, particles: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.f((self.phi(particles) * mask.unsqueeze(-1)).sum(dim=1)), dim=-1)


def _bench_knn(points: torch.Tensor, features: torch.Tensor, k: int) -> torch.Tensor:
    inner = -2 * torch.matmul(points.transpose(2, 1), points)
    xx = torch.sum(points**2, dim=1, keepdim=True)
    idx = (-xx - inner - xx.transpose(2, 1)).topk(k=k + 1, dim=-1)[1][:, :, 1:]
    B, C, P = features.shape
    flat = (idx + torch.arange(0, B).view(-1, 1, 1) * P).reshape(-1)
    return features.transpose(2, 1).reshape(B * P, C)[flat, :].view(B, P, k, C).permute(0, 3, 1, 2)


class BenchEdgeConv(nn.Module):
    def __init__(self, k: int, c_in: int, c_out: Sequence[int]) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        last = 2 * c_in
        for c in c_out:
            layers += [nn.Conv2d(last, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            last = c
        self.mlp = nn.Sequential(*layers)
        self.sc = nn.Sequential(nn.Conv1d(c_in, c_out[-1], 1, bias=False), nn.BatchNorm1d(c_out[-1]))

    def forward(self, points: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        center = features.unsqueeze(-1).repeat(1, 1, 1, self.k)
        x = torch.cat([center, _bench_knn(points, features, self.k) - center], dim=1)
        return torch.relu(self.mlp(x).mean(dim=-1) + self.sc(features))


class BenchParticleNetLite(nn.Module):
    """ParticleNet-Lite-like (``benchmarks/nn.py``'s ``pnet``): 2 EdgeConv blocks (32, 64), kNN
    in (eta, phi), masked mean, softmax; inputs (b, 2, p), (b, 4, p), mask (b, 1, p)."""

    def __init__(self, k: int = 7) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.ec1 = BenchEdgeConv(k, 4, (32, 32, 32))
        self.ec2 = BenchEdgeConv(k, 32, (64, 64, 64))
        self.fc = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2))

    def forward(self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        points = points * mask + (1 - mask) * 1e9
        x = self.ec1(points, self.bn(features) * mask) * mask
        x = self.ec2(points, x) * mask
        return torch.softmax(self.fc(x.sum(dim=-1) / mask.sum(dim=-1)), dim=-1)


BENCH_MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": BenchMLP,
    "ae": BenchAE,
    "pfn": BenchPFN,
    "pnet": BenchParticleNetLite,
}
"""The classes of ``benchmarks/nn.py`` (and ``nn_jagged.py``), by their names there."""


def _dense(name: str, n_in: int) -> ZooModel:
    torch.manual_seed(1)
    module = BENCH_MODELS[name]().eval()
    return ZooModel(
        name,
        module,
        lambda batch, rng: {"x": rng.standard_normal((batch, n_in)).astype(np.float32)},
        {"x": {0: "batch"}},
        None,
        module.__doc__.split("(")[0].strip() if module.__doc__ else name,
    )


def mlp() -> ZooModel:
    return _dense("mlp", 30)


def ae() -> ZooModel:
    return _dense("ae", 20)


def _set_layout(max_particles: int, n_features: int) -> JaggedLayout:
    return JaggedLayout(
        particle_inputs={"particles": (1, slice(0, n_features))},
        mask="mask",
        mask_channel=False,
        n_columns=n_features,
        max_particles=max_particles,
        content=_normal_content(n_features),
    )


def pfn(max_particles: int = 100) -> ZooModel:
    torch.manual_seed(1)
    layout = _set_layout(max_particles, 4)
    axes = {n: {0: "batch", 1: "particles"} for n in ("particles", "mask")}
    return ZooModel(
        "pfn", BenchPFN().eval(), _inputs_with_counts(layout), axes, layout, "PFN 4-64-64-32 / 64-2"
    )


def efn(max_particles: int = 100) -> ZooModel:
    torch.manual_seed(1)
    layout = _set_layout(max_particles, 3)
    module = _WithSoftmax(EnergyFlowNetwork(0, (1, 2), (64, 64), 64, (64,), 2)).eval()
    axes = {n: {0: "batch", 1: "particles"} for n in ("particles", "mask")}
    return ZooModel(
        "efn",
        module,
        _inputs_with_counts(layout),
        axes,
        layout,
        "EFN (hepinfer.train.nets) 2-64-64-64 / 64-2",
    )


def pnet_lite(k: int = 16, max_particles: int = 100) -> ZooModel:
    torch.manual_seed(1)
    layout = JaggedLayout(
        particle_inputs={"points": (2, slice(1, 3)), "features": (2, slice(0, 4))},
        mask="mask",
        mask_channel=True,
        n_columns=4,
        max_particles=max_particles,
        content=_normal_content(4),
    )
    axes = {n: {0: "batch", 2: "particles"} for n in ("points", "features", "mask")}
    module = BenchParticleNetLite(k=k).eval()
    return ZooModel("pnet_lite", module, _inputs_with_counts(layout), axes, layout, f"ParticleNet-Lite k={k}")


class _WithSoftmax(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, particles: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(particles, mask), dim=-1)


# --------------------------------------------------------------------------- helpers


def _randomise_batchnorm(module: nn.Module) -> nn.Module:
    """Give every BatchNorm running statistics and affine parameters away from the identity (a
    freshly built one is the identity in eval mode, which would hide a wrong BatchNorm)."""
    g = torch.Generator().manual_seed(11)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            if m.running_mean is None or m.running_var is None:
                continue
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(1 + 0.2 * torch.rand(n, generator=g))
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return module


ZOO: dict[str, Callable[..., ZooModel]] = {
    "particlenet": particlenet,
    "part": part,
    "deepjet": deepjet,
    "deeptau": deeptau,
    "calogan": calogan,
    "vae_decoder": vae_decoder,
    "realnvp": realnvp,
    "mlp": mlp,
    "ae": ae,
    "pfn": pfn,
    "efn": efn,
    "pnet_lite": pnet_lite,
}
"""Every zoo model by name: ``ZOO[name](**sizes)`` builds it (published size without arguments)."""


def export(
    model: ZooModel, path: str, *, dynamo: bool = False, opset: Optional[int] = None, batch: int = 2
) -> str:
    """Write ``model`` to ONNX at ``path`` with ``torch.onnx.export`` (TorchScript exporter, or
    the dynamo exporter with ``dynamo=True``), dynamic batch (and particle) axes. ``opset``
    defaults to 17 for the TorchScript exporter and 18 for dynamo (its lowest: asked for 17,
    it converts down and can write graphs onnxruntime rejects, e.g. Split with num_outputs)."""
    if opset is None:
        opset = 18 if dynamo else 17
    feeds = model.example(batch)
    args = tuple(torch.from_numpy(feeds[n]) for n in model.input_names)
    axes: dict[str, Any] = {k: dict(v) for k, v in model.dynamic_axes.items()}
    axes[model.output_names[0]] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs: dict[str, Any] = dict(
            input_names=model.input_names,
            output_names=model.output_names,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=dynamo,
        )
        if dynamo:
            kwargs["external_data"] = False
            kwargs["verbose"] = False
        torch.onnx.export(model.module, args, path, **kwargs)
    return path


def op_histogram(path: str) -> dict[str, int]:
    """``{op_type: count}`` of an ONNX file, subgraphs and local functions included."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    counts: Counter[str] = Counter()

    def visit(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.g is not None and len(attr.g.node):
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(proto.graph)
    for fn in proto.functions:
        for node in fn.node:
            counts[node.op_type] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
