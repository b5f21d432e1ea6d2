"""The `ssh` backend against a real sshd: offers, unreachable hosts, busy hosts, GPU splits."""

from __future__ import annotations

import os
import posixpath
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.backends.ssh import SSHBackend, host_key
from iacrun.orchestrator.errors import CapacityError, ConfigError
from iacrun.orchestrator.host.detect import HostFacts, HostFactsCache
from iacrun.orchestrator.host.sshconfig import SSHConfigEntries
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.models.settings import SSHHostSettings, SSHSettings
from iacrun.orchestrator.offers.model import Gpu, InstanceResources, Offer
from iacrun.orchestrator.paths import home_tag
from iacrun.orchestrator.registry import Registry, RunRecord
from tests.orchestrator.host.sshd import Sshd, free_port, keygen

pytestmark = pytest.mark.sshd

SMALL = {"cpu": "1..", "memory": "0.1GB.."}


def requirements(**resources: Any) -> Requirements:
    return Requirements(resources=ResourcesSpec.model_validate({**SMALL, **resources}))


class World:
    """A backend over the given hosts, with its own registry, cache and ssh config."""

    def __init__(self, tmp_path: Path, hosts: list[SSHHostSettings]) -> None:
        self.registry = Registry(tmp_path / "registry.db")
        self.cache = HostFactsCache(tmp_path / "ssh-hosts.json")
        self.ssh_config = SSHConfigEntries(iacrun_dir=tmp_path / "iacrun", home=tmp_path / "home")
        self.runs_root = tmp_path / "runs"
        self.home = tmp_path / "iacrun-home"
        self.backend = SSHBackend(
            SSHSettings(hosts=hosts),
            home=self.home,
            registry=self.registry,
            cache=self.cache,
            ssh_config=self.ssh_config,
            probe_seconds=1.0,
            connect_seconds=1.0,
        )

    def run(self, name: str, **resources: Any) -> RunRecord:
        spec = {"requirements": requirements(**resources).model_dump(mode="json")}
        return self.registry.create(name, spec, self.runs_root)

    def holding(self, name: str, label: str, gpus: str | None) -> RunRecord:
        run = self.run(name)
        host = {"kind": "ssh", "run_dir": "/r", "gpus": gpus}
        return self.registry.update(
            run.id, status="running", backend="ssh", instance_type=label, host=host
        )

    def offers(self, **resources: Any) -> dict[str, Offer]:
        return {o.instance_type: o for o in self.backend.offers(requirements(**resources))}


def test_offers_reachable_and_unreachable_hosts_side_by_side(sshd: Sshd, tmp_path: Path) -> None:
    dead = SSHHostSettings(name="dead", host="127.0.0.1", port=free_port(), host_key=sshd.host_key)
    world = World(tmp_path, [sshd.host_settings(name="loop"), dead])
    offers = world.offers()
    loop = offers["loop"]
    assert loop.available and loop.price == 0 and loop.backend == "ssh" and loop.region == "loop"
    assert loop.resources.cpus == len(os.sched_getaffinity(0))
    assert loop.resources.gpus == ()
    assert not offers["dead"].available
    assert offers["dead"].note == "unreachable: connection refused"
    # detection was cached for the next plan
    assert world.cache.get(host_key(sshd.host_settings())) is not None


