"""DisCo on a CUDA device against the CPU engine (values and gradients to rounding), numpy and
torch CUDA inputs, the torch loss's backward on CUDA, and input errors found on the device.
Skipped without a GPU (see conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

import hepinfer
from hepinfer import disco

pytestmark = pytest.mark.gpu


def _data(rng, n, dx=1, dy=1, ties=False):
    x = rng.normal(size=(n, dx) if dx > 1 else n)
    y = 0.5 * (x if dx == dy else x.reshape(n, -1)[:, :1].repeat(dy, axis=1).squeeze()) + rng.normal(
        size=(n, dy) if dy > 1 else n
    )
    if ties:
        x, y = np.round(x * 2) / 2, np.round(y * 2) / 2
    return x, y


@pytest.mark.parametrize(
    "n,dx,dy,weighted,unbiased,ties",
    [
        (2, 1, 1, False, False, False),
        (1000, 1, 1, False, False, True),
        (3001, 1, 1, True, False, False),
        (500, 1, 1, False, True, True),
        (700, 2, 3, True, False, False),
        (300, 3, 1, False, True, False),
    ],
)
def test_matches_cpu(rng, n, dx, dy, weighted, unbiased, ties):
    x, y = _data(rng, n, dx, dy, ties)
    w = rng.uniform(0.1, 3, size=n) if weighted else None
    v_cpu, g_cpu = disco.distance_correlation_and_grad(x, y, w, unbiased=unbiased)
    v_gpu, g_gpu = disco.distance_correlation_and_grad(x, y, w, unbiased=unbiased, device="cuda")
    assert v_gpu == pytest.approx(v_cpu, rel=1e-10, abs=1e-14)
    np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-8, atol=1e-10 * np.abs(g_cpu).max())
    c_cpu = disco.distance_covariance(x, y, w, unbiased=unbiased)
    assert disco.distance_covariance(x, y, w, unbiased=unbiased, device="cuda") == pytest.approx(
        c_cpu, rel=1e-10
    )


def test_torch_cuda_tensors_and_loss_backward(rng, torch_cuda):
    torch = torch_cuda
    x, y = _data(rng, 4096)
    w = rng.uniform(0.5, 2, size=4096)
    v_cpu, g_cpu = disco.distance_correlation_and_grad(x, y, w)
    xt, yt, wt = (torch.tensor(a, device="cuda") for a in (x, y, w))
    v, g = disco.distance_correlation_and_grad(xt, yt, wt, device="cuda")
    assert isinstance(g, torch.Tensor) and g.is_cuda
    assert v == pytest.approx(v_cpu, rel=1e-10)
    np.testing.assert_allclose(g.cpu().numpy(), g_cpu, rtol=1e-8, atol=1e-12)

    from hepinfer.train.decorrelation import disco_loss

    for dtype in (torch.float32, torch.float64):
        s_gpu = torch.tensor(x, dtype=dtype, device="cuda", requires_grad=True)
        s_cpu = torch.tensor(x, dtype=dtype, requires_grad=True)
        l_gpu = disco_loss(s_gpu, yt, wt, lambda_=3.0, device="cuda")
        l_cpu = disco_loss(s_cpu, torch.tensor(y), torch.tensor(w), lambda_=3.0)
        l_gpu.backward()
        l_cpu.backward()
        assert l_gpu.is_cuda and l_gpu.item() == pytest.approx(l_cpu.item(), rel=1e-6)
        np.testing.assert_allclose(s_gpu.grad.cpu().numpy(), s_cpu.grad.numpy(), rtol=1e-5, atol=1e-9)
        assert s_gpu.grad.is_cuda and s_gpu.grad.dtype == dtype


def test_bad_input_found_on_device(rng, torch_cuda):
    torch = torch_cuda
    x, y = _data(rng, 100)
    x[37] = np.nan
    with pytest.raises(hepinfer.InputError, match=r"x\[37\] is not finite"):
        disco.distance_correlation(
            torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda"), device="cuda"
        )
    w = np.ones(100)
    w[5] = -1
    with pytest.raises(hepinfer.InputError, match=r"weights\[5\] is negative"):
        disco.distance_correlation(np.nan_to_num(x), y, w, device="cuda")
