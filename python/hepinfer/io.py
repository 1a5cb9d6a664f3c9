"""Reading ROOT files for inference: many files, chosen branches, bounded memory.

A thin layer over `uproot <https://uproot.readthedocs.io>`_ that turns "these files, this
tree, these features" into a stream of chunks of plain numpy columns, one value per event,
with errors that name the file, the tree and the branch::

    from hepinfer.io import iterate

    for chunk in iterate("data/*.root:Events", ["Muon_pt_leading", "MET_pt"], step_size="50 MB"):
        chunk.arrays["MET_pt"]      # numpy, chunk.n_events values
        chunk.source.path, chunk.entry_start, chunk.entry_stop

Files are given as a path, a glob pattern, a ``"file.root:tree"`` spec (as in uproot), a list
of those or a ``{path: tree}`` dict. TTrees and RNTuples are both read. Features are branch
names or uproot expressions (``"sqrt(px**2 + py**2)"``), optionally with ``aliases`` and an
event selection ``cut``. Memory is bounded by ``step_size`` (an event count, or a size such as
``"100 MB"`` that uproot converts to events from the branches' sizes), never by the file size.
"""

from __future__ import annotations

import ast
import difflib
import glob
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import InputError

__all__ = [
    "EVENT_ID_BRANCHES",
    "PER_EVENT_FUNCTIONS",
    "Chunk",
    "FileFailure",
    "ReadError",
    "TreeSource",
    "check_branches",
    "count_entries",
    "expand_files",
    "find_event_ids",
    "iterate",
    "open_tree",
]

PathLike = Union[str, "os.PathLike[str]"]
FilesLike = Union[PathLike, Sequence[PathLike], Mapping[PathLike, str]]

#: Event identifier branches copied to score files, with the spellings found in the wild
#: (NanoAOD/CMS first, then ATLAS/other): output name -> candidate branch names.
EVENT_ID_BRANCHES: dict[str, tuple[str, ...]] = {
    "run": ("run", "Run", "runNumber", "RunNumber", "run_number"),
    "luminosityBlock": ("luminosityBlock", "lumi", "lumiBlock", "LumiBlock", "lumi_block", "lbn"),
    "event": ("event", "Event", "eventNumber", "EventNumber", "event_number", "evt"),
}

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class ReadError(InputError):
    """A ROOT file could not be read as asked: not a ROOT file, truncated or corrupt, no such
    tree, no such branch, a branch with the wrong type or jaggedness.

    The message names the file (and tree and branch where they apply); they are also kept in
    the attributes ``file``, ``tree`` and ``branch`` (``None`` where unknown).
    """

    def __init__(
        self,
        message: str,
        *,
        file: Optional[str] = None,
        tree: Optional[str] = None,
        branch: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.tree = tree
        self.branch = branch


@dataclass(frozen=True)
class TreeSource:
    """One tree to read: the file ``path``, the ``tree`` name (``None``: the only tree in the
    file) and the file's position ``index`` in the expanded list of inputs."""

    path: str
    tree: Optional[str]
    index: int

    def __str__(self) -> str:
        return f"{self.path}:{self.tree}" if self.tree else self.path


@dataclass
class Chunk:
    """A block of consecutive events of one file.

    ``arrays`` maps each requested name to a 1-D numpy array with one value per selected
    event; ``entries`` holds the selected events' entry numbers in the tree (all of
    ``entry_start..entry_stop`` when there is no cut); ``bytes_read`` is how many bytes were
    read from this file so far (compressed, as requested from the storage).
    """

    source: TreeSource
    entry_start: int
    entry_stop: int
    arrays: dict[str, np.ndarray]
    entries: np.ndarray
    bytes_read: int = 0

    @property
    def n_events(self) -> int:
        return len(self.entries)


@dataclass
class FileFailure:
    """A file that failed while reading with ``on_error="skip"``: which one, after how many of
    its entries (events before ``entry`` were delivered), and the error."""

    source: TreeSource
    entry: int
    error: BaseException = field(repr=False)

    def __post_init__(self) -> None:
        # the record outlives the failure (a long run may collect thousands): keep the error
        # and its message (which quotes its cause), drop its traceback and the chained
        # exceptions, whose frames and attributes hold the failed file's trees, baskets and arrays
        self.error.__traceback__ = None
        self.error.__cause__ = None
        self.error.__context__ = None

    @property
    def message(self) -> str:
        return str(self.error)


# ---------------------------------------------------------------------------------- files


def _split_spec(spec: str) -> tuple[str, Optional[str]]:
    """``"file.root:tree"`` -> ``("file.root", "tree")``; a plain path -> ``(path, None)``."""
    if os.path.exists(spec):
        return spec, None
    start = 0
    m = _URL.match(spec)
    if m:
        start = m.end()
    elif len(spec) > 2 and spec[1] == ":" and spec[0].isalpha() and spec[2] in "\\/":
        start = 2  # a Windows drive letter
    pos = spec.rfind(":", start)
    if pos < 0:
        return spec, None
    path, tree = spec[:pos], spec[pos + 1 :]
    if not tree or not path:
        return spec, None
    return path, tree


def expand_files(files: FilesLike, tree: Optional[str] = None) -> list[TreeSource]:
    """The list of trees to read from ``files``.

    ``files`` is a path, a glob pattern (``"data/*.root"``, sorted), a ``"file.root:Events"``
    spec, a URL uproot can open (``root://``, ``https://``), a list of any of those, or a
    ``{path: tree_name}`` dict. ``tree`` is the tree name for entries that do not give one
    (``None``: each file's only TTree/RNTuple). A pattern that matches nothing or a local file
    that does not exist raises :class:`ReadError`.
    """
    items: list[tuple[str, Optional[str]]] = []
    if isinstance(files, (str, os.PathLike)):
        entries: list[tuple[Any, Optional[str]]] = [(files, None)]
    elif isinstance(files, Mapping):
        entries = [(k, v) for k, v in files.items()]
    elif isinstance(files, Sequence):
        entries = [(f, None) for f in files]
    else:
        raise TypeError(f"files must be a path, a glob pattern, a list or a dict, not {type(files).__name__}")
    for item, given_tree in entries:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"a file must be a path or a string, not {type(item).__name__}")
        spec = os.fspath(item)
        path, spec_tree = (spec, None) if given_tree is not None else _split_spec(spec)
        name = given_tree if given_tree is not None else (spec_tree if spec_tree is not None else tree)
        if _URL.match(path) and not path.startswith("file://"):
            items.append((path, name))
            continue
        local = os.path.expanduser(path.removeprefix("file://"))
        if _GLOB_CHARS.search(local) and not os.path.exists(local):
            matches = sorted(glob.glob(local))
            if not matches:
                raise ReadError(f"no file matches the pattern {path!r}", file=path)
            items.extend((m, name) for m in matches)
        elif not os.path.exists(local):
            raise ReadError(f"{path}: no such file", file=path)
        elif os.path.isdir(local):
            raise ReadError(
                f"{path} is a folder, not a ROOT file (use a pattern such as {path}/*.root)", file=path
            )
        else:
            items.append((local, name))
    if not items:
        raise ReadError("no input files given")
    return [TreeSource(p, t, i) for i, (p, t) in enumerate(items)]


