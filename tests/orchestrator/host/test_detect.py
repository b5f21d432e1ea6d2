"""Host detection: parsing as data, the script over a real sshd, and the cache's TTL."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.host.connect import connect
from iacrun.orchestrator.host.detect import (
    HostFacts,
    HostFactsCache,
    detect,
    parse_facts,
)
from iacrun.orchestrator.host.gpus import gpu_model_name, parse_nvidia_smi
from iacrun.orchestrator.offers.model import Gpu, InstanceResources
from tests.orchestrator.host.sshd import Sshd

#: the detection script's output on a real GPU machine (one H200), captured verbatim
H200_OUTPUT = """\
home=/root
cpus=16
arch=x86_64
mem_kb=131981020
disk_kb=67091656
python3=/opt/torch/.venv/bin/python3
gpu=0, NVIDIA H200, 143771
"""

EIGHT_H100_ARM = (
    "home=/home/ubuntu\ncpus=64\narch=aarch64\nmem_kb=527958016\ndisk_kb=\npython3=\n"
    + "".join(f"gpu={i}, NVIDIA H100 80GB HBM3, 81559\n" for i in (3, 0, 1, 2, 4, 5, 6, 7))
)


def test_parse_a_real_gpu_host() -> None:
    facts = parse_facts(H200_OUTPUT, label="h200", now=100.0)
    assert facts == HostFacts(
        resources=InstanceResources(
            cpus=16,
            memory_gb=125.87,
            gpus=(Gpu(name="H200", memory_gb=140),),
            disk_gb=63.98,
            cpu_arch="x86",
        ),
        home="/root",
        python3="/opt/torch/.venv/bin/python3",
        detected_at=100.0,
    )
    assert facts.resources.render() == "16xCPU, 125.9GB, 1xH200 (140GB), 64GB disk"


def test_parse_many_gpus_in_index_order_arm_no_python_no_df() -> None:
    facts = parse_facts(EIGHT_H100_ARM, label="big")
    assert facts.resources.gpus == (Gpu(name="H100", memory_gb=80),) * 8
    assert facts.resources.cpu_arch == "arm"
    assert facts.resources.disk_gb is None
    assert facts.python3 is None


def test_parse_skips_a_gpu_that_reports_na_and_refuses_garbage() -> None:
    text = H200_OUTPUT + "gpu=1, NVIDIA H200, [N/A]\n"
    assert len(parse_facts(text, label="x").resources.gpus) == 1
    with pytest.raises(BackendError, match="cannot detect the resources of box: unexpected"):
        parse_facts("Welcome to the message of the day\n", label="box")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H200", "H200"),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "RTX4090"),
        ("NVIDIA RTX A6000", "A6000"),
        ("Quadro RTX 8000", "RTX8000"),
        ("NVIDIA GeForce GTX 1080 Ti", "GTX1080"),
    ],
)
def test_gpu_names_match_what_task_files_say(raw: str, name: str) -> None:
    assert gpu_model_name(raw) == name


@pytest.mark.sshd
def test_detect_over_ssh_finds_this_machine(sshd: Sshd) -> None:
    async def main() -> HostFacts:
        transport = await connect(sshd.host())
        try:
            return await detect(transport, label="loopback")
        finally:
            await transport.close()

    facts = asyncio.run(main())
    res = facts.resources
    assert res.cpus == len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    assert res.memory_gb == round(mem_kb / 1024**2, 2)
    assert res.disk_gb is not None
    assert abs(res.disk_gb - shutil.disk_usage(sshd.login_home).free / 1024**3) < 1.0
    assert facts.home == str(sshd.login_home)  # the session's HOME (the test sshd sets it)
    assert facts.python3 is not None
    assert res.gpus == () if shutil.which("nvidia-smi") is None else len(res.gpus) > 0


def test_cache_is_fresh_for_its_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    cache = HostFactsCache(tmp_path / "ssh-hosts.json", ttl=60, clock=lambda: now[0])
    facts = parse_facts(H200_OUTPUT, label="h", now=1000.0)
    assert cache.get("u@h:22") is None
    cache.put("u@h:22", facts)
    now[0] = 1059.0
    assert cache.get("u@h:22") == facts
    assert HostFactsCache(tmp_path / "ssh-hosts.json", ttl=60, clock=lambda: now[0]).get("u@h:22")
    now[0] = 1061.0
    assert cache.get("u@h:22") is None
    assert cache.get("u@h:22", stale_ok=True) == facts
    cache.forget("u@h:22")
    assert cache.get("u@h:22", stale_ok=True) is None


def test_cache_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "ssh-hosts.json"
    path.write_text("{not json")
    cache = HostFactsCache(path)
    assert cache.get("k") is None
    cache.put("k", parse_facts(H200_OUTPUT, label="h"))
    assert cache.get("k") is not None


def test_this_machine_and_ssh_hosts_read_nvidia_smi_alike() -> None:
    """The local backend parses the same query with the same code."""
    gpus = parse_nvidia_smi("1, NVIDIA A100-SXM4-80GB, 81920\n0, NVIDIA H100 80GB HBM3, 81559\n")
    assert gpus == (Gpu(name="H100", memory_gb=80), Gpu(name="A100", memory_gb=80))


def test_supervisor_threads_of_one_server_share_the_cache(tmp_path: Path) -> None:
    # a server supervises runs in threads of one process: each provisioning an ssh host writes
    # its facts at the same time; none fails, and none's entry is lost
    import threading

    facts = parse_facts(H200_OUTPUT, label="h")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(worker: int) -> None:
        cache = HostFactsCache(tmp_path / "ssh-hosts.json")
        start.wait()
        try:
            for i in range(20):
                cache.put(f"u@h{worker}-{i}:22", facts)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cache = HostFactsCache(tmp_path / "ssh-hosts.json")
    missing = [(w, i) for w in range(8) for i in range(20) if cache.get(f"u@h{w}-{i}:22") is None]
    assert missing == []
