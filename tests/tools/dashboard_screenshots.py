"""Screenshots of the dashboard's pages for the README, from a real server with a seeded
registry (runs of a few users and backends over 30 days, one real run on the local backend with
a coloured log, a schedule, and a leaked stack when the pulumi CLI is on PATH).

    PATH=/path/to/pulumi/bin:$PATH .venv/bin/python -m tests.tools.dashboard_screenshots [docs/img]
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from iacrun.client import Client
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.orchestrator.paths import home_tag
from iacrun.orchestrator.registry import Registry
from tests.bench.bench_dashboard import ADMIN
from tests.server.conftest import start_server, stop_server

OFFERS = [
    ("aws", "us-east-1", "g5.xlarge", 4, 16, "A10G", 24, 1.006),
    ("aws", "us-west-2", "p4d.24xlarge", 96, 1152, "A100", 40, 32.77),
    ("azure", "eastus", "Standard_NC24ads_A100_v4", 24, 220, "A100", 80, 3.673),
    ("aws", "eu-west-1", "g6.2xlarge", 8, 32, "L4", 24, 0.978),
]
USERS = ["alice", "bob", "carol", "ci"]


def seed(registry: Registry, now: float) -> None:
    rng = random.Random(7)
    spec = {"run_name": None, "config_path": "", "repo_dir": "", "working_dir": ".",
            "image": None, "python": None, "commands": ["python train.py"], "env": {},
            "ports": [], "requirements": {}, "retry": None, "max_duration": None,
            "stop_duration": 15}  # fmt: skip
    with registry.db.transaction() as db:
        for i in range(60):
            backend, region, itype, cpus, mem, gpu, gmem, price = rng.choice(OFFERS)
            spot = rng.random() < 0.3
            offer = {"backend": backend, "region": region, "instance_type": itype,
                     "resources": {"cpus": cpus, "memory_gb": mem,
                                   "gpus": [{"name": gpu, "memory_gb": gmem}]},
                     "spot": spot, "price": price}  # fmt: skip
            start = now - rng.uniform(0.5, 29) * 86400
            length = rng.uniform(0.2, 6) * 3600
            status = rng.choice(["done", "done", "done", "failed", "terminated"])
            reason = {"failed": "exit code 1", "terminated": "stopped by alice"}.get(status)
            db.execute(
                "INSERT INTO runs (name, status, reason, backend, region, instance_type, spot, "
                "price, offer, spec, submitted_at, started_at, finished_at, submitted_by, "
                "local_dir, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"{rng.choice(['train', 'eval', 'sweep', 'finetune'])}-{i}", status, reason,
                 backend, region, itype, int(spot), price, json.dumps(offer), json.dumps(spec),
                 start - 60, start, start + length, rng.choice(USERS), f"/x/{i}",
                 {"done": 0, "failed": 1}.get(status)),
            )  # fmt: skip


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img").resolve()
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="iacrun-shots-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "IACRUN_SERVER_ADMIN_TOKEN": ADMIN, "HOME": tmp}
        env.pop("IACRUN_DATABASE_URL", None)
        engine = None
        try:
            from tests.stacks.engine.support import OFFLINE_ENV, ensure_pulumi

            if ensure_pulumi() is None:
                import pulumi

                from iacrun.stacks.engine import StackEngine

                engine = StackEngine(home, env=OFFLINE_ENV, cancel_grace=5)
                engine.up(f"sweep-12-31-{home_tag(home)}", lambda: pulumi.export("n", 1))
                env.update(OFFLINE_ENV)
        except Exception as exc:  # screenshots without the stack then
            print(f"no leaked stack in the screenshots: {exc}")
        server = start_server(home, env)
        try:
            registry = Registry(home / "registry.db")
            seed(registry, time.time())
            registry.close()
            project = Path(tmp) / "project"
            project.mkdir()
            (project / "task.dstack.yml").write_text(
                "type: task\nname: train-demo\nresources:\n  cpu: 1..\ncommands:\n"
                "  - echo 'epoch 1/3'\n"
                "  - printf '\\033[32mloss 0.912\\033[0m  \\033[33macc 0.61\\033[0m\\n'\n"
                "  - echo 'epoch 2/3'\n"
                "  - printf '\\033[32mloss 0.544\\033[0m  \\033[33macc 0.78\\033[0m\\n'\n"
                "  - sleep 600\n"
            )
            nightly = Path(tmp) / "nightly"
            nightly.mkdir()
            (nightly / "task.dstack.yml").write_text(
                "type: task\nname: nightly-eval\ncommands:\n  - echo eval\n"
                "schedule:\n  cron: ['0 3 * * *', '30 12 * * 1-5']\n"
            )
            with Client(server.url, ADMIN) as client:
                scheduled = build_run_spec(nightly / "task.dstack.yml", Overrides())
                client.schedule(scheduled, client.upload(scheduled))
                client.submit(build_run_spec(project / "task.dstack.yml", Overrides()))
                try:
                    time.sleep(4)
                    shots(out, server.url)
                finally:  # its job sleeps 600 s: never left behind, even by a failed shot
                    client.stop("train-demo")
        finally:
            stop_server(server)
            if engine is not None:
                for left in engine.list_stacks():
                    engine.destroy(left.name, force=True, timeout=120)


def shots(out: Path, url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/signin")
        page.screenshot(path=str(out / "dashboard-signin.png"))
        page.get_by_label("API token").fill(ADMIN)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{url}/runs")
        for name, path in [
            ("runs", "/runs"),
            ("run", "/runs/train-demo"),
            ("schedules", "/schedules"),
            ("offers", "/offers?gpu=A100&backend=aws,azure"),
            ("stacks", "/stacks"),
            ("cost", "/cost"),
            ("tokens", "/tokens"),
            ("users", "/users"),
        ]:
            page.goto(f"{url}{path}")
            page.wait_for_timeout(1500)
            page.screenshot(
                path=str(out / f"dashboard-{name}.png"), full_page=name not in ("run", "runs")
            )
            print(f"docs/img/dashboard-{name}.png")
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.context.add_cookies([{"name": "iacrun_session", "value": ADMIN, "url": url}])
        phone.goto(f"{url}/runs")
        phone.screenshot(path=str(out / "dashboard-runs-phone.png"))
        browser.close()


if __name__ == "__main__":
    main()
