"""The proto as a contract: the committed stubs in paykit/v1 are what `make proto` makes from
proto/ today, `buf lint` passes (buf.yaml), and other languages can generate code from it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("payment_pb2.py", "payment_pb2.pyi", "payment_pb2_grpc.py")


def test_generated_stubs_are_fresh(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "proto/paykit/v1/payment.proto"),
        ],
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "paykit/v1" / name).read_text()
        committed = (ROOT / "paykit/v1" / name).read_text()
        assert fresh == committed, (
            f"paykit/v1/{name} is stale: run `make proto` and commit the result"
        )


def test_every_amount_field_is_integer_minor_units():
    from google.protobuf.descriptor import FieldDescriptor

    from paykit.v1 import payment_pb2

    for message in payment_pb2.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            if "amount" in field.name or "balance" in field.name or field.name.endswith("_minor"):
                assert field.name.endswith("_minor"), (
                    f"{message.name}.{field.name} must say its unit"
                )
                assert field.type == FieldDescriptor.TYPE_INT64, (
                    f"{message.name}.{field.name} must be int64"
                )


def buf_binary() -> str:
    """buf from this Python's own bin folder (the dev extra's buf-bin wheel), else from PATH."""
    found = Path(sys.executable).parent / "buf"
    if not found.exists():
        found = Path(shutil.which("buf") or found)
    if not found.exists():
        pytest.fail(
            "buf is not installed, so the proto's style cannot be checked: install the dev extra "
            "(pip install -e '.[dev]'; make test does), which pins buf-bin, or put buf on PATH"
        )
    return str(found)


def test_buf_lint_passes_with_each_exception_said_in_the_proto():
    lint = subprocess.run(
        [buf_binary(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert lint.returncode == 0, f"buf lint:\n{lint.stdout}{lint.stderr}"
    # Every exception is a comment in the proto that names its rule and says why above it.
    text = (ROOT / "proto/paykit/v1/payment.proto").read_text().splitlines()
    ignores = [i for i, line in enumerate(text) if "buf:lint:ignore" in line]
    assert ignores, "no exception is expected to vanish silently: update this test if it did"
    for i in ignores:
        assert text[i - 1].strip().startswith("//") and len(text[i - 1]) > 20, text[i]


def test_buf_lint_finds_what_the_rules_forbid(tmp_path):
    """The check can fail: a proto with a shared request type and no Service suffix is refused."""
    (tmp_path / "buf.yaml").write_text((ROOT / "buf.yaml").read_text())
    folder = tmp_path / "proto/demo/v1"
    folder.mkdir(parents=True)
    (folder / "demo.proto").write_text(
        'syntax = "proto3";\npackage demo.v1;\nservice Demo {\n'
        "  rpc A(Same) returns (Same);\n  rpc B(Same) returns (Same);\n}\nmessage Same {}\n"
    )
    lint = subprocess.run(
        [buf_binary(), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert lint.returncode != 0
    assert 'Service name "Demo" should be suffixed with "Service"' in lint.stdout


def test_go_and_java_authors_get_package_options():
    from paykit.v1 import payment_pb2

    options = payment_pb2.DESCRIPTOR.GetOptions()
    path, _, go_name = options.go_package.partition(";")
    assert path.endswith("/paykit/v1") and go_name == "paykitv1"
    assert options.java_package.endswith(".paykit.v1") and options.java_multiple_files
    assert payment_pb2.DESCRIPTOR.package == "paykit.v1"  # the wire package stays