# ---------------------------------------------------------------------------------- trees


def _tree_kinds() -> tuple[type, ...]:
    import uproot

    kinds: list[type] = [uproot.behaviors.TTree.TTree]
    rntuple = getattr(getattr(uproot.behaviors, "RNTuple", None), "RNTuple", None)
    if rntuple is not None:
        kinds.append(rntuple)
    return tuple(kinds)


def open_tree(source: Union[TreeSource, str], tree: Optional[str] = None, **open_options: Any) -> Any:
    """Open one TTree or RNTuple with uproot, turning every failure into a :class:`ReadError`
    that names the file (not a ROOT file, truncated, no such tree: the message lists the trees
    the file has). ``open_options`` go to ``uproot.open``. Close it with ``tree.file.close()``.
    """
    import uproot

    if isinstance(source, str):
        path, spec_tree = _split_spec(source)
        source = TreeSource(path, spec_tree or tree, 0)
    path = source.path
    try:
        directory = uproot.open(path, **open_options)
    except FileNotFoundError as err:
        raise ReadError(f"{path}: no such file", file=path) from err
    except Exception as err:  # uproot raises ValueError, OSError, struct.error ... on bad files
        raise ReadError(
            f"{path} cannot be read as a ROOT file (not ROOT, truncated or corrupt): {_one_line(err)}",
            file=path,
        ) from err
    try:
        end = getattr(directory.file, "fEND", None)
        if end is not None and not _URL.match(path) and os.path.getsize(path) < int(end):
            raise ReadError(
                f"{path} is truncated: its header says {int(end):,} bytes, the file has {os.path.getsize(path):,} "
                "(an interrupted copy or job?)",
                file=path,
            )
        kinds = _tree_kinds()
        try:
            classnames = directory.classnames()
        except Exception as err:
            raise ReadError(
                f"{path}: cannot list the file's contents (truncated or corrupt?): {_one_line(err)}",
                file=path,
            ) from err
        trees = sorted(
            {
                k.split(";")[0]
                for k, c in classnames.items()
                if c in ("TTree", "TNtuple", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
            }
        )
        name = source.tree
        if name is None:
            if len(trees) != 1:
                raise ReadError(
                    f"{path} holds {len(trees)} trees ({', '.join(trees) or 'none'}): say which one with tree= "
                    f"or a '{path}:TREE' spec",
                    file=path,
                )
            name = trees[0]
        try:
            obj = directory[name]
        except Exception as err:
            if name in trees:
                raise ReadError(
                    f"{path}: tree {name!r} cannot be read (truncated or corrupt file): {_one_line(err)}",
                    file=path,
                    tree=name,
                ) from err
            raise ReadError(
                f"{path} has no tree {name!r}; it has: {', '.join(trees) or 'no trees'}", file=path, tree=name
            ) from err
        if not isinstance(obj, kinds):
            raise ReadError(
                f"{path}: {name!r} is a {getattr(obj, 'classname', type(obj).__name__)}, not a TTree or RNTuple; "
                f"the file's trees: "
                f"{', '.join(trees) or 'none'}",
                file=path,
                tree=name,
            )
        return obj
    except BaseException:
        directory.close()
        raise


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _tree_name(tree: Any) -> str:
    return str(getattr(tree, "name", "?"))


def _branch_names(tree: Any) -> list[str]:
    try:
        return [str(k) for k in tree.keys()]
    except Exception:
        return []


def _flat_numeric_branch(tree: Any, name: str) -> Optional[str]:
    """``None`` if branch ``name`` of a TTree holds one number per event, else a description
    of what it holds. Unknown (RNTuple, expressions) -> ``None`` (checked after reading)."""
    import uproot

    if not isinstance(tree, uproot.behaviors.TTree.TTree):
        return None
    try:
        branch = tree[name]
    except Exception:
        return None
    interp = branch.interpretation
    if isinstance(interp, uproot.interpretation.numerical.AsDtype):
        if interp.inner_shape:
            return f"a fixed-size array {interp.inner_shape} per event ({branch.typename})"
        if interp.from_dtype.kind not in "fiub":
            return f"type {branch.typename}"
        return None
    if isinstance(interp, uproot.interpretation.jagged.AsJagged):
        return f"jagged: a variable number of values per event ({branch.typename})"
    return f"not a number per event ({branch.typename}, read as {type(interp).__name__})"


def _missing_branch_error(
    source: TreeSource, tree: Any, key: str, feature: Optional[str], where: Optional[str] = None
) -> ReadError:
    """``where``: the expression that reads ``key``, when it is not ``feature`` itself (e.g.
    "in 'x + nope'" or "in alias 'r' = 'sqrt(x**2 + z**2)'")."""
    names = _branch_names(tree)
    close = difflib.get_close_matches(key, names, n=3)
    used = f" {where}" if where else ""
    if feature == "cut":
        what = f" (used by the cut{used})"
    elif feature and feature != key:
        what = f" (needed for feature {feature!r}{used})"
    else:
        what = f" ({where})" if where else ""
    hint = f"; similar names: {', '.join(close)}" if close else ""
    return ReadError(
        f"{source.path}: tree {_tree_name(tree)!r} has no branch {key!r}{what}{hint}",
        file=source.path,
        tree=_tree_name(tree),
        branch=key,
    )


def check_branches(
    source: TreeSource,
    tree: Any,
    expressions: Mapping[str, str],
    aliases: Optional[Mapping[str, str]] = None,
    *,
    cut: Optional[str] = None,
) -> None:
    """Raise :class:`ReadError` if a plain branch name in ``expressions`` (name -> expression)
    is missing from ``tree`` or does not hold one number per event, or if an expression, an
    alias it uses or the ``cut`` names a branch the tree does not have (and
    :class:`hepinfer.InputError` if one is not a valid expression)."""
    names = set(_branch_names(tree))
    aliases = aliases or {}
    for feature, expr in expressions.items():
        if not _IDENTIFIER.match(expr) or expr in aliases:
            check_expression_names(source, tree, expr, aliases, feature, names)
            continue
        if expr not in names:
            raise _missing_branch_error(source, tree, expr, feature)
        problem = _flat_numeric_branch(tree, expr)
        if problem is not None:
            raise _not_flat_error(source, tree, expr, feature, problem)
    if cut is not None:
        check_expression_names(source, tree, cut, aliases, "cut", names)


# ---------------------------------------------------------------------------------- expressions


def _parse_expression(expr: str, what: str) -> ast.Expression:
    try:
        return ast.parse(expr.strip(), mode="eval")
    except SyntaxError as err:
        where = f" at character {err.offset}" if err.offset else ""
        raise InputError(f"{what}: {expr!r} is not a valid expression ({err.msg}{where})") from None


def _dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _symbols(node: ast.AST) -> Iterator[tuple[str, str]]:
    """("call", function) and ("name", branch or alias) for each symbol of an expression, as
    uproot resolves them: a name in call position is a function, a dotted name one symbol."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            yield "call", node.func.id
        else:
            yield from _symbols(node.func)
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            yield from _symbols(arg)
        return
    name = _dotted(node)
    if name is not None:
        yield "name", name
        return
    for child in ast.iter_child_nodes(node):
        yield from _symbols(child)


def _functions() -> set[str]:
    return {*_expression_language().functions, "get"}


def validate_expressions(
    expressions: Mapping[str, str], aliases: Optional[Mapping[str, str]] = None, cut: Optional[str] = None
) -> None:
    """Raise :class:`hepinfer.InputError` (before any file is opened) for an expression, alias or
    cut that is not valid Python syntax or calls a function expressions do not have. Names
    are checked against each file's branches by :func:`check_branches`."""
    functions = _functions()
    items = [(f"feature {k!r}", v) for k, v in expressions.items()]
    items += [(f"alias {k!r}", v) for k, v in (aliases or {}).items()]
    if cut is not None:
        items.append(("cut", cut))
    for what, expr in items:
        if not isinstance(expr, str) or not expr.strip():
            raise InputError(f"{what}: give a branch name or an expression, not {expr!r}")
        for kind, name in _symbols(_parse_expression(expr, what)):
            if kind == "call" and name not in functions and name not in (aliases or {}):
                close = difflib.get_close_matches(name, sorted(functions), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise InputError(
                    f"{what}: {expr!r} calls {name}(), which expressions do not have{hint}; they have numpy's "
                    f"ufuncs ({', '.join(sorted(f for f in functions if f not in PER_EVENT_FUNCTIONS)[:8])}, ...) "
                    f"and the per-event functions {', '.join(PER_EVENT_FUNCTIONS)}"
                )
    for name in aliases or {}:
        if not _IDENTIFIER.match(name) or "." in name:
            raise InputError(f"alias name {name!r} is not a valid name (letters, digits and _)")


def check_expression_names(
    source: TreeSource,
    tree: Any,
    expr: str,
    aliases: Optional[Mapping[str, str]],
    feature: Optional[str],
    names: Optional[set] = None,
) -> None:
    """Raise :class:`ReadError` naming the file and the branch if ``expr`` (or an alias it uses,
    followed through) reads a branch ``tree`` does not have."""
    names = set(_branch_names(tree)) if names is None else names
    aliases = aliases or {}
    functions = _functions()
    seen: set[str] = set()
    todo: list[tuple[Optional[str], str]] = [(None, expr)]  # (alias or None, expression)
    while todo:
        alias, text = todo.pop()
        for kind, name in _symbols(_parse_expression(text, f"feature {feature!r}")):
            if kind == "call" or name in names or name in functions:
                continue
            if name in aliases:
                if name not in seen:
                    seen.add(name)
                    todo.append((name, aliases[name]))
                continue
            if alias is not None:
                where: Optional[str] = f"in alias {alias!r} = {text!r}"
            else:
                where = f"in {text!r}" if text not in (name, feature) else None
            raise _missing_branch_error(source, tree, name, feature, where)


def _not_flat_error(
    source: TreeSource, tree: Any, expr: str, feature: Optional[str], problem: str
) -> ReadError:
    what = f" for feature {feature!r}" if feature and feature != expr else ""
    return ReadError(
        f"{source.path}: branch {expr!r}{what} of tree {_tree_name(tree)!r} is {problem}; a feature takes one "
        f"number per event: pick one value per event first with an expression such as 'first({expr})', "
        f"'max_of({expr})' or 'num({expr})' (see hepinfer.io.PER_EVENT_FUNCTIONS), or use hepinfer.jagged",
        file=source.path,
        tree=_tree_name(tree),
        branch=expr,
    )


def find_event_ids(tree: Any) -> dict[str, str]:
    """The event identifier branches of ``tree``: output name (``run``, ``luminosityBlock``,
    ``event``) -> branch name, for those that exist with an integer type."""
    names = set(_branch_names(tree))
    found: dict[str, str] = {}
    for out, candidates in EVENT_ID_BRANCHES.items():
        for c in candidates:
            if c in names and _flat_numeric_branch(tree, c) is None:
                found[out] = c
                break
    return found


# ---------------------------------------------------------------------------------- reading


def _as_column(value: Any, source: TreeSource, tree: Any, name: str, expr: str) -> np.ndarray:
    """A 1-D numeric numpy array from what uproot returned for one expression."""
    if type(value).__module__.startswith("awkward"):
        import awkward as ak

        if value.ndim != 1:
            kind = (
                "jagged: a variable number of values per event"
                if "var" in str(ak.type(value))
                else "an array per event"
            )
            raise _not_flat_error(source, tree, expr, name, f"{kind} ({ak.type(value)})")
        try:
            value = ak.to_numpy(value)
        except ValueError as err:
            raise _not_flat_error(source, tree, expr, name, f"not one number per event ({err})") from err
    a = np.asarray(value)
    if a.dtype == object:
        raise _not_flat_error(source, tree, expr, name, "jagged: a variable number of values per event")
    if a.ndim != 1:
        raise _not_flat_error(source, tree, expr, name, f"an array of shape {a.shape[1:]} per event")
    if a.dtype.kind not in "fiub":
        raise _not_flat_error(source, tree, expr, name, f"of type {a.dtype}")
    return a


def _normalise_expressions(expressions: Union[Sequence[str], Mapping[str, str]]) -> dict[str, str]:
    if isinstance(expressions, Mapping):
        return {str(k): str(v) for k, v in expressions.items()}
    if isinstance(expressions, str):
        return {expressions: expressions}
    return {str(e): str(e) for e in expressions}


def _bytes_read(tree: Any) -> int:
    try:
        return int(tree.file.source.num_requested_bytes)
    except Exception:
        return 0


def iterate(
    files: FilesLike,
    expressions: Union[Sequence[str], Mapping[str, str]],
    *,
    tree: Optional[str] = None,
    aliases: Optional[Mapping[str, str]] = None,
    cut: Optional[str] = None,
    step_size: Union[int, str] = "100 MB",
    on_error: str = "raise",
    failures: Optional[list[FileFailure]] = None,
    open_options: Optional[Mapping[str, Any]] = None,
) -> Iterator[Chunk]:
    """Read ``expressions`` from every tree in ``files``, chunk by chunk.

    Parameters
    ----------
    files
        Anything :func:`expand_files` takes, or a list of :class:`TreeSource`.
    expressions
        Branch names or uproot expressions; a dict gives the names the arrays get
        (``{"pt": "Muon_pt_leading"}``), a list uses each expression as its name.
    tree
        Tree name where ``files`` does not give one (``None``: each file's only tree).
    aliases, cut
        As in uproot: named expressions usable in ``expressions``, and a selection
        expression; events failing ``cut`` are dropped (``Chunk.entries`` keeps the
        original entry numbers).
    step_size
        Events per chunk (int) or a size (``"100 MB"``) that bounds the memory used.
    on_error
        ``"raise"`` (default): the first unreadable file raises :class:`ReadError` naming it.
        ``"skip"``: the file is left out (after the chunks it already delivered) and a
        :class:`FileFailure` is appended to ``failures``.
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    exprs = _normalise_expressions(expressions)
    validate_expressions(exprs, aliases, cut)
    sources = _sources(files, tree)
    for source in sources:
        delivered = source_entry = 0
        try:
            for chunk in _iterate_one(source, exprs, aliases, cut, step_size, open_options or {}):
                delivered += 1
                source_entry = chunk.entry_stop
                yield chunk
        except ReadError as err:
            if on_error == "raise":
                raise
            if failures is not None:
                failures.append(FileFailure(source, source_entry, err))


def _sources(files: Any, tree: Optional[str]) -> list[TreeSource]:
    if (
        isinstance(files, Sequence)
        and not isinstance(files, str)
        and files
        and all(isinstance(f, TreeSource) for f in files)
    ):
        return list(files)
    return expand_files(files, tree)


def _iterate_one(
    source: TreeSource,
    exprs: Mapping[str, str],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    step_size: Union[int, str],
    open_options: Mapping[str, Any],
    extra: Optional[Mapping[str, str]] = None,
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
) -> Iterator[Chunk]:
    """Chunks of one tree (of its entries ``entry_start..entry_stop``, all by default);
    ``extra`` are more name -> branch columns read alongside (ids)."""
    tree = open_tree(source, **open_options)
    try:
        yield from _iterate_open(source, tree, exprs, aliases, cut, step_size, extra, entry_start, entry_stop)
    except ReadError:
        raise
    except Exception as err:
        raise ReadError(
            f"{source.path}: reading tree {_tree_name(tree)!r} failed (truncated or corrupt file?): {_one_line(err)}",
            file=source.path,
            tree=_tree_name(tree),
        ) from err
    finally:
        tree.file.close()


def _iterate_open(
    source: TreeSource,
    tree: Any,
    exprs: Mapping[str, str],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    step_size: Union[int, str],
    extra: Optional[Mapping[str, str]],
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
) -> Iterator[Chunk]:
    import uproot

    check_branches(source, tree, exprs, aliases, cut=cut)
    wanted = dict(exprs)
    if extra:
        wanted.update({f"\x00{k}": v for k, v in extra.items()})
    unique = list(dict.fromkeys(wanted.values()))
    if cut is not None:
        unique.append(cut)
    plain = all(_IDENTIFIER.match(e) and e not in (aliases or {}) for e in unique) and isinstance(
        tree, uproot.behaviors.TTree.TTree
    )
    library = "np" if plain else "ak"
    iterator = read_chunks(tree, unique, aliases, step_size, entry_start, entry_stop, library)
    next_entry = entry_start or 0
    while True:
        try:
            arrays, report = next(iterator)
        except StopIteration:
            break
        except uproot.KeyInFileError as err:
            raise _missing_branch_error(source, tree, str(err.key), None) from err
        except ReadError:
            raise
        except Exception as err:
            broken = _broken_branch_error(source, tree, unique, aliases, next_entry, step_size)
            if broken is not None:
                raise broken from err
            failing = _failing_expression_error(source, tree, unique, aliases, next_entry, step_size, err)
            if failing is not None:
                raise failing from err
            raise ReadError(
                f"{source.path}: reading tree {_tree_name(tree)!r} failed after entry {next_entry} (truncated or "
                f"corrupt file, or a bad expression among {unique}): {_one_line(err)}",
                file=source.path,
                tree=_tree_name(tree),
            ) from err
        start, stop = int(report.tree_entry_start), int(report.tree_entry_stop)
        next_entry = stop
        columns = _columns(arrays, library, unique)
        lost = [e for e in unique if e not in columns]
        if lost:
            raise _nothing_returned_error(source, tree, lost)
        entries = np.arange(start, stop, dtype=np.int64)
        if cut is not None:
            mask = _as_column(columns[cut], source, tree, "cut", cut)
            if mask.dtype != np.bool_:
                raise ReadError(
                    f"{source.path}: the cut {cut!r} gives {mask.dtype}, not one boolean per event",
                    file=source.path,
                )
            entries = entries[mask]
        out: dict[str, np.ndarray] = {}
        for name, expr in wanted.items():
            col = _as_column(columns[expr], source, tree, name.lstrip("\x00"), expr)
            out[name] = col[mask] if cut is not None else col
        yield Chunk(source, start, stop, out, entries, _bytes_read(tree))


def _nothing_returned_error(source: TreeSource, tree: Any, lost: Sequence[str]) -> ReadError:
    return ReadError(
        f"{source.path}: uproot returned nothing for {list(lost)} from {type(tree).__name__.split('_')[-1]} "
        f"{_tree_name(tree)!r} (a field nested in a record or collection? name it as uproot lists it in keys())",
        file=source.path,
        tree=_tree_name(tree),
        branch=lost[0],
    )


def read_chunks(
    tree: Any,
    expressions: Sequence[str],
    aliases: Optional[Mapping[str, str]],
    step_size: Union[int, str],
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
    library: str = "ak",
) -> Iterator[tuple[Any, Any]]:
    """(arrays, report) for each chunk of ``tree``, as ``tree.iterate(expressions, report=True)``
    gives them, with hepinfer's expression functions. uproot evaluates expressions and aliases
    on TTrees only; on an RNTuple the fields they read are read and the expressions are
    evaluated here (the same syntax and functions; arrays is then a dict)."""
    import uproot

    if isinstance(tree, uproot.behaviors.TTree.TTree):
        kwargs: dict[str, Any] = {"step_size": step_size, "library": library, "report": True}
        if aliases:
            kwargs["aliases"] = dict(aliases)
        if library == "ak":
            kwargs["language"] = _expression_language()
        yield from tree.iterate(list(expressions), entry_start=entry_start, entry_stop=entry_stop, **kwargs)
        return
    aliases = aliases or {}
    fields = set(_branch_names(tree))
    if all(e in fields and e not in aliases for e in expressions):
        yield from tree.iterate(
            filter_name=list(expressions),
            entry_start=entry_start,
            entry_stop=entry_stop,
            step_size=step_size,
            library="ak",
            report=True,
        )
        return
    needed = _fields_read(expressions, aliases, fields)
    for arrays, report in tree.iterate(
        filter_name=needed,
        entry_start=entry_start,
        entry_stop=entry_stop,
        step_size=step_size,
        library="ak",
        report=True,
    ):
        yield _evaluate_expressions(arrays, expressions, aliases, fields), report


def _fields_read(expressions: Sequence[str], aliases: Mapping[str, str], fields: set) -> list[str]:
    """The fields that ``expressions`` read, through the aliases."""
    out: list[str] = []
    todo = list(expressions)
    seen: set[str] = set()
    while todo:
        text = todo.pop()
        for kind, name in _symbols(_parse_expression(text, "expression")):
            if kind == "call" or name in seen:
                continue
            seen.add(name)
            if name in aliases:
                todo.append(aliases[name])
            elif name in fields:
                out.append(name)
    return out


class _Rename(ast.NodeTransformer):
    """Each branch or alias symbol (dotted names too) -> a plain variable name."""

    def __init__(self, symbols: Mapping[str, str]) -> None:
        self.symbols = symbols

    def _replace(self, node: ast.AST) -> ast.AST:
        name = _dotted(node)
        if name is not None and name in self.symbols:
            return ast.copy_location(ast.Name(id=self.symbols[name], ctx=ast.Load()), node)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return self._replace(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        return self._replace(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        # a name in call position is a function: keep it, rename its arguments
        node.args = [self.visit(a) for a in node.args]
        for k in node.keywords:
            k.value = self.visit(k.value)
        if not isinstance(node.func, ast.Name):
            node.func = self.visit(node.func)
        return node


def _evaluate_expressions(
    arrays: Any, expressions: Sequence[str], aliases: Mapping[str, str], fields: set
) -> dict[str, Any]:
    """{expression: its value} over one chunk of fields (awkward arrays), aliases followed."""
    functions = dict(_expression_language().functions)
    values: dict[str, Any] = {}
    busy: set[str] = set()

    def symbol(name: str) -> Any:
        if name not in values:
            if name in aliases:
                if name in busy:
                    raise InputError(f"alias {name!r} refers to itself (through {sorted(busy)})")
                busy.add(name)
                values[name] = evaluate(aliases[name])
                busy.discard(name)
            elif name in fields:
                values[name] = arrays[name]
            else:
                raise KeyError(name)
        return values[name]

    def evaluate(text: str) -> Any:
        node = _parse_expression(text, "expression")
        names = sorted({n for k, n in _symbols(node) if k == "name"})
        renamed = {n: f"_hepinfer_{i}" for i, n in enumerate(names)}
        node = ast.fix_missing_locations(_Rename(renamed).visit(node))
        scope = {**functions, **{renamed[n]: symbol(n) for n in names}}
        return eval(compile(node, "<expression>", "eval"), {"__builtins__": {}}, scope)  # noqa: S307

    return {e: evaluate(e) for e in expressions}


def _broken_branch_error(
    source: Any,
    tree: Any,
    expressions: Sequence[str],
    aliases: Optional[Mapping[str, str]],
    next_entry: int,
    step_size: Any,
) -> Optional[ReadError]:
    """The ReadError naming the branch that cannot be read in the failing chunk, or None if none can be found."""
    broken = _find_broken_branch(tree, expressions, aliases, next_entry, step_size)
    if broken is None:
        return None
    branch, first, last, cause = broken
    return ReadError(
        f"{source.path}: branch {branch!r} of tree {_tree_name(tree)!r} cannot be read in entries "
        f"{first}-{last} (truncated or corrupt file?): {_one_line(cause)}",
        file=source.path,
        tree=_tree_name(tree),
        branch=branch,
    )


def _failing_expression_error(
    source: Any,
    tree: Any,
    expressions: Sequence[str],
    aliases: Optional[Mapping[str, str]],
    entry_start: int,
    step_size: Union[int, str],
    cause: BaseException,
) -> Optional[ReadError]:
    """After a failed read whose branches all read fine one by one: the ReadError naming the
    expression that cannot be evaluated over the failed chunk (e.g. jagged branches with
    different numbers of values in an event), or None."""
    import uproot

    if not isinstance(tree, uproot.behaviors.TTree.TTree):
        return None
    stop = _chunk_stop(tree, expressions, entry_start, step_size)
    for expr in expressions:
        if _IDENTIFIER.match(expr) and expr not in (aliases or {}):
            continue
        try:
            tree.arrays(
                [expr],
                aliases=dict(aliases or {}),
                language=_expression_language(),
                entry_start=entry_start,
                entry_stop=stop,
            )
        except Exception as err:  # noqa: BLE001 - this expression is the one that fails
            text = str(err)
            hint = (
                " (it combines jagged branches that hold different numbers of values in an event: "
                "reduce each to one value per event first, e.g. with first() or sum_of())"
                if "broadcast" in text or "cannot be broadcast" in text
                else ""
            )
            return ReadError(
                f"{source.path}: the expression {expr!r} cannot be evaluated on tree {_tree_name(tree)!r} in entries "
                f"{entry_start}-{stop - 1}{hint}: {_one_line(err)}",
                file=source.path,
                tree=_tree_name(tree),
            )
    del cause
    return None


def _chunk_stop(tree: Any, expressions: Sequence[str], entry_start: int, step_size: Union[int, str]) -> int:
    total = int(tree.num_entries)
    if isinstance(step_size, int):
        n = step_size
    else:
        names = _branch_names(tree)
        used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", " ".join(expressions)))
        try:
            n = int(tree.num_entries_for(step_size, filter_name=[b for b in names if b in used]))
        except Exception:  # noqa: BLE001 - no estimate: the rest of the file
            n = total - entry_start
    return min(total, entry_start + max(1, n))


def _find_broken_branch(
    tree: Any,
    expressions: Sequence[str],
    aliases: Optional[Mapping[str, str]],
    entry_start: int,
    step_size: Union[int, str],
) -> Optional[tuple[str, int, int, BaseException]]:
    """After a failed read of the chunk starting at ``entry_start``: read the TTree branches the
    expressions use one at a time over that chunk's entries and return the first that fails
    (name, first entry, last entry, error), or ``None`` (not one branch's fault, or an RNTuple)."""
    import uproot

    if not isinstance(tree, uproot.behaviors.TTree.TTree):
        return None
    text = [*expressions, *(aliases or {}).values()]
    used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", " ".join(text)))
    candidates = [n for n in _branch_names(tree) if n in used]
    stop = _chunk_stop(tree, text, entry_start, step_size)
    for name in candidates:
        try:
            tree[name].array(entry_start=entry_start, entry_stop=stop, library="np")
        except Exception as err:  # noqa: BLE001 - whatever uproot raises, this branch is the broken one
            return name, entry_start, stop - 1, err
    return None


def _per_event(reducer: Any) -> Any:
    def f(values: Any, default: float = float("nan")) -> Any:
        import awkward as ak

        return ak.fill_none(reducer(values), default)

    return f


def _nth(values: Any, i: int, default: float = float("nan")) -> Any:
    import awkward as ak

    padded = ak.pad_none(values, i + 1, axis=1)
    return ak.fill_none(padded[:, i], default)


def _num(values: Any) -> Any:
    import awkward as ak

    return ak.num(values, axis=1)


#: Per-event functions of jagged branches usable in feature expressions, on top of uproot's
#: (``sqrt``, ``abs``, ``where``, ...): ``num(Jet_pt)``, ``first(Jet_pt)``, ``nth(Jet_pt, 1)``,
#: ``max_of(Jet_pt)``, ``min_of``, ``sum_of``, ``mean_of``. An event without values gives NaN
#: (or the optional last argument), which forests treat as missing.
PER_EVENT_FUNCTIONS: dict[str, Any] = {}


def _expression_language() -> Any:
    import awkward as ak
    import uproot

    if not PER_EVENT_FUNCTIONS:
        PER_EVENT_FUNCTIONS.update(
            {
                "num": _num,
                "first": _per_event(lambda a: ak.firsts(a, axis=1)),
                "nth": _nth,
                "max_of": _per_event(lambda a: ak.max(a, axis=1)),
                "min_of": _per_event(lambda a: ak.min(a, axis=1)),
                "sum_of": _per_event(lambda a: ak.sum(a, axis=1)),
                "mean_of": _per_event(lambda a: ak.mean(a, axis=1)),
            }
        )
    base = uproot.language.python.PythonLanguage()
    return uproot.language.python.PythonLanguage(functions={**base.functions, **PER_EVENT_FUNCTIONS})


def _columns(arrays: Any, library: str, unique: Sequence[str]) -> dict[str, Any]:
    if library == "np" or isinstance(arrays, Mapping):
        return dict(arrays)
    fields = set(arrays.fields)
    return {e: arrays[e] for e in unique if e in fields}


def count_entries(source: TreeSource, **open_options: Any) -> int:
    """Number of entries of one tree (opens and closes the file)."""
    tree = open_tree(source, **open_options)
    try:
        return int(tree.num_entries)
    finally:
        tree.file.close()


# ---------------------------------------------------------------------------------- jagged reading


@dataclass
class _JaggedChunk(Chunk):
    """A chunk for a set/graph network: the particle ``offsets`` (``n_events + 1``), the
    per-particle content of each input (one array per branch) and the per-jet inputs."""

    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    particles: dict[str, list[np.ndarray]] = field(default_factory=dict)
    jets: dict[str, np.ndarray] = field(default_factory=dict)


def _check_jagged_branches(
    source: TreeSource,
    tree: Any,
    particle: Mapping[str, list[str]],
    jets: Mapping[str, list[str]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str] = None,
) -> None:
    """Raise :class:`ReadError` if a plain branch of a per-particle input is missing or not
    jagged, or one of a per-jet input is missing or not one number per event, or if an
    expression or the cut reads a branch the tree does not have."""
    import uproot

    names = set(_branch_names(tree))
    is_ttree = isinstance(tree, uproot.behaviors.TTree.TTree)
    for name, exprs in particle.items():
        for e in exprs:
            if not _IDENTIFIER.match(e) or e in (aliases or {}):
                check_expression_names(source, tree, e, aliases, name, names)
                continue
            if e not in names:
                raise _missing_branch_error(source, tree, e, name)
            if not is_ttree:
                continue
            interp = tree[e].interpretation
            if not isinstance(interp, uproot.interpretation.jagged.AsJagged):
                raise _not_jagged_error(
                    source, tree, e, name, f"{tree[e].typename}, read as {type(interp).__name__}"
                )
    check_branches(
        source, tree, {f"{n}[{j}]": e for n, es in jets.items() for j, e in enumerate(es)}, aliases, cut=cut
    )


def _not_jagged_error(source: TreeSource, tree: Any, expr: str, name: str, what: str) -> ReadError:
    return ReadError(
        f"{source.path}: branch {expr!r} of tree {_tree_name(tree)!r} is not jagged ({what}); the per-particle "
        f"input {name!r} needs a variable number of values per event (one per particle, e.g. float[]); "
        "per-event values of the jet go in jet_features=",
        file=source.path,
        tree=_tree_name(tree),
        branch=expr,
    )


def _jagged_buffers(
    value: Any, source: TreeSource, tree: Any, name: str, expr: str
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets starting at 0, per-particle numbers) of one jagged column, without copying
    what uproot read where the layout allows it."""
    import awkward as ak

    layout = ak.to_layout(value)
    while isinstance(layout, (ak.contents.IndexedArray, ak.contents.UnmaskedArray)):
        layout = layout.project() if isinstance(layout, ak.contents.IndexedArray) else layout.content
    if isinstance(layout, ak.contents.ListArray):
        layout = layout.to_ListOffsetArray64(False)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        raise _not_jagged_error(source, tree, expr, name, f"it gives {ak.type(value)}")
    offsets = np.asarray(layout.offsets.data).astype(np.int64, copy=False)
    content = layout.content[int(offsets[0]) : int(offsets[-1])]
    offsets = offsets - offsets[0] if len(offsets) and offsets[0] != 0 else offsets
    while isinstance(content, (ak.contents.IndexedArray, ak.contents.UnmaskedArray)):
        content = content.project() if isinstance(content, ak.contents.IndexedArray) else content.content
    data = np.asarray(content.data) if isinstance(content, ak.contents.NumpyArray) else None
    if data is None or data.ndim != 1 or data.dtype.kind not in "fiub":
        raise ReadError(
            f"{source.path}: {expr!r} (per-particle input {name!r}) gives {ak.type(value)}; a per-particle "
            "branch holds one number per particle (no nested lists, records or missing values)",
            file=source.path,
            tree=_tree_name(tree),
            branch=expr,
        )
    if data.dtype.kind != "f" or data.dtype.itemsize < 4:
        data = data.astype(np.float32)
    return offsets, data


def _count_mismatch(
    source: TreeSource,
    tree: Any,
    a: tuple[str, str, np.ndarray],
    b: tuple[str, str, np.ndarray],
    entries: np.ndarray,
) -> ReadError:
    (na, ea, oa), (nb, eb, ob) = a, b
    ca, cb = np.diff(oa), np.diff(ob)
    i = int(np.flatnonzero(ca != cb)[0])
    return ReadError(
        f"{source.path}: branches {ea!r} (input {na!r}) and {eb!r} (input {nb!r}) of tree {_tree_name(tree)!r} "
        f"hold different numbers of particles in entry {int(entries[i])} ({int(ca[i])} and {int(cb[i])}); "
        "every per-particle branch must have one value per particle of the same jets",
        file=source.path,
        tree=_tree_name(tree),
        branch=eb,
    )


def _iterate_jagged(
    source: TreeSource,
    particle: Mapping[str, list[str]],
    jets: Mapping[str, list[str]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    step_size: Union[int, str],
    open_options: Mapping[str, Any],
    ids: Mapping[str, str],
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
) -> Iterator[_JaggedChunk]:
    """Chunks of one tree for a set/graph network (see :class:`_JaggedChunk`)."""
    tree = open_tree(source, **open_options)
    try:
        yield from _iterate_jagged_open(
            source, tree, particle, jets, aliases, cut, step_size, ids, entry_start, entry_stop
        )
    except ReadError:
        raise
    except Exception as err:
        raise ReadError(
            f"{source.path}: reading tree {_tree_name(tree)!r} failed (truncated or corrupt file, or a bad "
            f"expression?): {_one_line(err)}",
            file=source.path,
            tree=_tree_name(tree),
        ) from err
    finally:
        tree.file.close()


def _iterate_jagged_open(
    source: TreeSource,
    tree: Any,
    particle: Mapping[str, list[str]],
    jets: Mapping[str, list[str]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    step_size: Union[int, str],
    ids: Mapping[str, str],
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
) -> Iterator[_JaggedChunk]:
    _check_jagged_branches(source, tree, particle, jets, aliases, cut)
    unique = list(
        dict.fromkeys(
            [
                *(e for es in particle.values() for e in es),
                *(e for es in jets.values() for e in es),
                *ids.values(),
            ]
            + ([cut] if cut is not None else [])
        )
    )
    iterator = read_chunks(tree, unique, aliases, step_size, entry_start, entry_stop)
    next_entry = entry_start or 0
    while True:
        try:
            arrays, report = next(iterator)
        except StopIteration:
            break
        except ReadError:
            raise
        except Exception as err:
            broken = _broken_branch_error(source, tree, unique, aliases, next_entry, step_size)
            if broken is None:
                broken = _failing_expression_error(source, tree, unique, aliases, next_entry, step_size, err)
            if broken is not None:
                raise broken from err
            raise
        start, stop = int(report.tree_entry_start), int(report.tree_entry_stop)
        next_entry = stop
        fields = set(arrays) if isinstance(arrays, Mapping) else set(arrays.fields)
        lost = [e for e in unique if e not in fields]
        if lost:
            raise _nothing_returned_error(source, tree, lost)
        entries = np.arange(start, stop, dtype=np.int64)
        selected: Any = None
        if cut is not None:
            selected = _as_column(arrays[cut], source, tree, "cut", cut)
            if selected.dtype != np.bool_:
                raise ReadError(
                    f"{source.path}: the cut {cut!r} gives {selected.dtype}, not one boolean per event",
                    file=source.path,
                )
            entries = entries[selected]

        def column(e: str, arrays: Any = arrays, selected: Any = selected) -> Any:
            return arrays[e] if selected is None else arrays[e][selected]

        offsets: Optional[tuple[str, str, np.ndarray]] = None
        content: dict[str, list[np.ndarray]] = {}
        for name, exprs in particle.items():
            content[name] = []
            for e in exprs:
                off, data = _jagged_buffers(column(e), source, tree, name, e)
                if offsets is None:
                    offsets = (name, e, off)
                elif off is not offsets[2] and not np.array_equal(off, offsets[2]):
                    raise _count_mismatch(source, tree, offsets, (name, e, off), entries)
                content[name].append(data)
        per_jet = {
            name: np.column_stack(
                [
                    _as_column(column(e), source, tree, f"{name}[{j}]", e).astype(np.float32)
                    for j, e in enumerate(exprs)
                ]
            )
            if len(entries)
            else np.zeros((0, len(exprs)), np.float32)
            for name, exprs in jets.items()
        }
        out = {f"\x00{k}": _as_column(column(v), source, tree, k, v) for k, v in ids.items()}
        assert offsets is not None
        yield _JaggedChunk(
            source,
            start,
            stop,
            out,
            entries,
            _bytes_read(tree),
            offsets=offsets[2],
            particles=content,
            jets=per_jet,
        )
