"""The convolution, pooling, padding and resizing operators (Conv, ConvTranspose, MaxPool,
AveragePool, GlobalMaxPool, GlobalAveragePool, Pad, Resize, Upsample) against onnxruntime: small
graphs built with onnx.helper over the attribute variants (1-D to 3-D, strides, dilations,
groups, padding modes, ceil_mode, batch 0/1/several), torch-exported image models (a jet-image
CNN, a ConvTranspose generator) and the errors for inputs that do not fit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper

import hepinfer
from hepinfer.nn import Model
from tests.nn.ort_compare import compare, make

F, I = TensorProto.FLOAT, TensorProto.INT64
RTOL, ATOL = 1e-5, 1e-5


def randn(rng, *shape):
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


def one_node(op, x, inits=(), extra_inputs=(), outputs=("y",), opset=17, **attrs):
    """A graph of one node on input `x` (named "x", batch dimension symbolic)."""
    shape = ["batch", *x.shape[1:]]
    return make(
        [helper.make_node(op, ["x", *extra_inputs], list(outputs), name="n0", **attrs)],
        [("x", F, shape)],
        [(o, F if o == "y" else I, None) for o in outputs],
        inits,
        opset=opset,
    )


# ----------------------------------------------------------------------------- Conv
CONV_CASES = [
    # spatial shape, kernel, attributes
    ((9,), (3,), {}),
    ((10,), (4,), {"strides": [3], "pads": [2, 1], "dilations": [2]}),
    ((11, 11), (3, 3), {}),
    ((11, 11), (3, 3), {"pads": [1, 1, 1, 1]}),
    ((12, 10), (3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
    ((13, 13), (3, 3), {"dilations": [2, 3], "pads": [2, 2, 2, 2]}),
    ((8, 9), (5, 5), {"strides": [2, 2], "pads": [2, 2, 2, 2]}),
    ((7, 7), (1, 1), {}),
    ((7, 7), (1, 1), {"strides": [2, 2]}),
    ((9, 9), (2, 2), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((9, 9), (4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((9, 8), (3, 3), {"auto_pad": "VALID", "strides": [1, 2]}),
    ((5, 6, 7), (3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}),
    ((6, 6, 6), (2, 3, 1), {"strides": [2, 1, 2], "dilations": [1, 2, 1]}),
]


@pytest.mark.parametrize("spatial,kernel,attrs", CONV_CASES)
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_conv(rng, spatial, kernel, attrs, group, batch):
    C, M = 4, 6
    x = randn(rng, batch, C, *spatial)
    inits = {"w": randn(rng, M, C // group, *kernel), "b": randn(rng, M)}
    compare(one_node("Conv", x, inits, ["w", "b"], kernel_shape=list(kernel), group=group, **attrs), {"x": x})


@pytest.mark.parametrize("spatial", [(11, 11), (33, 33), (64, 64)])
@pytest.mark.parametrize("channels", [(1, 16), (16, 32), (3, 1)])
def test_conv_image_sizes(rng, spatial, channels):
    """HEP image sizes, 3x3 'same' convolutions: im2col blocks over many positions."""
    C, M = channels
    x = randn(rng, 2, C, *spatial)
    inits = {"w": randn(rng, M, C, 3, 3), "b": randn(rng, M)}
    compare(
        one_node("Conv", x, inits, ["w", "b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), {"x": x}, atol=1e-4
    )


@pytest.mark.parametrize(
    "kernel,pads,strides", [((3, 3), [1, 1, 1, 1], [1, 1]), ((5, 5), [2, 2, 2, 2], [2, 2])]
)
def test_conv_depthwise(rng, kernel, pads, strides):
    C = 8
    x = randn(rng, 3, C, 12, 12)
    x[0, 0, 3, 4] = np.nan
    inits = {"w": randn(rng, C, 1, *kernel), "b": randn(rng, C)}
    m = one_node("Conv", x, inits, ["w", "b"], kernel_shape=list(kernel), group=C, pads=pads, strides=strides)
    compare(m, {"x": x})


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu"])
@pytest.mark.parametrize("M", [1, 8])
def test_conv_fused_activation(rng, act, M):
    x = randn(rng, 2, 3, 10, 10)
    m = make(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["h"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node(act, ["h"], ["y"]),
        ],
        [("x", F, ["batch", 3, 10, 10])],
        [("y", F, None)],
        {"w": randn(rng, M, 3, 3, 3), "b": randn(rng, M)},
    )
    compare(m, {"x": x})
    assert Model.load(m.SerializeToString()).n_nodes == 1  # the activation runs inside the Conv


def test_conv_weights_as_inputs(rng):
    """W and B computed at run time (not constants): no load-time knowledge of the kernel."""
    x, w, b = randn(rng, 2, 4, 9, 9), randn(rng, 6, 2, 3, 3), randn(rng, 6)
    m = make(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, strides=[2, 1])],
        [("x", F, ["batch", 4, 9, 9]), ("w", F, [6, 2, 3, 3]), ("b", F, [6])],
        [("y", F, None)],
    )
    compare(m, {"x": x, "w": w, "b": b})


# ----------------------------------------------------------------------------- ConvTranspose
CONV_T_CASES = [
    ((7,), (3,), {}),
    ((7,), (4,), {"strides": [2], "pads": [1, 1]}),
    ((5, 5), (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((4, 6), (4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((5, 5), (3, 3), {"dilations": [2, 2]}),
    ((4, 5), (2, 3), {"strides": [3, 2], "output_padding": [2, 1]}),
    ((5, 5), (3, 3), {"strides": [2, 2], "output_shape": [10, 10]}),
    ((5, 5), (3, 3), {"strides": [2, 2], "output_shape": [11, 11]}),
    ((4, 4), (3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((4, 4, 3), (3, 3, 2), {"strides": [2, 1, 2], "pads": [1, 0, 0, 1, 1, 0]}),
]


@pytest.mark.parametrize("spatial,kernel,attrs", CONV_T_CASES)
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_conv_transpose(rng, spatial, kernel, attrs, group, batch):
    C, Mg = 4, 3
    x = randn(rng, batch, C, *spatial)
    inits = {"w": randn(rng, C, Mg, *kernel), "b": randn(rng, Mg * group)}
    m = one_node("ConvTranspose", x, inits, ["w", "b"], kernel_shape=list(kernel), group=group, **attrs)
    compare(m, {"x": x})


# ----------------------------------------------------------------------------- pooling
POOL_CASES = [
    ((9,), {"kernel_shape": [3]}),
    ((10,), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ((10, 10), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((11, 11), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((11, 11), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((11, 10), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((12, 12), {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((9, 9), {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [1, 0, 1, 1]}),
    ((9, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((9, 9), {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((6, 7, 8), {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2], "pads": [0, 1, 0, 1, 1, 1]}),
]


@pytest.mark.parametrize("spatial,attrs", POOL_CASES)
@pytest.mark.parametrize("batch", [0, 1, 2])
def test_max_pool(rng, spatial, attrs, batch):
    x = randn(rng, batch, 3, *spatial)
    compare(one_node("MaxPool", x, **attrs), {"x": x})


@pytest.mark.parametrize(
    "spatial,attrs",
    [
        ((11, 11), {"kernel_shape": [3, 3], "dilations": [2, 2]}),
        ((12, 12), {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
        ((10,), {"kernel_shape": [3], "dilations": [3], "ceil_mode": 1, "strides": [2]}),
    ],
)
def test_max_pool_dilations(rng, spatial, attrs):
    x = randn(rng, 2, 3, *spatial)
    compare(one_node("MaxPool", x, **attrs), {"x": x})


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("pads", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_max_pool_indices(rng, storage_order, pads):
    x = randn(rng, 2, 3, 7, 6)
    m = one_node(
        "MaxPool",
        x,
        outputs=("y", "i"),
        kernel_shape=[3, 2],
        strides=[2, 2],
        pads=pads,
        storage_order=storage_order,
    )
    compare(m, {"x": x})


@pytest.mark.parametrize("spatial,attrs", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(rng, spatial, attrs, count_include_pad):
    x = randn(rng, 2, 3, *spatial)
    compare(one_node("AveragePool", x, count_include_pad=count_include_pad, **attrs), {"x": x})


@pytest.mark.parametrize(
    "spatial,attrs",
    [
        ((3, 3), {"kernel_shape": [3, 3]}),
        ((3, 3), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
        ((3, 3), {"kernel_shape": [3, 3], "pads": [0, 0, 1, 1], "ceil_mode": 1}),
        ((4, 2), {"kernel_shape": [3, 2], "strides": [2, 1]}),
        ((5,), {"kernel_shape": [5]}),
        ((2, 3, 2), {"kernel_shape": [2, 3, 2]}),
    ],
)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_pool_windows_near_the_plane(rng, spatial, attrs, op, batch):
    """Windows that are (or are almost) the whole plane: the one-pass form where the window is
    exactly the unpadded plane, the general one otherwise. NaN propagates through the average
    (onnxruntime's MaxPool drops or keeps a NaN depending on where it falls: not compared)."""
    x = randn(rng, batch, 4, *spatial)
    if batch and op == "AveragePool":
        x.reshape(-1)[5] = np.nan
    extra = {"count_include_pad": 1} if op == "AveragePool" else {}
    compare(one_node(op, x, **attrs, **extra), {"x": x})


def test_average_pool_dilations_opset19(rng):
    x = randn(rng, 2, 3, 11, 11)
    for cip in (0, 1):
        m = one_node(
            "AveragePool",
            x,
            opset=19,
            kernel_shape=[3, 3],
            dilations=[2, 2],
            pads=[1, 1, 1, 1],
            count_include_pad=cip,
        )
        compare(m, {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("spatial", [(7,), (5, 6), (3, 4, 5)])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_global_pool(rng, op, spatial, batch):
    x = randn(rng, batch, 4, *spatial)
    compare(one_node(op, x), {"x": x})


# ----------------------------------------------------------------------------- Pad
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize(
    "pads",
    [
        [0, 0, 1, 2, 0, 0, 2, 1],
        [0, 1, 0, 3, 0, 0, 2, 0],
        [0, 0, -1, 2, 0, 0, 1, -2],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
)
def test_pad(rng, mode, pads):
    x = randn(rng, 2, 3, 5, 6)
    inits = {"pads": np.array(pads, np.int64)}
    inputs = ["pads"]
    if mode == "constant":
        inits["cv"] = np.float32(1.5)
        inputs.append("cv")
    compare(one_node("Pad", x, inits, inputs, opset=19, mode=mode), {"x": x})


def test_pad_axes_and_runtime_pads(rng):
    x = randn(rng, 2, 3, 5, 6)
    m = make(
        [helper.make_node("Pad", ["x", "p", "", "axes"], ["y"], mode="reflect")],
        [("x", F, ["batch", 3, 5, 6]), ("p", I, [4])],
        [("y", F, None)],
        {"axes": np.array([-1, 2], np.int64)},
        opset=18,
    )
    compare(m, {"x": x, "p": np.array([2, 1, 0, 3], np.int64)})


def test_pad_int64_and_opset2_attributes(rng):
    xi = rng.integers(-9, 9, size=(2, 4)).astype(np.int64)
    m = make(
        [helper.make_node("Pad", ["x", "p", "c"], ["y"])],
        [("x", I, ["batch", 4])],
        [("y", I, None)],
        {"p": np.array([0, 2, 1, 0], np.int64), "c": np.int64(7)},
    )
    compare(m, {"x": xi})
    x = randn(rng, 2, 3, 4)
    m2 = make(
        [helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 2, 0, 0, 1], value=-2.5)],
        [("x", F, ["batch", 3, 4])],
        [("y", F, None)],
        opset=10,
    )
    compare(m2, {"x": x})


# ----------------------------------------------------------------------------- Resize / Upsample
RESIZE_NEAREST = [
    ("asymmetric", "floor"),
    ("half_pixel", "round_prefer_floor"),
    ("half_pixel", "round_prefer_ceil"),
    ("pytorch_half_pixel", "floor"),
    ("align_corners", "round_prefer_floor"),
    ("asymmetric", "ceil"),
]


@pytest.mark.parametrize("coord,nearest", RESIZE_NEAREST)
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 0.5, 3], [1, 1, 1.5, 0.7]])
def test_resize_nearest(rng, coord, nearest, scales):
    x = randn(rng, 2, 3, 6, 5)
    m = one_node(
        "Resize",
        x,
        {"s": np.array(scales, np.float32)},
        ["", "s"],
        mode="nearest",
        coordinate_transformation_mode=coord,
        nearest_mode=nearest,
    )
    compare(m, {"x": x})


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coord", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("sizes", [[2, 3, 12, 10], [2, 3, 3, 7], [2, 3, 1, 5]])
def test_resize_interpolating(rng, mode, coord, sizes):
    x = randn(rng, 2, 3, 6, 5)
    m = one_node(
        "Resize",
        x,
        {"z": np.array(sizes, np.int64)},
        ["", "", "z"],
        mode=mode,
        coordinate_transformation_mode=coord,
    )
    compare(m, {"x": x})


