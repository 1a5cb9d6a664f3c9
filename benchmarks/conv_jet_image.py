"""A small jet-image CNN (1x33x33 -> conv3x3 16ch + ReLU -> maxpool 2 -> conv3x3 32ch + ReLU ->
global average pool -> dense 2) through hepinfer.nn.Model and onnxruntime (one thread each), at
batch 1 and batch 256: median process CPU seconds per call over interleaved repeats, and their ratio.

    python benchmarks/conv_jet_image.py [--repeats 30]

Only the ratio means anything on a shared machine: both engines run in the same process,
interleaved, on the same inputs."""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import onnxruntime as ort
import torch

from hepinfer.nn import Model


class JetCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32, 2)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.relu(self.c2(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.onnx.export(
        JetCNN().eval(),
        (torch.zeros(2, 1, 33, 33),),
        buf,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    model = Model.load(buf.getvalue())
    rng = np.random.default_rng(1)
    print(f"{'batch':>6} {'hepinfer [s]':>14} {'onnxruntime [s]':>16} {'ort / hepinfer':>15}")
    for batch in (1, 256):
        x = rng.standard_normal((batch, 1, 33, 33)).astype(np.float32)
        np.testing.assert_allclose(
            model.predict(x, n_threads=1), sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4
        )
        inner = 200 if batch == 1 else 2
        t_h, t_o = [], []
        for _ in range(args.repeats):
            t0 = time.process_time()
            for _ in range(inner):
                model.predict(x, n_threads=1)
            t_h.append((time.process_time() - t0) / inner)
            t0 = time.process_time()
            for _ in range(inner):
                sess.run(None, {"x": x})
            t_o.append((time.process_time() - t0) / inner)
        h, o = float(np.median(t_h)), float(np.median(t_o))
        print(f"{batch:>6} {h:>14.3e} {o:>16.3e} {o / h:>15.2f}")


if __name__ == "__main__":
    main()
