"""Build hook: the wheel carries the lessons, the Jupyter settings they open with, and the proto.

Everything else is in pyproject.toml. lessons/, jupyter-config/ and proto/ stay at the top of
the checkout, where lesson authors, nbval (`make test`), `make lab` and `make proto` use them; a
wheel gets a copy made at build time (paykit/lessons/, paykit/jupyter-config/,
paykit/v1/payment.proto), so there is one source and no committed duplicate. An editable
install (`make setup`) copies nothing: paykit.packaged finds the checkout's files instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (folder in the checkout, folder in the package, files to take)
COPIED = (
    (
        "lessons",
        "lessons",
        ("[0-9][0-9]_*.ipynb", "README.md", "labs/lab_*.ipynb", "labs/*_starter.py"),
    ),
    ("jupyter-config", "jupyter-config", ("**/*.json", "README.md")),
    ("proto/paykit/v1", "v1", ("payment.proto",)),  # the contract, next to its stubs
)


class BuildPyWithLessons(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source, target, patterns in COPIED:
            for pattern in patterns:
                for path in sorted((ROOT / source).glob(pattern)):
                    if ".ipynb_checkpoints" in path.parts:
                        continue
                    out = Path(self.build_lib) / "paykit" / target / path.relative_to(ROOT / source)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, out)


setup(cmdclass={"build_py": BuildPyWithLessons})
