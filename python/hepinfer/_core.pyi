from typing import Any, Optional

import numpy as np
import numpy.typing as npt

__version__: str

class Error(Exception): ...
class ModelFormatError(Error, ValueError): ...
class InputError(Error, ValueError): ...
class DeviceError(Error, RuntimeError): ...

def built_with_cuda() -> bool: ...
def cuda_device_count() -> int: ...
def check_device(device: str) -> None: ...

class Forest:
    @staticmethod
    def load(path: str, format: str = "auto", tmva_cut_op: str = ">=") -> Forest: ...
    @staticmethod
    def load_from_memory(
        content: bytes, format: str = "auto", tmva_cut_op: str = ">=", source_name: str = "<memory>"
    ) -> Forest: ...
    @property
    def n_features(self) -> int: ...
    @property
    def n_classes(self) -> int: ...
    @property
    def n_trees(self) -> int: ...
    def n_outputs(self, output: str = "probability") -> int: ...
    @property
    def feature_names(self) -> list[str]: ...
    @property
    def feature_expressions(self) -> list[str]: ...
    @property
    def objective(self) -> str: ...
    @property
    def source_format(self) -> str: ...
    def predict(
        self,
        X: npt.NDArray[Any],
        output: str = "probability",
        n_threads: int = 1,
        out: Optional[npt.NDArray[np.float64]] = None,
    ) -> npt.NDArray[np.float64]: ...
    def predict_leaf(self, X: npt.NDArray[Any], n_threads: int = 1) -> npt.NDArray[np.int32]: ...
    def predict_one(self, row: npt.NDArray[Any], output: str = "probability") -> Any: ...

# --- deploy (hepinfer.codegen, hepinfer.tmva_export) ---
class ForestGPU:
    def __init__(self, forest: Forest, device: str) -> None: ...
    @property
    def device_index(self) -> int: ...
    def n_outputs(self, output: str = "probability") -> int: ...
    def predict(self, X: npt.NDArray[Any], output: str = "probability") -> npt.NDArray[np.float64]: ...
    def predict_device(
        self, rows: int, n_rows: int, dtype: str, out: int, output: str = "probability", stream: int = 0
    ) -> None: ...

def forest_ir(forest: Forest) -> dict[str, Any]: ...
def split_threshold(threshold: float, op: int, float32: bool = True) -> float: ...

# --- jagged (hepinfer.jagged) ---
class JaggedView:
    def __init__(
        self, offsets: npt.NDArray[Any], columns: list[npt.NDArray[Any]], names: list[str]
    ) -> None: ...
    @property
    def n_events(self) -> int: ...
    @property
    def n_columns(self) -> int: ...
    @property
    def names(self) -> list[str]: ...
    @property
    def column_dtypes(self) -> list[str]: ...
    @property
    def content_begin(self) -> int: ...
    @property
    def content_end(self) -> int: ...
    @property
    def offsets_address(self) -> int: ...
    def column_address(self, column: int) -> int: ...

def jagged_pad(
    view: JaggedView, length: int, fill: float, dtype: str, layout: str = "events", n_threads: int = 1
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]: ...
def jagged_leading(
    view: JaggedView,
    key: Any,
    k: int,
    ascending: bool,
    fill: float,
    dtype: str,
    layout: str = "events",
    n_threads: int = 1,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_], npt.NDArray[np.int64]]: ...
