"""The committed stubs in paykit/v1 are what `make proto` makes from proto/ today."""

import subprocess
import sys
from pathlib import Path

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