def test_changed_host_key_shows_as_unavailable(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    world = World(tmp_path, [sshd.host_settings(name="moved", host_key=other)])
    offer = world.offers()["moved"]
    assert not offer.available
    assert offer.note is not None and "host key of" in offer.note and "changed" in offer.note


def test_hosts_that_do_not_meet_the_task_are_left_out(sshd: Sshd, tmp_path: Path) -> None:
    world = World(tmp_path, [sshd.host_settings(name="loop")])
    assert world.offers(gpu="1") == {}
    assert world.offers(cpu="4096..") == {}


def test_duplicate_names_are_a_config_error(sshd: Sshd) -> None:
    with pytest.raises(ConfigError, match="two ssh hosts are named 'a'"):
        SSHBackend(SSHSettings(hosts=[sshd.host_settings(name="a"), sshd.host_settings(name="a")]))


def test_provision_and_terminate(sshd: Sshd, tmp_path: Path) -> None:
    world = World(tmp_path, [sshd.host_settings(name="loop")])
    offer = world.offers()["loop"]
    run = world.run("first")
    said: list[str] = []
    host = world.backend.provision(run, offer, said.append)
    assert host.kind == "ssh" and host.address == "127.0.0.1" and host.port == sshd.port
    tag = home_tag(world.home)
    assert host.run_dir == f"{sshd.login_home}/.iacrun/runs/first-{run.id}-{tag}"
    assert host.host_key == sshd.host_key and host.gpus is None
    assert said[0].startswith("connecting to loop")
    assert world.ssh_config.names() == ["first"]
    world.backend.terminate(run)
    world.backend.terminate(run)  # idempotent
    assert world.ssh_config.names() == []


@pytest.mark.parametrize("started", ["never", "runner", "recorded"])
def test_teardown_removes_the_host_folder_of_a_job_that_never_started(
    sshd: Sshd, tmp_path: Path, started: str
) -> None:
    """The code was being shipped when the run ended (its supervisor killed midway): its folder
    on the host goes at teardown. Once a runner was started there (its pid), or the job is
    recorded as started, the folder stays: the log and state of a job are kept."""
    world = World(tmp_path, [sshd.host_settings(name="loop")])
    run = world.run(f"ship-{started}")
    host = world.backend.provision(run, world.offers()["loop"], lambda _: None)
    folder = Path(host.run_dir)
    try:
        (folder / "code").mkdir(parents=True)
        (folder / "code" / "half.tmp").write_text("part of a file")
        if started == "runner":
            (folder / "pid").write_text("1\n")
        update: dict[str, Any] = {"host": host}
        if started == "recorded":
            update["started_at"] = time.time()
        world.backend.terminate(world.registry.update(run.id, **update))
        assert folder.exists() == (started != "never")
        assert world.ssh_config.names() == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_one_run_per_host(sshd: Sshd, tmp_path: Path) -> None:
    world = World(tmp_path, [sshd.host_settings(name="loop")])
    world.holding("holder", "loop", gpus=None)
    offer = world.offers()["loop"]
    assert not offer.available and offer.note == "busy with holder"
    with pytest.raises(CapacityError, match="loop is busy with holder"):
        world.backend.provision(world.run("second"), offer, lambda _: None)


def _four_gpus(world: World, sshd: Sshd) -> None:
    """Seed the cache: detection found four A100s (this machine has none to find)."""
    facts = HostFacts(
        resources=InstanceResources(
            cpus=32, memory_gb=256, gpus=(Gpu(name="A100", memory_gb=80),) * 4, disk_gb=500
        ),
        home=str(Path.home()),
        python3="/usr/bin/python3",
        detected_at=1e12,  # fresh for any TTL
    )
    world.cache.put(host_key(sshd.host_settings()), facts)


def test_gpus_are_split_by_count(sshd: Sshd, tmp_path: Path) -> None:
    world = World(tmp_path, [sshd.host_settings(name="gpu")])
    _four_gpus(world, sshd)

    # a free host: a task taking all its GPUs sees them all, one taking part gets its own
    assert world.backend.provision(world.run("all"), world.offers()["gpu"], print).gpus is None
    world.registry.update(world.registry.get("all").id, status="done")
    one = world.backend.provision(world.run("one", gpu="A100:1"), world.offers()["gpu"], print)
    assert one.gpus == "0"
    world.registry.update(world.registry.get("one").id, status="done")

    world.holding("first", "gpu", gpus="0,1")
    offer = world.offers(gpu="A100:2")["gpu"]
    assert offer.available and len(offer.resources.gpus) == 2
    host = world.backend.provision(world.run("second", gpu="A100:2"), offer, print)
    assert host.gpus == "2,3"

    # all four are taken now: every task finds the host busy
    world.holding("third", "gpu", gpus="2,3")
    for resources in ({"gpu": "A100:1"}, {}):
        offer = world.offers(**resources)["gpu"]
        assert not offer.available and offer.note == "busy with third, first"
    with pytest.raises(CapacityError, match="gpu is busy with third, first"):
        world.backend.provision(world.run("fourth", gpu="A100:1"), offer, print)


def test_gpu_tasks_wait_for_a_run_holding_the_whole_host(sshd: Sshd, tmp_path: Path) -> None:
    world = World(tmp_path, [sshd.host_settings(name="gpu")])
    _four_gpus(world, sshd)
    world.holding("whole", "gpu", gpus=None)
    offer = world.offers(gpu="1")["gpu"]
    assert not offer.available and offer.note == "busy with whole"
    assert "gpu" not in world.offers(gpu="8")  # more than the host has: not offered at all


def test_a_host_gone_between_plan_and_provision_lets_the_run_move_on(
    own_sshd: Sshd, tmp_path: Path
) -> None:
    world = World(tmp_path, [own_sshd.host_settings(name="flaky")])
    offer = world.offers()["flaky"]
    assert offer.available
    own_sshd.stop()
    with pytest.raises(CapacityError, match="flaky cannot be reached now"):
        world.backend.provision(world.run("late"), offer, lambda _: None)


# ----------------------------------------------------------------------------- old run folders


def fake_run_dir(root: Path, name: str, status: str, age_s: float) -> Path:
    """A run folder as the runner leaves it, its state written `age_s` seconds ago."""
    folder = root / name
    (folder / "code").mkdir(parents=True)
    (folder / "log").write_text("a line\n")
    state = folder / "state.json"
    state.write_text(f'{{"status": "{status}"}}')
    then = time.time() - age_s
    os.utime(state, (then, then))
    return folder


def unstarted_run_dir(root: Path, name: str, age_s: float, *files: str) -> Path:
    """A run folder whose code was being shipped (no runner state): `files` in it besides."""
    folder = root / name
    (folder / "code").mkdir(parents=True)
    for file in files:
        (folder / file).write_text("")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_two_homes_runs_of_one_name_and_id_get_folders_of_their_own(
    sshd: Sshd, tmp_path: Path
) -> None:
    """A laptop and a team's server (two homes, two registries) that both send their first run
    `train` to one host: each run has a folder of its own there, so neither ships into, reads the
    log of, or cleans up the other's."""
    laptop = World(tmp_path / "laptop", [sshd.host_settings(name="box")])
    server = World(tmp_path / "server", [sshd.host_settings(name="box")])
    folders = []
    for world in (laptop, server):
        run = world.run("train")
        assert run.id == 1
        host = world.backend.provision(run, world.offers()["box"], lambda _: None)
        folders.append(host.run_dir)
        world.backend.terminate(run)
    assert folders[0] != folders[1]
    assert [posixpath.basename(f).rsplit("-", 1)[0] for f in folders] == ["train-1"] * 2


def test_old_run_folders_of_final_runs_are_removed_by_the_next_run(
    sshd: Sshd, tmp_path: Path
) -> None:
    root = sshd.login_home / ".iacrun" / "runs"  # where the sshd sessions' runs land
    tag = f"cleanup{os.getpid()}"
    made = [
        fake_run_dir(root, f"{tag}-old-1", "done", 25 * 3600),
        fake_run_dir(root, f"{tag}-failed-2", "failed", 3 * 86400),
        fake_run_dir(root, f"{tag}-recent-3", "done", 3600),
        fake_run_dir(root, f"{tag}-live-4", "running", 30 * 86400),
        # never started: shipped partly long ago, being shipped now, handed to its runner
        unstarted_run_dir(root, f"{tag}-unstarted-7", 25 * 3600),
        unstarted_run_dir(root, f"{tag}-shipping-8", 60),
        unstarted_run_dir(root, f"{tag}-ready-9", 25 * 3600, "code.ready"),
    ]
    outside = tmp_path / "elsewhere"
    fake_run_dir(outside, f"{tag}-outside-5", "done", 30 * 86400)
    (root / f"{tag}-link-6").symlink_to(outside / f"{tag}-outside-5")
    world = World(tmp_path, [sshd.host_settings(name="loop")])
    lines: list[str] = []
    run = world.run("next")
    host = None
    try:
        host = world.backend.provision(run, world.offers()["loop"], lines.append)
        left = {p.name for p in root.iterdir() if p.name.startswith(tag)}
        kept = {f"{tag}-recent-3", f"{tag}-live-4", f"{tag}-link-6"}
        assert left == kept | {f"{tag}-shipping-8", f"{tag}-ready-9"}
        assert (outside / f"{tag}-outside-5" / "log").exists()  # never through a link
        removed = [line for line in lines if "removed" in line]
        assert len(removed) == 1, lines
        assert f"{tag}-old-1" in removed[0] and f"{tag}-failed-2" in removed[0]
        assert f"{tag}-unstarted-7" in removed[0]
        assert "that ended more than 1d ago" in removed[0]  # the default keep time
    finally:
        world.backend.terminate(run)
        for folder in [*made, root / f"{tag}-link-6"]:
            if folder.is_symlink():
                folder.unlink()
            elif folder.exists():
                shutil.rmtree(folder)
        if host is not None:
            shutil.rmtree(host.run_dir, ignore_errors=True)


def test_keep_run_dirs_per_host_wins_over_the_ssh_section(tmp_path: Path) -> None:
    settings = SSHSettings(
        keep_run_dirs="2d",
        hosts=[
            SSHHostSettings(host="a", keep_run_dirs="1h"),
            SSHHostSettings(host="b"),
        ],
    )
    assert [settings.keep_for(h) for h in settings.hosts] == [3600, 2 * 86400]
    assert SSHSettings().keep_run_dirs == 86400
    with pytest.raises(ValueError):
        SSHSettings(keep_run_dirs="soon")
