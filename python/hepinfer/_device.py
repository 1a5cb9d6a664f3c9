"""Device handling shared by the forest, DisCo and loss wrappers (internal).

Arrays already on a GPU (torch CUDA tensors, cupy arrays, anything exposing
``__cuda_array_interface__``) are passed to the C++ core by address, without a host round trip;
numpy input is copied to the device by the core. In a build without CUDA every device request
raises :class:`hepinfer.DeviceError` ("... built without CUDA ...").
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from hepinfer import _core
from hepinfer._core import InputError


def is_cpu(device: Optional[str]) -> bool:
    return device is None or device == "cpu"


def check(device: str) -> None:
    """Raise DeviceError unless ``device`` ("cpu", "cuda", "cuda:N") can be used here."""
    if not isinstance(device, str):
        raise InputError(f'device must be a string ("cpu", "cuda" or "cuda:N"), got {device!r}')
    _core.check_device(device)


def _torch_if_loaded() -> Any:
    return sys.modules.get("torch")


def is_torch_cuda(x: Any) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(x, torch.Tensor) and x.device.type == "cuda"


def on_device(x: Any) -> bool:
    """True for arrays that live in GPU memory (torch CUDA tensors, __cuda_array_interface__)."""
    if is_torch_cuda(x):
        return True
    torch = _torch_if_loaded()
    if torch is not None and isinstance(x, torch.Tensor):
        return False
    return hasattr(x, "__cuda_array_interface__")


def device_index(x: Any) -> Optional[int]:
    """The CUDA device an on-device array lives on (None when it cannot be told)."""
    if is_torch_cuda(x):
        return int(x.device.index or 0)
    dev = getattr(x, "device", None)
    idx = getattr(dev, "id", None)  # cupy
    return int(idx) if idx is not None else None


def resolve(device: str, arrays: list[Any]) -> str:
    """``"cuda"`` means the device the arrays are on (else cuda:0); ``"cuda:N"`` must match them."""
    check(device)
    indices = {
        i for i in (device_index(a) for a in arrays if a is not None and on_device(a)) if i is not None
    }
    if len(indices) > 1:
        raise InputError(f"the arrays are on different CUDA devices: {sorted(indices)}")
    if device == "cuda":
        return f"cuda:{indices.pop()}" if indices else "cuda:0"
    if indices and int(device.split(":")[1]) not in indices:
        raise InputError(f"device={device!r} but the arrays are on cuda:{indices.pop()}")
    return device


class DeviceArray:
    """A C-contiguous float device array seen by address; keeps its owner alive."""

    def __init__(self, owner: Any, ptr: int, shape: tuple[int, ...], dtype: str) -> None:
        self.owner = owner
        self.ptr = ptr
        self.shape = shape
        self.dtype = dtype


def as_device_array(x: Any, name: str, dtype: Optional[str] = "float64") -> DeviceArray:
    """View (or, for other dtypes/strides, convert on the device) an on-device array.

    dtype None keeps float32/float64 as they are (others become float64)."""
    if is_torch_cuda(x):
        torch = _torch_if_loaded()
        t = x.detach()
        want = {"float64": torch.float64, "float32": torch.float32}
        if dtype is not None:
            t = t.to(want[dtype])
        elif t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)
        t = t.contiguous()
        return DeviceArray(
            t, int(t.data_ptr()), tuple(t.shape), "float32" if t.dtype == torch.float32 else "float64"
        )
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is None:
        raise InputError(f"{name} is not on a CUDA device")
    typestr = cai["typestr"]
    shape = tuple(int(s) for s in cai["shape"])
    itemsize = int(typestr[2:])
    contiguous = cai.get("strides") is None
    if not contiguous:
        expect: list[int] = []
        acc = itemsize
        for s in reversed(shape):
            expect.insert(0, acc)
            acc *= s
        contiguous = tuple(cai["strides"]) == tuple(expect)
    kind_ok = typestr[1] == "f" and itemsize in (4, 8)
    have = "float32" if itemsize == 4 else "float64"
    if not contiguous or not kind_ok or (dtype is not None and have != dtype):
        try:
            import cupy  # converts any __cuda_array_interface__ producer on the device
        except ImportError:
            raise InputError(
                f"{name} must be a C-contiguous {dtype or 'float32/float64'} CUDA array "
                f"(got typestr {typestr!r}, strides {cai.get('strides')}); install cupy or convert it first"
            ) from None
        a = cupy.ascontiguousarray(cupy.asarray(x), dtype=dtype or "float64")
        return as_device_array(a, name, dtype)
    return DeviceArray(x, int(cai["data"][0]), shape, have)


def empty_like_device(template: Any, shape: tuple[int, ...]) -> tuple[Any, int]:
    """A float64 device array of ``shape`` from the template's library: (array, address)."""
    if is_torch_cuda(template):
        torch = _torch_if_loaded()
        t = torch.empty(shape, dtype=torch.float64, device=template.device)
        return t, int(t.data_ptr())
    import cupy

    a = cupy.empty(shape, dtype="float64")
    return a, int(a.data.ptr)


def stream_of(x: Any) -> int:
    """The stream the producer of ``x`` works on (torch's current stream, cupy's), 0 otherwise."""
    if is_torch_cuda(x):
        torch = _torch_if_loaded()
        return int(torch.cuda.current_stream(x.device).cuda_stream)
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    return 0
