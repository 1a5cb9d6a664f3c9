"""Attention as torch exports it (nn.MultiheadAttention, TransformerEncoderLayer/DecoderLayer,
F.scaled_dot_product_attention) through both exporters, run by hepinfer.nn.Model against
onnxruntime and torch, with padding masks that leave jets fully valid and fully padded."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as tf  # noqa: E402

from hepinfer.nn import Model  # noqa: E402

E, H, L = 16, 4, 7


def has_onnxscript():
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


EXPORTERS = [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not has_onnxscript(), reason="needs onnxscript")),
]


def export(module, args, names, dynamo, batched):
    """The ONNX bytes of `module` (opset 17 for the TorchScript exporter, 18 for dynamo), with a
    symbolic batch dimension on the `batched` inputs."""
    module.eval()
    dyn = {k: {0: "batch"} for k in names if k in batched}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(
                module,
                args,
                input_names=names,
                dynamic_axes=dyn,
                dynamo=True,
                opset_version=18,
                verbose=False,
            )
            return prog.model_proto.SerializeToString()
        f = io.BytesIO()
        torch.onnx.export(
            module, args, f, input_names=names, dynamic_axes=dyn, dynamo=False, opset_version=17
        )
        return f.getvalue()


def check(module, feeds, dynamo, rtol=2e-4, atol=2e-5, unbatched=(), torch_where=True):
    """hepinfer against onnxruntime (NaN exactly where onnxruntime has NaN: a query that sees
    no key, softmax over only -inf) and, where both give finite values, against torch (which
    may give finite values for such queries)."""
    names = list(feeds)
    targs = tuple(torch.from_numpy(v) for v in feeds.values())
    data = export(module, targs, names, dynamo, [k for k in names if k not in unbatched])
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)[0]
    model = Model.load(data)
    out = model.predict(dict(feeds), n_threads=1)
    got = out if not isinstance(out, dict) else out[model.outputs[0].name]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True)
    with torch.no_grad():
        t = module(*targs)
    t = (t[0] if isinstance(t, tuple) else t).numpy()
    finite = np.isfinite(t) & np.isfinite(ref) & torch_where
    np.testing.assert_allclose(got[finite], t[finite], rtol=rtol, atol=atol)
    return got, ref


def padding_mask(batch):
    """True = padded key. Row 0 fully valid, row 1 fully padded, others random lengths >= 1."""
    rng = np.random.default_rng(batch)
    m = np.zeros((batch, L), dtype=bool)
    m[1, :] = True
    for b in range(2, batch):
        m[b, rng.integers(1, L + 1) :] = True
    return m


class MHA(nn.Module):
    def __init__(self, need_weights=False):
        super().__init__()
        self.m = nn.MultiheadAttention(E, H, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x, kpm):
        y, w = self.m(x, x, x, key_padding_mask=kpm, need_weights=self.need_weights)
        return y if not self.need_weights else y + w.sum(-1, keepdim=True)


class MHAMask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.m = nn.MultiheadAttention(E, H, batch_first=True)
        self.register_buffer("mask", mask)

    def forward(self, x, kpm):
        if self.mask.dtype != torch.bool:  # torch wants both masks of one kind
            kpm = torch.zeros(kpm.shape).masked_fill(kpm, float("-inf"))
        return self.m(x, x, x, key_padding_mask=kpm, attn_mask=self.mask, need_weights=False)[0]


class Encoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        self.m = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True, norm_first=norm_first)

    def forward(self, x, kpm):
        return self.m(x, src_key_padding_mask=kpm)


class Decoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        self.m = nn.TransformerDecoderLayer(E, H, 32, dropout=0.0, batch_first=True, norm_first=norm_first)

    def forward(self, x, mem, kpm):
        causal = nn.Transformer.generate_square_subsequent_mask(L)
        return self.m(x, mem, tgt_mask=causal, memory_key_padding_mask=kpm)


class SDPA(nn.Module):
    def __init__(self, causal=False):
        super().__init__()
        self.causal = causal

    def forward(self, q, k, v, mask):
        if self.causal:
            return tf.scaled_dot_product_attention(q, k, v, is_causal=True) + 0 * mask.sum()
        return tf.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(1234)


def inputs(rng, batch=5):
    return np.asarray(rng.standard_normal((batch, L, E)), dtype=np.float32)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention(rng, dynamo, need_weights):
    feeds = {"x": inputs(rng), "kpm": padding_mask(5)}
    got, ref = check(MHA(need_weights), feeds, dynamo)
    # a fully padded jet: onnxruntime (softmax over all -inf) gives NaN, and hepinfer matches it
    assert np.isnan(ref[1]).all() == np.isnan(got[1]).all()
    assert np.isfinite(got[0]).all() and np.isfinite(got[2:]).all()
    # another batch size than the export's
    feeds = {"x": inputs(rng, 3), "kpm": padding_mask(3)}
    check(MHA(need_weights), feeds, dynamo)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_multihead_attention_attn_mask(rng, dynamo, kind):
    causal = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
    mask = causal if kind == "bool" else torch.randn(L, L) - causal.float() * 1e4
    feeds = {"x": inputs(rng), "kpm": padding_mask(5)}
    check(MHAMask(mask), feeds, dynamo)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(rng, dynamo, norm_first):
    feeds = {"x": inputs(rng), "kpm": padding_mask(5)}
    feeds["kpm"][1, :] = False  # the encoder's fast path refuses a fully padded jet in torch
    check(Encoder(norm_first), feeds, dynamo)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_decoder_layer(rng, dynamo, norm_first):
    feeds = {"x": inputs(rng), "mem": inputs(rng), "kpm": padding_mask(5)}
    check(Decoder(norm_first), feeds, dynamo)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("kind", ["bool", "float", "causal"])
def test_scaled_dot_product_attention(rng, dynamo, kind):
    q, k, v = (np.asarray(rng.standard_normal((3, H, L, 8)), dtype=np.float32) for _ in range(3))
    if kind == "float":
        mask = np.asarray(rng.standard_normal((L, L)), dtype=np.float32)
    else:
        mask = np.asarray(rng.random((L, L)) > 0.3)
        mask[2, :] = False  # a query row that sees no key
        mask[3, :] = True
    # a query that sees no key: torch gives 0, the dynamo export uniform weights (onnxruntime
    # and hepinfer agree on them), the TorchScript export NaN: torch is compared on the others
    sees_a_key = mask.any(-1)[:, None] if kind == "bool" else True
    check(
        SDPA(kind == "causal"),
        {"q": q, "k": k, "v": v, "mask": mask},
        dynamo,
        unbatched=["mask"],
        torch_where=sees_a_key,
    )


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_encoder_large_batch_in_row_blocks_and_threads(rng, dynamo):
    # enough jets for the row-block executor and several threads: each block and thread sees
    # its own batch size in the exported shape arithmetic (Shape, Mod, Reshape...)
    batch = 700
    mask = np.zeros((batch, L), dtype=bool)
    lengths = rng.integers(1, L + 1, size=batch)
    mask[np.arange(L)[None, :] >= lengths[:, None]] = True
    feeds = {"x": inputs(rng, batch), "kpm": mask}
    module = Encoder(norm_first=True)
    data = export(
        module, tuple(torch.from_numpy(v) for v in feeds.values()), list(feeds), dynamo, list(feeds)
    )
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    model = Model.load(data)
    for n_threads in (1, 3):
        np.testing.assert_allclose(model.predict(dict(feeds), n_threads=n_threads), ref, rtol=2e-4, atol=2e-5)
