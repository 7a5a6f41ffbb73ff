"""The zip package's surface: code outside it imports only what `mis_adapters.zip` names in
`__all__`, from there; and the package takes nothing from the storage adapter or from MIS's
core and app (it has no HTTP meaning: the storage turns its errors into MIS's)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mis_adapters.zip
from mis_adapters.zip.unpack_processes import _BOOT

REPO = Path(__file__).parents[2]
PRODUCT = ("mis_core", "mis_adapters", "mis_app")
ZIP = REPO / "mis_adapters" / "zip"
PACKAGE = "mis_adapters.zip"


def imports(path: Path) -> Iterator[tuple[str, str]]:
    """(module, name) for each name `path` imports; `import module` gives (module, "")."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                # `from mis_adapters import zip` takes the package whole: no name of its surface
                whole = f"{node.module}.{alias.name}" == PACKAGE
                yield (PACKAGE, "") if whole else (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""


def outside_modules() -> list[Path]:
    return [
        path
        for package in PRODUCT
        for path in sorted((REPO / package).rglob("*.py"))
        if ZIP not in path.parents
    ]


def test_outside_code_imports_only_the_zip_packages_public_names() -> None:
    used = {
        (path.relative_to(REPO).as_posix(), module, name)
        for path in outside_modules()
        for module, name in imports(path)
        if module == PACKAGE or module.startswith(f"{PACKAGE}.")
    }
    assert len(used) > 5  # the storage adapter and the client use it: the check is not vacuous
    behind = {use for use in used if use[1] != PACKAGE or use[2] not in mis_adapters.zip.__all__}
    assert behind == set(), "import these from mis_adapters.zip, and name them in its __all__"


def test_every_public_name_is_used_outside_the_package() -> None:
    """A name no one outside uses is no part of the surface: it stays inside."""
    used = {
        name for path in outside_modules() for module, name in imports(path) if module == PACKAGE
    }
    assert set(mis_adapters.zip.__all__) == used


def test_the_zip_package_takes_nothing_from_the_storage_or_from_mis() -> None:
    taken = {
        (path.name, module)
        for path in sorted(ZIP.glob("*.py"))
        for module, _ in imports(path)
        if module.startswith(("mis_adapters.storage", "mis_core", "mis_app"))
    }
    assert taken == set()


def test_an_unpacking_worker_starts_without_warnings() -> None:
    """A worker imports its module (which the package's own import loads first) rather than
    running it as __main__, which Python warns about and runs twice."""
    ran = subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", _BOOT, json.dumps([str(REPO)]), "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1, ran.stderr  # its parent is not MIS (pid 1): it gives up
    assert ran.stderr == ""
