"""A LocalCluster removes the temporary folder it made when it stops (keep=True keeps it); a
folder the caller gave is never removed; a chaos run (lesson 15 reads its data after the run)
keeps its data in the state folder, where it says, not in the temp dir."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from paykit import LocalCluster
from paykit.core import config
from paykit.core.errors import InvalidInput
from paykit.lab import chaos


def test_a_cluster_removes_its_temp_folder_on_stop():
    cluster = LocalCluster(relays=False).start()
    try:
        folder = cluster.data_dir
        assert folder.name.startswith("paykit-cluster-")
        assert (folder / "BankA" / "BankA.db").exists()
    finally:
        cluster.stop()
    assert not folder.exists()


def test_keep_true_keeps_the_folder(tmp_path):
    with LocalCluster(relays=False, keep=True) as cluster:
        folder = cluster.data_dir
    try:
        assert (folder / "BankB" / "BankB.db").exists(), "keep=True keeps the databases"
    finally:
        shutil.rmtree(folder)


def test_a_folder_the_caller_gave_stays(tmp_path):
    with LocalCluster(relays=False, data_dir=tmp_path / "mine") as cluster:
        pass
    assert (cluster.data_dir / "gateway" / "gateway.db").exists()


def test_a_missing_seed_file_is_an_error_and_makes_no_folder(tmp_path):
    missing = tmp_path / "no-such-accounts.csv"
    with pytest.raises(InvalidInput, match="seed file .*no-such-accounts.csv not found"):
        LocalCluster(seed_csv=missing)


def test_a_chaos_run_keeps_its_data_in_the_state_folder_not_in_temp():
    def run():
        return chaos.run_chaos(
            seed=3,
            duration_s=1.0,
            faults=("kill",),
            fault_every_s=0.5,
            down_max_s=0.3,
            payers=1,
            accounts=2,
            progress=None,
        )

    report = run()
    folder = report.data_dir
    assert folder == config.state_dir() / "chaos" / "seed-3-kill", "kept where it says"
    assert (folder / "gateway" / "gateway.db").exists(), "the report reads its data after the run"
    assert not folder.is_relative_to(tempfile.gettempdir())
    (folder / "an-earlier-run").write_text("")
    assert run().data_dir == folder and not (folder / "an-earlier-run").exists(), "replaced"
