"""Size as a habit: no product module over 300 lines, no function over 60.

A module that grows past the limit is split by concern, a function by its steps. Only a
data table may be longer, and only when it is named in `DATA_TABLES` with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.harness.repo import REPO

PRODUCT = ("mis_core", "mis_adapters", "mis_app")
MODULE_MOST = 300  # lines
FUNCTION_MOST = 60  # lines, from its `def` to its last line
DATA_TABLES: dict[str, str] = {}  # module (relative to the repository) → why it may be longer


def product_modules() -> list[Path]:
    return sorted(path for package in PRODUCT for path in (REPO / package).rglob("*.py"))


def long_modules(paths: list[Path], root: Path = REPO) -> dict[str, int]:
    """The modules over MODULE_MOST lines: name → lines."""
    found = {}
    for path in paths:
        lines = len(path.read_text().splitlines())
        if lines > MODULE_MOST:
            found[path.relative_to(root).as_posix()] = lines
    return found


def long_functions(paths: list[Path], root: Path = REPO) -> dict[str, int]:
    """The functions (methods and nested ones too) over FUNCTION_MOST lines: where → lines."""
    found = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_MOST:
                    where = f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}"
                    found[where] = lines
    return found


def test_the_product_is_where_this_test_looks() -> None:
    assert len(product_modules()) > 50  # a moved package would make the checks below vacuous


def test_no_product_module_is_over_300_lines() -> None:
    found = {
        name: n for name, n in long_modules(product_modules()).items() if name not in DATA_TABLES
    }
    assert found == {}, f"split these by concern (lines): {found}"


def test_no_product_function_is_over_60_lines() -> None:
    found = long_functions(product_modules())
    assert found == {}, f"split these into their steps (lines): {found}"


def test_the_data_tables_allowed_to_be_longer_still_are() -> None:
    """An entry of DATA_TABLES that no longer needs it goes, so the list stays honest."""
    long = long_modules(product_modules())
    assert set(DATA_TABLES) <= set(long), set(DATA_TABLES) - set(long)


@pytest.mark.parametrize(("lines", "long"), [(MODULE_MOST, False), (MODULE_MOST + 1, True)])
def test_a_module_just_over_the_limit_is_found(tmp_path: Path, lines: int, long: bool) -> None:
    module = tmp_path / "module.py"
    module.write_text("x = 1\n" * lines)
    assert bool(long_modules([module], tmp_path)) is long


@pytest.mark.parametrize(("lines", "long"), [(FUNCTION_MOST, False), (FUNCTION_MOST + 1, True)])
def test_a_method_just_over_the_limit_is_found(tmp_path: Path, lines: int, long: bool) -> None:
    body = "".join("        x = 1\n" for _ in range(lines - 1))
    module = tmp_path / "module.py"
    module.write_text(f"class C:\n    async def f(self) -> None:\n{body}")
    assert bool(long_functions([module], tmp_path)) is long
