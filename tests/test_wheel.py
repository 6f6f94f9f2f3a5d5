"""An installed paykit works outside the checkout: the wheel is built from a copy of the source,
installed into a fresh venv in tmp_path, and the README's Python example runs there from a
folder outside the checkout (it pays BankB's recipient123, a packaged seed account); then
`paykit lessons copy` hands out the lessons from the installed package.

Fast and offline: `pip wheel --no-deps --no-build-isolation --no-index`, and the fresh venv
(no pip of its own) sees this venv's dependencies through a .pth file, so nothing is
downloaded; paykit itself comes only from the wheel (checked)."""

from __future__ import annotations

import email
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", ".paykit", "student",
              "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
              ".ipynb_checkpoints")  # fmt: skip


def readme_example() -> str:
    """The Python block of the README's "From Python and notebooks" section."""
    section = (ROOT / "README.md").read_text().split("## From Python and notebooks", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert out.returncode == 0, f"{args[:4]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh venv's python, the wheel): paykit built and installed outside the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--wheel-dir", str(work / "dist"), str(source))  # fmt: skip
    (wheel,) = (work / "dist").glob("paykit-*.whl")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    # This venv's dependencies (grpcio, cryptography, ...) without installing them again.
    (Path(purelib.stdout.strip()) / "paykit-test-deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
        "--no-index", str(wheel))  # fmt: skip
    shutil.rmtree(source)
    yield python, wheel
    shutil.rmtree(work, ignore_errors=True)


def outside_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PAYKIT_HOME")}
    (tmp_path / "tmp").mkdir()
    return {**env, "TMPDIR": str(tmp_path / "tmp"), "PAYKIT_HOME": str(tmp_path / "home")}


def test_the_readme_example_runs_from_the_installed_wheel(installed, tmp_path):
    python, _ = installed
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "example.py").write_text(
        readme_example() + "\nimport paykit\nprint('paykit from', paykit.__file__)\n"
    )
    out = run(str(python), "example.py", cwd=folder, env=outside_env(tmp_path))
    where = Path(out.stdout.split("paykit from ", 1)[1].strip())
    assert where.is_relative_to(python.parent.parent), f"paykit came from {where}, not the wheel"
    assert not where.is_relative_to(ROOT)
    assert list((tmp_path / "tmp").iterdir()) == [], "the cluster removed its temporary folder"


def test_lessons_copy_from_the_installed_wheel(installed, tmp_path):
    python, _ = installed
    out = run(str(python.parent / "paykit"), "lessons", "copy", "course", cwd=tmp_path,
              env=outside_env(tmp_path))  # fmt: skip
    copied = sorted(p.name for p in (tmp_path / "course").iterdir())
    lessons = sorted(p.name for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
    assert copied == sorted([*lessons, "README.md", "labs"]), out.stdout
    labs = sorted(p.name for p in (ROOT / "lessons" / "labs").glob("lab_*.ipynb"))
    assert labs and set(labs) <= {p.name for p in (tmp_path / "course" / "labs").iterdir()}
    for name in [*lessons, "README.md", *(f"labs/{n}" for n in labs)]:
        assert (tmp_path / "course" / name).read_bytes() == (ROOT / "lessons" / name).read_bytes()
    # ... with the Jupyter settings `paykit lessons open` gives JupyterLab; and the student
    # versions' tool (teachers) finds the packaged lessons too
    code = (
        "from paykit import packaged; from paykit.lab import student; "
        "print(packaged.jupyter_config_dir()); print(student.LESSONS_DIR)"
    )
    found = run(str(python), "-c", code, cwd=tmp_path).stdout.split()
    assert all(Path(p).is_relative_to(python.parent.parent) for p in found), found


def test_the_wheel_carries_its_data_and_license_metadata(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_string(z.read(metadata).decode())
    for name in ("paykit/py.typed", "paykit/data/accounts.csv", "paykit/v1/payment.proto",
                 "paykit/lessons/01_tour.ipynb", "paykit/lessons/README.md",
                 "paykit/jupyter-config/labconfig/page_config.json"):  # fmt: skip
        assert name in names, f"{name} is not in the wheel"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert 'matplotlib>=3.9; extra == "lessons"' in meta.get_all("Requires-Dist")  # tick_labels=
    assert not any(".ipynb_checkpoints" in n for n in names)
