"""The layering rules of the source tree, read from the sources so that they stay true:

- the C++ core (cpp/include, cpp/src) includes no pybind11 or Python header and nothing
  from cpp/bindings;
- the engines (cpp/src/forest, nn, disco, jagged) include no file-format reader (cpp/src/formats);
- the bindings include only the public headers (cpp/include/hepinfer), never the core's private ones;
- Python reaches C++ only through hepinfer._core (no ctypes/cffi; the RDataFrame helper loads the
  shared library into ROOT, and its C++ is a real header, not a Python string);
- the inference modules import neither torch nor the training code.
- tests/ is one package per room: test modules do not import each other, helper modules hold
  plain functions and fixtures live in conftest.py files.

They are checked on the checkout (skipped where the sources are not beside the tests)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"
PY = ROOT / "python" / "hepinfer"
pytestmark = pytest.mark.skipif(not (CPP / "bindings").is_dir(), reason="needs the source checkout")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)
CORE_DIRS = ("include", "src")
# what users do with hepinfer without training: none of these may pull in torch or hepinfer.train
INFERENCE_MODULES = (
    "hepinfer",
    "hepinfer.forest",
    "hepinfer.nn",
    "hepinfer.disco",
    "hepinfer.jagged",
    "hepinfer.io",
    "hepinfer.scoring",
    "hepinfer.metrics",
    "hepinfer.codegen",
    "hepinfer.tmva_export",
    "hepinfer.rdf",
    "hepinfer.cli",
    "hepinfer.plot",
)


def sources(folder: Path, suffixes=(".hpp", ".cpp", ".h", ".cu", ".cuh", ".c")) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in suffixes)


def includes(path: Path) -> list[tuple[str, str]]:
    return INCLUDE.findall(path.read_text(errors="replace"))


def test_core_includes_no_python_and_nothing_from_the_bindings():
    bad = []
    for d in CORE_DIRS:
        for path in sources(CPP / d):
            for _kind, name in includes(path):
                if name.startswith("pybind11") or name in ("Python.h", "numpy/arrayobject.h"):
                    bad.append(f"{path.relative_to(ROOT)}: #include {name}")
                if "bindings" in Path(name).parts or name.startswith("register_"):
                    bad.append(f"{path.relative_to(ROOT)}: #include {name}")
    assert not bad, "the C++ core must not depend on Python or the bindings:\n" + "\n".join(bad)


def test_engines_include_no_format_reader():
    bad = []
    for engine in ("forest", "nn", "disco", "jagged"):
        for path in sources(CPP / "src" / engine):
            rel = path.relative_to(CPP / "src").as_posix()
            for _kind, name in includes(path):
                if name.startswith("formats/"):
                    bad.append(f"{rel}: #include {name}")
    assert not bad, "engines see only IRs; readers live in cpp/src/formats:\n" + "\n".join(bad)
    text = (CPP / "src" / "forest" / "forest.cpp").read_text()
    assert "detect_format" not in text and "load_xgboost" not in text, (
        "the forest engine dispatches on file format"
    )


def test_bindings_include_only_public_headers():
    public = {p.relative_to(CPP / "include").as_posix() for p in sources(CPP / "include")}
    bad = []
    for path in sources(CPP / "bindings"):
        for kind, name in includes(path):
            if kind == '"' and name not in public:
                bad.append(f'{path.relative_to(ROOT)}: #include "{name}"')
    assert not bad, "bindings may include only cpp/include/hepinfer headers:\n" + "\n".join(bad)


def python_files() -> list[Path]:
    return sorted(PY.rglob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_python_reaches_cpp_only_through_core():
    bad = []
    for path in python_files():
        text = path.read_text()
        mods = imported_modules(ast.parse(text))
        for m in mods & {"cffi", "cppyy"}:
            bad.append(f"{path.relative_to(ROOT)}: imports {m}")
        # ctypes only for the C library itself (datasets/pythia.py flushes Pythia's stdout with it)
        if re.search(r"CDLL\(\s*(?!None\s*\))|LoadLibrary\(", text):
            bad.append(f"{path.relative_to(ROOT)}: loads a shared library with ctypes")
        if "gSystem.Load" in text and path.name != "rdf.py":
            bad.append(f"{path.relative_to(ROOT)}: loads a shared library into ROOT")
    assert not bad, "\n".join(bad)


def test_rdf_helper_declares_only_headers():
    """hepinfer.rdf hands ROOT's interpreter #include lines only: its C++ lives in
    cpp/include/hepinfer/rdf*.hpp, compiled and tested like any header."""
    tree = ast.parse((PY / "rdf.py").read_text())
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    code = [s for s in strings if re.search(r"\b(namespace|inline|template|return)\b.*[;{]", s)]
    assert not code, f"C++ in Python strings in rdf.py: {code}"
    declared = [s for s in strings if "#include" in s]
    assert declared and all(re.fullmatch(r'\s*(#include "hepinfer/[\w.]+"\s*)+', s) for s in declared)
    for s in declared:
        for name in re.findall(r'#include "([^"]+)"', s):
            assert (CPP / "include" / name).is_file(), name


def test_inference_modules_do_not_import_torch_or_training_at_import_time():
    code = (
        "import sys\n"
        f"for m in {INFERENCE_MODULES!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'hepinfer.train', "
        "'hepinfer.losses', 'hepinfer.demo')))\n"
        "print(' '.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing the inference modules loaded: {proc.stdout.strip()}"


def test_inference_sources_have_no_module_level_torch_or_training_import():
    """Static twin of the test above: a module-level import of torch or of the training code in an
    inference module (a lazy import inside a function, for torch tensors already in use, is fine)."""
    bad = []
    for name in INFERENCE_MODULES:
        rel = name.split(".")[1:] or ["__init__"]
        path = PY.joinpath(*rel).with_suffix(".py")
        files = [path] if path.is_file() else sorted(PY.joinpath(*rel).glob("*.py"))
        for f in files:
            tree = ast.parse(f.read_text())
            top = ast.Module(
                body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[]
            )
            for m in imported_modules(top):
                if m == "torch" or m.startswith(("torch.", "hepinfer.train", "hepinfer.losses")):
                    bad.append(f"{f.relative_to(ROOT)}: import {m}")
    assert not bad, "\n".join(bad)


def test_every_exception_class_is_a_hepinfer_error():
    """Users catch hepinfer.Error for anything hepinfer raises on purpose (each class is also the
    ValueError/RuntimeError/OSError it is); Terminated, SIGTERM turned into KeyboardInterrupt while
    scoring, is the one exception."""
    import importlib
    import inspect

    import hepinfer

    found = {}
    for path in python_files():
        rel = path.relative_to(PY.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        if name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency missing here
            continue
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("hepinfer")
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    assert "hepinfer.scoring.output.OutputError" in found and "hepinfer.export.ExportError" in found
    bad = [
        n
        for n, c in found.items()
        if not issubclass(c, hepinfer.Error) and n != "hepinfer.scoring.output.Terminated"
    ]
    assert not bad, f"not hepinfer.Error subclasses: {bad}"


TESTS = ROOT / "tests"
# scripts run by hand, by CMake or in a subprocess, not by pytest
TEST_SCRIPT_DIRS = ("data", "fuzz", "rdf", "tools")


def test_tests_are_grouped_in_packages_and_helpers_hold_no_fixtures():
    """tests/ has one folder per room, each a package: helpers are imported by their full name
    (``from tests.scoring.samples import write_flat``) and same-named files in two folders cannot
    clash. Test modules never import each other (what they share is in a helper module of plain
    functions), and fixtures live in conftest.py files or in the test module that uses them, never
    in a helper module."""
    py = [p for p in sorted(TESTS.rglob("*.py")) if p.relative_to(TESTS).parts[0] not in TEST_SCRIPT_DIRS]
    local = {p.stem for p in py if p.stem != "__init__"} | {p.parent.name for p in py}
    bad = []
    for path in py:
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        is_test = path.name.startswith("test_") or path.name == "conftest.py"
        if is_test and not (path.parent / "__init__.py").is_file():
            bad.append(f"{rel}: its folder has no __init__.py")
        for m in imported_modules(tree):
            parts = m.split(".")
            if parts[0] == "tests" and (parts[-1].startswith("test_") or parts[-1] == "conftest"):
                bad.append(f"{rel}: imports the test module {m}")
            elif parts[0] != "tests" and parts[0] in local:
                bad.append(f"{rel}: imports {m} by a bare name (use tests.<folder>.<module>)")
        if not is_test and path.name != "__init__.py":
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    "fixture" in ast.unparse(d) for d in node.decorator_list
                ):
                    bad.append(f"{rel}: defines the fixture {node.name} (fixtures go to a conftest.py)")
    assert not bad, "\n".join(bad)
