"""What a server's files and memory allow (issue 13, Low): databases and logs are their owner's
alone, and a burst of sign-ins cannot drive the gateway's memory up.

The findings: databases and logs were mode 0644; concurrent scrypt hashes drove the gateway
from 76 to 815 MB.
"""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import grpc

from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

CONCURRENT = 40
HASH_MIB = 19  # argon2id's memory per hash (paykit.gateway.users)
# Every sign-in of the burst is hashed: none is refused for the address's failures.
CLUSTER = {"gateway_args": ("--sign-in-peer-per-min", "1000")}


def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_burst_of_sign_ins_hashes_a_few_at_a_time(shared_cluster):
    pid = shared_cluster.procs["gateway"].popen.pid
    before = peak_rss_mib(pid)
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    with secure_channel(shared_cluster.gateway_address, tls, server_name=GATEWAY_CN) as channel:
        stub = pb_grpc.GatewayStub(channel)

        def attempt(i: int) -> str:
            try:
                stub.Authenticate(
                    pb.AuthenticateRequest(username=f"nobody{i}", password="wrong-password"),
                    timeout=60,
                )
            except grpc.RpcError as exc:
                return exc.code().name
            return "OK"

        with ThreadPoolExecutor(CONCURRENT) as pool:
            outcomes = list(pool.map(attempt, range(CONCURRENT)))
    assert outcomes == ["UNAUTHENTICATED"] * CONCURRENT  # every one was really hashed
    grown = peak_rss_mib(pid) - before
    # At most two hashes at once (2 x 19 MiB), with room for the allocator; 40 at once would
    # need 760 MiB.
    assert grown < 4 * HASH_MIB + 30, f"the gateway's peak memory grew by {grown:.0f} MiB"


def test_databases_and_logs_are_readable_by_their_owner_only(shared_cluster):
    seen = set()
    for proc in shared_cluster.procs.values():
        assert stat.S_IMODE(proc.data_dir.stat().st_mode) == 0o700, proc.data_dir
        for path in proc.data_dir.iterdir():
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
                seen.add(path.suffix)
    assert {".db", ".jsonl", ".db-wal"} <= seen  # the files that matter were looked at