def jagged_top_k_indices(
    view: JaggedView, key: Any, k: int, ascending: bool = False, n_threads: int = 1
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def jagged_gather(
    view: JaggedView,
    column: Any,
    index: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    dtype: str,
    n_threads: int = 1,
) -> npt.NDArray[Any]: ...
def jagged_reduce(
    view: JaggedView, column: Any, op: str, empty_value: float, n_threads: int = 1
) -> npt.NDArray[np.float64]: ...
def jagged_counts(view: JaggedView, n_threads: int = 1) -> npt.NDArray[np.int64]: ...
def to_pt_eta_phi_m(
    px: npt.NDArray[Any],
    py: npt.NDArray[Any],
    pz: npt.NDArray[Any],
    energy: npt.NDArray[Any],
    n_threads: int = 1,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]: ...
def to_px_py_pz_e(
    pt: npt.NDArray[Any],
    eta: npt.NDArray[Any],
    phi: npt.NDArray[Any],
    mass: npt.NDArray[Any],
    n_threads: int = 1,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]: ...
def delta_r(
    eta1: npt.NDArray[Any],
    phi1: npt.NDArray[Any],
    eta2: npt.NDArray[Any],
    phi2: npt.NDArray[Any],
    n_threads: int = 1,
) -> npt.NDArray[Any]: ...
def jagged_min_delta_r(
    a: JaggedView,
    a_eta: Any,
    a_phi: Any,
    b: JaggedView,
    b_eta: Any,
    b_phi: Any,
    empty_value: float,
    n_threads: int = 1,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...

# --- disco (hepinfer.disco) ---
def distance_stats(
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    weights: Optional[npt.NDArray[Any]] = None,
    unbiased: bool = False,
    n_threads: int = 1,
    gradient: bool = False,
    device: str = "cpu",
) -> tuple[
    float, float, float, float, Optional[npt.NDArray[np.float64]], Optional[npt.NDArray[np.float64]]
]: ...
def distance_stats_device(
    x: int,
    dx: int,
    y: int,
    dy: int,
    weights: int,
    n: int,
    device: str,
    unbiased: bool = False,
    grad_dcor2: int = 0,
    grad_dcov: int = 0,
    stream: int = 0,
) -> tuple[float, float, float, float]: ...

# --- nn (hepinfer.nn) ---

def describe_onnx(path: str) -> dict[str, Any]: ...
def describe_onnx_bytes(content: bytes, source: str = "<bytes>") -> dict[str, Any]: ...
def nn_supported_operators() -> list[str]: ...
def nn_cpu_kernels() -> dict[str, Any]: ...

class Model:
    @staticmethod
    def load(path: str, external_data_dir: str = "", optimize: bool = True) -> Model: ...
    @staticmethod
    def load_from_memory(
        content: bytes, source_name: str = "<memory>", external_data_dir: str = "", optimize: bool = True
    ) -> Model: ...
    @property
    def inputs(self) -> list[tuple[str, str, Optional[tuple[Any, ...]]]]: ...
    @property
    def outputs(self) -> list[tuple[str, str, Optional[tuple[Any, ...]]]]: ...
    @property
    def producer(self) -> str: ...
    @property
    def opset(self) -> int: ...
    @property
    def n_nodes(self) -> int: ...
    @property
    def batch_separable(self) -> bool: ...
    @property
    def simple_rows(self) -> bool: ...
    def predict(self, inputs: list[npt.NDArray[Any]], n_threads: int = 1) -> list[npt.NDArray[Any]]: ...
    def profile(self, inputs: list[npt.NDArray[Any]], repeats: int = 10) -> list[tuple[str, str, float, bool]]: ...
    def predict_rows(self, x: npt.NDArray[np.float32], n_threads: int = 1) -> npt.NDArray[np.float32]: ...
    def predict_jagged(
        self,
        offsets: npt.NDArray[Any],
        particles: list[tuple[str, list[npt.NDArray[Any]]]],
        jets: list[tuple[str, npt.NDArray[Any]]],
        mask: str = "",
        detect_mask: bool = True,
        particle_axis: int = 0,
        min_length: int = -1,
        pad_value: float = 0.0,
        chunk_particles: int = 2048,
        n_threads: int = 1,
    ) -> list[npt.NDArray[Any]]: ...
    def jagged_layout(
        self, mask: str = "", detect_mask: bool = True, particle_axis: int = 0, min_length: int = -1
    ) -> tuple[list[tuple[str, str, int, int]], int]: ...
    def to_device(self, device: str) -> DeviceModel: ...
    def _device_plan_reference(self, inputs: list[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]: ...
    def _device_plan_reference_jagged(
        self,
        offsets: npt.NDArray[Any],
        particles: list[tuple[str, list[npt.NDArray[Any]]]],
        jets: list[tuple[str, npt.NDArray[Any]]],
        mask: str = "",
        detect_mask: bool = True,
        particle_axis: int = 0,
        min_length: int = -1,
        pad_value: float = 0.0,
    ) -> list[npt.NDArray[Any]]: ...

class DeviceArray:
    @property
    def __cuda_array_interface__(self) -> dict[str, Any]: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def device(self) -> int: ...

class DeviceModel:
    @property
    def device(self) -> int: ...
    def predict(self, inputs: list[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]: ...
    def predict_on_device(
        self, inputs: list[tuple[int, list[int]]], stream: int = 0
    ) -> list[DeviceArray]: ...
    def predict_jagged(
        self,
        offsets: npt.NDArray[Any],
        particles: list[tuple[str, list[npt.NDArray[Any]]]],
        jets: list[tuple[str, npt.NDArray[Any]]],
        mask: str = "",
        detect_mask: bool = True,
        particle_axis: int = 0,
        min_length: int = -1,
        pad_value: float = 0.0,
    ) -> list[npt.NDArray[Any]]: ...
