"""What cloud-init and systemd do at a cloud VM's boot, as one bash script for the stand-in VM.

``boot_script(spec, layout)`` takes the run's real cloud-init (``stacks/cloudinit.py``: the files it
writes and its units' contract) rendered for a `VmLayout` rooted in the stand-in's folder, and
plays it without cloud-init or systemd:

    write_files        every `vm_files` entry, with its mode
    bootcmd            the first-boot stamp (the self-destruct timer is systemd's: not played)
    runcmd             iacrun-setup.service started in the background, then `vm.ready`
    iacrun-job.path    wait for `code.ready`
    iacrun-job.service after the setup ended: `code.ready` → `code.started`, then
                       `python3 runner.py run RUN_DIR`, and `runner.exit` as ExecStopPost writes it
"""

from __future__ import annotations

import base64
import shlex

from iacrun.stacks.cloudinit import VmLayout, vm_files
from iacrun.stacks.spec import StackSpec


def boot_script(spec: StackSpec, layout: VmLayout) -> str:
    q = shlex.quote
    run_dir = layout.run_dir
    lines = [
        "#!/bin/bash",
        f"# stand-in boot of run {spec.run_name}: cloud-init and systemd, played by bash",
        "set -u",
        f"mkdir -p {q(layout.root)}",
        f"test -s {q(layout.first_boot)} || date +%s > {q(layout.first_boot)}",
    ]
    for vm_file in vm_files(spec, layout):
        data = base64.b64encode(vm_file.content.encode()).decode()
        lines += [
            f'mkdir -p "$(dirname {q(vm_file.path)})"',
            f"echo {data} | base64 -d > {q(vm_file.path)}",
            f"chmod {vm_file.mode:o} {q(vm_file.path)}",
        ]
    lines += [
        f"{q(layout.setup)} > {q(run_dir)}/setup.out 2>&1 &",
        "setup=$!",
        f"touch {q(run_dir)}/vm.ready",
        f"while [ ! -e {q(run_dir)}/code.ready ]; do sleep 0.1; done",
        'wait "$setup" || exit 1',
        f"mv -f {q(run_dir)}/code.ready {q(run_dir)}/code.started",
        f"cd {q(run_dir)}",
        f"{q(layout.python)} {q(run_dir)}/runner.py run {q(run_dir)}",
        "code=$?",
        f'echo "exited $code" > {q(run_dir)}/runner.exit',
    ]
    return "\n".join(lines) + "\n"