def test_resize_axes_and_opset10_and_upsample(rng):
    x = randn(rng, 2, 3, 4, 5)
    m = one_node(
        "Resize", x, {"z": np.array([8, 7], np.int64)}, ["", "", "z"], opset=18, axes=[2, 3], mode="linear"
    )
    compare(m, {"x": x})
    s = {"s": np.array([1, 1, 2, 3], np.float32)}
    for mode in ("nearest", "linear"):
        compare(one_node("Resize", x, s, ["s"], opset=10, mode=mode), {"x": x})
        compare(one_node("Upsample", x, s, ["s"], opset=9, mode=mode), {"x": x})


# ----------------------------------------------------------------------------- torch models
torch = pytest.importorskip("torch")


class JetImageCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(16)
        self.c2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.dw = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = torch.nn.Linear(32, 2)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2, ceil_mode=True)
        x = torch.nn.functional.avg_pool2d(torch.relu(self.c2(x)), 2)
        x = torch.nn.functional.pad(self.dw(x), (1, 1, 1, 1), mode="reflect")
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Generator(torch.nn.Module):
    """CaloGAN-like: a latent vector up to a 1x24x24 shower image."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 32 * 3 * 3)
        self.up1 = torch.nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
        self.up2 = torch.nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        self.out = torch.nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, z):
        h = torch.relu(self.fc(z)).reshape(-1, 32, 3, 3)
        h = torch.relu(self.up2(torch.relu(self.up1(h))))
        h = torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest")
        return torch.relu(self.out(h))


class Upsampler(torch.nn.Module):
    def forward(self, x):
        a = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        b = torch.nn.functional.interpolate(x, size=(9, 7), mode="bilinear", align_corners=True)
        c = torch.nn.functional.interpolate(x, scale_factor=(2, 3), mode="nearest")
        return a.sum() + b.mean(dim=(2, 3), keepdim=True) + c[:, :, :1, :1]


@pytest.mark.parametrize(
    "module,shape", [(JetImageCNN, (1, 33, 33)), (Generator, (8,)), (Upsampler, (2, 5, 4))]
)
@pytest.mark.parametrize("batch", [1, 5])
def test_torch_image_models(rng, module, shape, batch):
    torch.manual_seed(int(rng.integers(1 << 30)))
    net = module().eval()
    x = torch.from_numpy(randn(rng, 2, *shape))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (x,),
            buf,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    m = onnx.load_from_string(buf.getvalue())
    xb = randn(rng, batch, *shape)
    got = compare(m, {"x": xb}, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(got[0], net(torch.from_numpy(xb)).numpy(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- errors
def test_conv_channel_mismatch_at_predict(rng):
    m = make(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_a", kernel_shape=[3, 3])],
        [("x", F, ["batch", "channels", "h", "w"])],
        [("y", F, None)],
        {"w": randn(rng, 4, 3, 3, 3)},
    )
    model = Model.load(m.SerializeToString())
    with pytest.raises(hepinfer.InputError, match=r"conv_a.*Conv.*X has 5 channels"):
        model.predict(randn(rng, 2, 5, 8, 8))
    with pytest.raises(hepinfer.InputError, match=r"conv_a.*larger than the padded input"):
        model.predict(randn(rng, 2, 3, 2, 8))


def test_conv_channel_mismatch_at_load(rng):
    m = make(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_b", kernel_shape=[3, 3])],
        [("x", F, ["batch", 5, 8, 8])],
        [("y", F, None)],
        {"w": randn(rng, 4, 3, 3, 3)},
    )
    with pytest.raises(hepinfer.ModelFormatError, match=r"conv_b.*Conv.*channels"):
        Model.load(m.SerializeToString())


@pytest.mark.parametrize(
    "op,w_shape,attrs,match",
    [
        ("Conv", (6, 2, 3, 3), {"group": 4}, "group 4 does not divide"),
        ("Conv", (6, 2, 3, 3), {"kernel_shape": [3, 2]}, "kernel_shape"),
        ("Conv", (6, 2, 3, 3), {"group": 0}, "group must be >= 1"),
        ("Conv", (6, 2, 3, 3), {"strides": [1, 0]}, "strides"),
        ("Conv", (6, 2, 3, 3), {"pads": [1, 1], "group": 2}, "spatial dimensions"),
        ("Conv", (6, 2, 3, 3), {"auto_pad": "SAME"}, "auto_pad"),
        ("ConvTranspose", (4, 2, 3, 3), {"group": 3}, "group 3 does not divide"),
    ],
)
def test_conv_bad_attributes(rng, op, w_shape, attrs, match):
    m = make(
        [helper.make_node(op, ["x", "w"], ["y"], name="bad", **attrs)],
        [("x", F, ["batch", 4, 8, 8])],
        [("y", F, None)],
        {"w": randn(rng, *w_shape)},
    )
    with pytest.raises(hepinfer.ModelFormatError, match=f"bad.*{op}.*{match}"):
        Model.load(m.SerializeToString())


def test_pool_and_resize_bad_inputs(rng):
    m = make(
        [helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[3, 3])],
        [("x", F, ["batch", 2, "h", "w"])],
        [("y", F, None)],
    )
    with pytest.raises(hepinfer.InputError, match="mp.*MaxPool.*larger than the padded input"):
        Model.load(m.SerializeToString()).predict(randn(rng, 1, 2, 2, 5))
    m2 = make(
        [helper.make_node("MaxPool", ["x"], ["y"], name="mp2")],
        [("x", F, ["batch", 2, 4, 4])],
        [("y", F, None)],
    )
    with pytest.raises(hepinfer.ModelFormatError, match="mp2.*kernel_shape"):
        Model.load(m2.SerializeToString())
    m3 = make(
        [helper.make_node("Resize", ["x", "", "s"], ["y"], name="rs", mode="linear")],
        [("x", F, ["batch", 2, 4, 4])],
        [("y", F, None)],
        {"s": np.array([1, 2, 2], np.float32)},
    )
    with pytest.raises(hepinfer.ModelFormatError, match="rs.*Resize.*scales has 3 values for 4 axes"):
        Model.load(m3.SerializeToString())
    m4 = make(
        [helper.make_node("Pad", ["x", "p"], ["y"], name="pd", mode="edge")],
        [("x", F, ["batch", 3])],
        [("y", F, None)],
        {"p": np.array([0, -2, 0, -2], np.int64)},
    )
    with pytest.raises(hepinfer.ModelFormatError, match="pd.*Pad.*remove more than"):
        Model.load(m4.SerializeToString())


def test_conv_padding_much_larger_than_input(rng):
    """Pads far beyond the input: im2col reads the unpadded planes with bounds checks."""
    x = randn(rng, 2, 4, 3, 3)
    inits = {"w": randn(rng, 6, 4, 3, 3), "b": randn(rng, 6)}
    m = one_node("Conv", x, inits, ["w", "b"], kernel_shape=[3, 3], pads=[70, 70, 70, 69], strides=[1, 2])
    compare(m, {"x": x})


def _predict_in_subprocess(env, model_path, x_path, out_path):
    code = (
        "import sys, numpy as np; from hepinfer.nn import Model; "
        "m = Model.load(sys.argv[1]); x = np.load(sys.argv[2]); "
        "np.save(sys.argv[3], m.predict(x, n_threads=1))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(model_path), str(x_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return np.load(out_path)


@pytest.mark.parametrize("act", ["Relu", "Tanh"])
def test_conv_avx512_tiles_equal_the_avx2_tiles(rng, tmp_path, act):
    """The convolution runs on the GEMM's per-CPU tiles, whose AVX-512 form sums in the AVX2
    tiles' order: identical bits with HEPINFER_DISABLE_AVX512=1 (odd channel and position counts:
    partial tiles and panels)."""
    x = randn(rng, 3, 5, 13, 11)
    m = make(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["h"], kernel_shape=[3, 3], pads=[1, 0, 1, 1]),
            helper.make_node(act, ["h"], ["y"]),
        ],
        [("x", F, ["batch", 5, 13, 11])],
        [("y", F, None)],
        {"w": randn(rng, 13, 5, 3, 3), "b": randn(rng, 13)},
    )
    compare(m, {"x": x})
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    np.save(tmp_path / "x.npy", x)
    outs = [
        _predict_in_subprocess(
            dict(os.environ, **extra), tmp_path / "m.onnx", tmp_path / "x.npy", tmp_path / f"{i}.npy"
        )
        for i, extra in enumerate([{}, {"HEPINFER_DISABLE_AVX512": "1"}])
    ]
    assert outs[0].tobytes() == outs[1].tobytes()
