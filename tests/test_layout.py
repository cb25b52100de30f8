"""The import picture the layout promises: lab on top, service and swarm side by side, the
kernel readers below; no arrow between the service and the swarm, none back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "leaklab": {"event_service", "ping_client", "sockscope"},
    "event_service": {"sockscope"},
    "ping_client": {"sockscope"},
    "sockscope": set(),
    "leakguard": {"sockscope"},
}


def project_imports(package: str) -> set[tuple[str, str]]:
    """(file, imported project package) for every import in ``package``."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in ALLOWED:
                    found.add((str(path.relative_to(ROOT)), top))
    return found


@pytest.mark.parametrize("package", [p for p in ALLOWED if (ROOT / p).is_dir()])
def test_packages_import_only_what_lies_below_them(package: str) -> None:
    wrong = sorted(
        (path, top) for path, top in project_imports(package)
        if top != package and top not in ALLOWED[package]
    )  # fmt: skip
    assert not wrong, f"{package} must not import these: {wrong}"


def test_every_package_says_what_lives_there() -> None:
    for package in ALLOWED:
        init = ROOT / package / "__init__.py"
        if init.exists():
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc and len(doc.splitlines()) <= 3, package
