"""The layout draws the design, and these rules keep it so.

- Domain modules (core/, the bank's ledger, the gateway's coordinator, payments, idempotency
  and users) load no grpc: each is imported alone in a fresh interpreter.
- No role folder imports lab/ (only the package face and cli.py may); core/ imports no role.
- Notebooks import only from `paykit` and `paykit.lab`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "paykit"
ROLES = ("core", "bank", "gateway", "client", "rpc")
DOMAIN = [
    *(f"paykit.core.{p.stem}" for p in sorted((PACKAGE / "core").glob("[a-z]*.py"))),
    "paykit.bank.ledger",
    "paykit.bank.participant",
    "paykit.gateway.coordinator",
    "paykit.gateway.payments",
    "paykit.gateway.idempotency",
    "paykit.gateway.users",
]


@pytest.mark.parametrize("module", DOMAIN)
def test_a_domain_module_loads_no_grpc(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'paykit.lab',"
        " 'paykit.client', 'paykit.rpc')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"


def imports_of(path: Path) -> set[str]:
    """Every paykit module a file imports (absolute names), at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("paykit")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("paykit"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def role_files(role: str) -> list[Path]:
    return sorted((PACKAGE / role).rglob("*.py"))


@pytest.mark.parametrize("role", ROLES)
def test_no_role_folder_imports_lab(role):
    for path in role_files(role):
        lab = sorted(m for m in imports_of(path) if m.startswith("paykit.lab"))
        assert not lab, f"{path.relative_to(ROOT)} imports {lab}"


def test_core_imports_no_role():
    for path in role_files("core"):
        other = sorted(
            m
            for m in imports_of(path)
            if m.startswith("paykit.") and not m.startswith("paykit.core")
        )
        assert not other, f"{path.relative_to(ROOT)} imports {other}"


def test_the_import_graph_has_no_upward_edge():
    # core <- rpc <- (bank, gateway, client) <- lab; the three roles never import each other.
    allowed = {
        "core": {"core"},
        "rpc": {"core", "rpc", "v1"},
        "bank": {"core", "rpc", "v1", "bank"},
        "gateway": {"core", "rpc", "v1", "gateway"},
        "client": {"core", "rpc", "v1", "client"},
    }
    for role, may in allowed.items():
        for path in role_files(role):
            used = {m.split(".")[1] for m in imports_of(path) if m.count(".") >= 1}
            assert used <= may, f"{path.relative_to(ROOT)} imports {sorted(used - may)}"


def test_importing_the_package_loads_almost_nothing():
    code = (
        "import sys, paykit\n"
        "print(sorted(m for m in sys.modules if m.startswith(('paykit.', 'grpc'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def notebook_imports(path: Path) -> set[str]:
    found = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
            # A %%writefile cell's body is a file (a lab's class, maybe one indented method).
            for node in ast.walk(ast.parse(textwrap.dedent("\n".join(lines)))):
                if isinstance(node, ast.ImportFrom):
                    found.add(node.module or "")
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize(
    "notebook", sorted((ROOT / "lessons").rglob("*.ipynb")), ids=lambda p: p.name
)
def test_notebooks_import_only_paykit_and_paykit_lab(notebook):
    ours = {m for m in notebook_imports(notebook) if m.split(".")[0] == "paykit"}
    assert ours <= {"paykit", "paykit.lab"}, f"{notebook.name} imports {sorted(ours)}"
