"""Op names written as strings in the code must name registered IR ops.

Tables keyed by op name check themselves at import (``check_op_names``: kernel kinds, ONNX
lowerings, patterns); this scan covers the rest: every ``node.op == "..."`` /
``node.op in (...)`` comparison, ``graph.find("...")``, ``rw.op("...")``, ``Pat("...")``,
``onnx_lowering("...")`` and ``get_op("...")`` in the package. A typo, or a branch for an op
that does not exist (dead code), fails here with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from accel.ir.ops import all_ops, check_op_names

PACKAGE = Path(__file__).resolve().parents[1] / "accel"
FX_NODE_OPS = frozenset({"placeholder", "get_attr", "call_function", "call_method",
                         "call_module", "output"})
"""torch.fx's node kinds (``fx.Node.op``), a different namespace read by the frontend."""
CALLS = frozenset({"find", "Pat", "onnx_lowering", "get_op"})


def _strings(node: ast.AST) -> list[str] | None:
    """The string constants of a literal (a string, a tuple/set/list or frozenset of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.Set | ast.List):
        out: list[str] = []
        for e in node.elts:
            s = _strings(e)
            if s is None:
                return None
            out += s
        return out
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("frozenset", "set") and node.args):
        return _strings(node.args[0])
    return None


def op_name_literals(source: str) -> list[tuple[int, str]]:
    """(line, name) of every string used as an op name in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "op" for s in sides):
                for s in sides:
                    names += _strings(s) or []
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in CALLS or (name == "op" and isinstance(f, ast.Attribute)):
                names += _strings(node.args[0]) or []
        found += [(node.lineno, n) for n in names]  # type: ignore[attr-defined]
    return found


def test_the_scan_finds_op_names() -> None:
    src = ('if n.op == "linaer": pass\nif node.op in ("add", "mull"): pass\n'
           'g.find("softmax")\nrw.op("relu", x)\nPat({"gelu"}, x)\n')
    assert op_name_literals(src) == [(1, "linaer"), (2, "add"), (2, "mull"), (3, "softmax"),
                                     (4, "relu"), (5, "gelu")]


def test_every_op_name_in_the_package_is_registered() -> None:
    ops = set(all_ops()) | FX_NODE_OPS
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: '{name}'"
           for path in sorted(PACKAGE.rglob("*.py"))
           for line, name in op_name_literals(path.read_text()) if name not in ops]
    assert not bad, "op names that are not registered IR ops:\n" + "\n".join(bad)


def test_tables_check_their_names_at_import() -> None:
    with pytest.raises(ValueError, match="unknown IR op 'linaer'; did you mean 'linear'"):
        check_op_names({"linaer"}, "test table")
