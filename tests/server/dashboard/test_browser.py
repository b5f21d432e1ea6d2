"""The dashboard in a real headless browser against a real `iacrun server`: sign in, watch a run
appear and change status without a reload, read its live log to the end (across a dropped
connection: no line lost or repeated), stop a run from its page, see a leaked stack flagged,
and be sent to sign in without a token."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.orchestrator.paths import home_tag
from tests.conftest import write_task
from tests.server.conftest import Server, start_server, stop_server, wait_for
from tests.server.dashboard.proxy import CuttingProxy

pytestmark = pytest.mark.slow


def spec_in(project: Path, text: str, name: str):  # type: ignore[no-untyped-def]
    write_task(project, text)
    return build_run_spec(project / "task.dstack.yml", Overrides(name=name))


def sign_in(page: Any, server: Server, then: str = "/runs") -> None:
    page.goto(f"{server.url}{then}")
    assert page.url.startswith(f"{server.url}/signin?next=")
    page.get_by_label("API token").fill(server.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}{then}")


def test_without_a_token_pages_send_to_sign_in(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/stacks")
    assert page.url == f"{server.url}/signin?next=/stacks"
    assert page.title() == "Sign in · iacrun"
    page.get_by_label("API token").fill("iacrun_wrong")
    page.keyboard.press("Enter")  # keyboard only
    assert page.get_by_role("alert").inner_text().startswith("That token is not valid")
    answer = page.request.get(f"{server.url}/runs.json")
    assert answer.status == 401
    page.get_by_label("API token").fill(server.admin_token)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/stacks")
    cookie = next(c for c in page.context.cookies() if c["name"] == "iacrun_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the page's scripts never see the token


def test_a_run_appears_changes_status_live_and_its_log_is_read_to_the_end(
    page: Any, server: Server, project: Path, request: pytest.FixtureRequest
) -> None:
    proxy = CuttingProxy(int(server.url.rsplit(":", 1)[1]))
    request.addfinalizer(proxy.close)
    through = Server(f"http://127.0.0.1:{proxy.port}", server.home, server.proc, server.admin_token)
    sign_in(page, through)
    assert page.locator("#run-rows tr").first.inner_text() == "No runs match."
    client = server.client()
    script = "for i in $(seq 1 400); do echo \"line $i $(printf '\\033[32mgreen\\033[0m')\"; done\n"
    # the second half of the log waits for the test, so the connection is cut while the run is
    # still writing whatever the machine's load (with a timed pause, a slow browser once read the
    # whole log before the cut and had nothing left to reconnect for)
    gate = project.parent / "gate"
    spec = spec_in(
        project,
        "commands:\n"
        "  - sleep 4\n"
        f"  - |\n    {script}"
        f"  - while [ ! -e {gate} ]; do sleep 0.1; done\n"
        "  - for i in $(seq 401 600); do echo line $i plain; sleep 0.01; done\n",
        "live-log",
    )
    client.submit(spec)
    row = page.locator("#run-rows tr", has_text="live-log")
    row.wait_for()  # appeared without a reload
    wait_for(lambda: "running" in row.inner_text(), 60)
    page.get_by_role("link", name="live-log").click()
    page.wait_for_url(f"{through.url}/runs/live-log")
    assert page.title() == "Run live-log · iacrun"
    log = page.locator("#log")
    # the network drops the stream's connection mid-log: the browser resumes by offset
    page.locator("#log-lines .l", has_text="line 400 green").wait_for(timeout=60_000)
    # the first screen comes from the plain GET of the log's tail; the stream opens after it
    wait_for(lambda: log.get_attribute("data-connections") == "1", 60)
    assert proxy.drop() >= 1
    wait_for(lambda: int(log.get_attribute("data-connections") or 0) >= 2, 60)  # it reconnected
    gate.touch()
    page.wait_for_selector("#log[data-ended='true']", timeout=90_000)
    lines = page.locator("#log-lines .l").all_inner_texts()
    expected = [f"line {i} green" for i in range(1, 401)] + [
        f"line {i} plain" for i in range(401, 601)
    ]
    assert lines[:-1] == expected
    assert lines[-1] == "[iacrun] run done: exited (0)"
    green = page.locator("#log-lines .l", has_text="line 7 green").locator("span.fg2")
    assert green.inner_text() == "green"  # the colour rendered, the escape codes gone
    assert "\x1b" not in "".join(lines) and "[32m" not in "".join(lines)
    assert page.locator("#log-state").inner_text() == "ended: done, exit code 0"
    wait_for(lambda: page.locator("#run-status").inner_text().strip() == "done", 30)
    assert page.locator("#run-exit").inner_text() == "0"
    assert page.locator("#stop-box").count() == 0


def test_a_run_is_stopped_from_its_page_after_a_confirmation(
    page: Any, server: Server, project: Path
) -> None:
    client = server.client()
    client.submit(spec_in(project, "commands:\n  - echo started\n  - sleep 600\n", "to-stop"))
    wait_for(lambda: client.get("to-stop").status == "running", 60)
    sign_in(page, server, "/runs/to-stop")
    page.locator("#log-lines .l", has_text="started").wait_for()
    dialogs: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        # the first time the user changes their mind; the second time they mean it
        if len(dialogs) == 1:
            dialog.dismiss()
        else:
            dialog.accept()

    page.on("dialog", answer)
    stop = page.get_by_role("button", name="Stop to-stop")
    stop.click()
    assert dialogs[0].startswith("Stop the run to-stop?")
    assert client.get("to-stop").status == "running"
    stop.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/runs/to-stop")
    wait_for(lambda: client.get("to-stop").status == "terminated", 60)
    assert client.get("to-stop").reason == "stopped by admin"
    page.wait_for_selector("#log[data-ended='true']", timeout=60_000)
    wait_for(lambda: "terminated" in page.locator("#run-status").inner_text(), 30)


def test_without_javascript_a_stop_is_asked_by_a_page_of_its_own(
    browser: Any, server: Server, project: Path
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        client = server.client()
        client.submit(spec_in(project, "commands:\n  - sleep 600\n", "no-script"))
        wait_for(lambda: client.get("no-script").status == "running", 60)
        sign_in(page, server, "/runs/no-script")
        page.get_by_role("button", name="Stop no-script").click()
        # no window.confirm without scripts: the server asks instead, and Cancel changes nothing
        assert page.title() == "Confirm · iacrun"
        assert page.locator("#question").inner_text().startswith("Stop the run no-script?")
        page.get_by_role("link", name="Cancel").click()
        page.wait_for_url(f"{server.url}/runs/no-script")
        assert client.get("no-script").status == "running"
        page.get_by_role("button", name="Stop no-script").click()
        page.get_by_role("button", name="Stop the run").click()
        page.wait_for_url(f"{server.url}/runs/no-script")
        wait_for(lambda: client.get("no-script").status == "terminated", 60)
        assert client.get("no-script").reason == "stopped by admin"
    finally:
        context.close()


def test_a_leaked_stack_is_flagged_in_red_with_a_destroy_button_for_an_admin(
    page: Any, tmp_path: Path, server_env: dict[str, str]
) -> None:
    from tests.stacks.engine.support import OFFLINE_ENV, ensure_pulumi

    reason = ensure_pulumi()
    if reason is not None:
        pytest.skip(reason)
    import pulumi

    from iacrun.stacks.engine import StackEngine

    home = tmp_path / "server-home"
    home.mkdir()
    engine = StackEngine(home, env=OFFLINE_ENV, cancel_grace=5)
    leak = f"old-leak-9-{home_tag(home)}"
    engine.up(leak, lambda: pulumi.export("n", 1))  # a stack of this home's, no run owns it
    env = {**server_env, **OFFLINE_ENV, "PATH": os.environ["PATH"]}
    server = start_server(home, env)
    try:
        sign_in(page, server, "/stacks")
        row = page.locator(f"tr[data-stack='{leak}']")
        assert "leak" in (row.get_attribute("class") or "")
        assert "LEAK: NO RUN" in row.inner_text()
        colour = row.locator(".status").evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(207, 34, 46)"  # red, beside the word
        assert page.get_by_role("alert").inner_text().startswith("1 leaked stack")
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Destroy {leak}").click()
        page.wait_for_url(f"{server.url}/stacks")
        assert page.locator(f"tr[data-stack='{leak}']").count() == 0
        assert engine.list_stacks() == []
    finally:
        stop_server(server)
        for left in engine.list_stacks():
            engine.destroy(left.name, force=True, timeout=120)


def test_every_page_is_keyboard_usable_with_a_title_and_fits_a_phone(
    browser: Any, server: Server
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, server)
        for path, title in (("/runs", "Runs"), ("/offers", "Offers"), ("/cost", "Cost")):
            page.goto(f"{server.url}{path}")
            assert page.title() == f"{title} · iacrun"
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone: {width}px"
        page.goto(f"{server.url}/runs")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"  # a visible focus
        labels = page.locator("form.filters label").all_inner_texts()
        assert [re.split(r"\s", t.strip())[0] for t in labels][:3] == ["Show", "Status", "Backend"]
    finally:
        context.close()


def test_a_long_log_draws_only_its_tail_until_earlier_lines_are_asked_for(
    page: Any, server: Server, project: Path
) -> None:
    client = server.client()
    pad = "x" * 90  # 6000 lines of ~100 bytes: more than one fetch of earlier bytes
    (project / "write.py").write_text(f"for i in range(1, 6001):\n    print(f'row {{i}} {pad}')\n")
    client.submit(spec_in(project, "commands:\n  - python3 write.py\n", "long"))
    wait_for(lambda: not client.get("long").active, 60)
    sign_in(page, server, "/runs/long")
    page.wait_for_selector("#log[data-ended='true']")
    shown = page.locator("#log-lines .l").all_inner_texts()
    assert len(shown) == 1500  # the tail only
    assert shown[-2:] == [f"row 6000 {pad}", "[iacrun] run done: exited (0)"]
    earlier = page.get_by_role("button", name="Show earlier lines")
    clicks = 0
    while earlier.is_visible():
        earlier.click()
        clicks += 1
        page.wait_for_function(
            "n => document.querySelectorAll('#log-lines .l').length > n", arg=len(shown)
        )
        shown = page.locator("#log-lines .l").all_inner_texts()
        assert clicks < 20
    assert clicks >= 2
    assert shown[:-1] == [f"row {i} {pad}" for i in range(1, 6001)]  # each once, in order


def test_a_schedule_shows_its_runs_live_and_is_stopped_after_a_confirmation(
    page: Any, tmp_path: Path, server_env: dict[str, str], project: Path
) -> None:
    from tests.server.dashboard.test_schedules_page import EVERY_MINUTE, START

    # the server's clock runs a minute every 4 s: the schedule's first run comes in seconds
    server = start_server(tmp_path / "home", {**server_env, "IACRUN_TEST_CLOCK": f"{START}x15"})
    try:
        client = server.client()
        spec = spec_in(project, EVERY_MINUTE, "tick")
        client.schedule(spec, client.upload(spec))
        sign_in(page, server, "/schedules")
        row = page.locator("#schedule-rows tr", has_text="tick")
        assert "* * * * *" in row.inner_text() and "none yet" in row.inner_text()
        run_link = row.get_by_role("link", name=re.compile(r"^tick-\d{12}$"))
        run_link.wait_for(timeout=90_000)  # appeared without a reload
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.get_by_role("button", name="Stop schedule tick").click()
        page.wait_for_url(f"{server.url}/schedules")
        assert dialogs and dialogs[0].startswith("Stop the schedule tick?")
        assert page.locator("#schedule-rows tr").first.inner_text().startswith("No active")
        assert client.get_schedule("tick").stopped_at is not None
    finally:
        stop_server(server)


def test_a_multi_mb_log_opens_at_its_tail_and_follows_it_without_a_seam(
    page: Any, server: Server, project: Path
) -> None:
    client = server.client()
    pad = "y" * 90  # 70000 lines of ~100 bytes: 7 MB, then more lines while the page is open
    (project / "write.py").write_text(
        f"for i in range(1, 70001):\n    print(f'row {{i}} {pad}')\n"
        "import sys, time\nsys.stdout.flush()\ntime.sleep(6)\n"
        "for i in range(70001, 70201):\n    print(f'row {i} after', flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    client.submit(spec_in(project, "commands:\n  - python3 write.py\n", "big"))
    headers = {"Authorization": f"Bearer {server.admin_token}"}

    def written() -> bool:
        tail = httpx.get(
            f"{server.url}/api/v1/runs/big/logs", params={"tail": 200}, headers=headers
        )
        return f"row 70000 {pad}\n".encode() in tail.content

    wait_for(written, 60)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/logs/stream" in r.url else None)
    sign_in(page, server, "/runs/big")
    page.locator("#log-lines .l", has_text=f"row 70000 {pad}").wait_for()
    # the stream is asked for once the tail is shown (Playwright delivers events while it waits)
    for _ in range(300):
        if streams:
            break
        page.wait_for_timeout(100)
    first = streams[0]
    assert "offset=0" not in first, first  # the page did not read the log from its start
    assert int(first.rsplit("offset=", 1)[1]) > 6_000_000
    page.wait_for_selector("#log[data-ended='true']", timeout=90_000)
    shown = page.locator("#log-lines .l").all_inner_texts()
    assert shown[-1] == "[iacrun] run done: exited (0)"
    numbers = [int(line.split()[1]) for line in shown[:-1]]
    # each line once, in order, whole (none starts mid-line), across the tail/stream seam
    assert numbers == list(range(numbers[0], 70201))
    assert all(re.fullmatch(rf"row \d+ ({pad}|after)", line) for line in shown[:-1])
    page.get_by_role("button", name="Show earlier lines").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#log-lines .l').length > n", arg=len(shown)
    )
    more = page.locator("#log-lines .l").all_inner_texts()
    earlier = [int(line.split()[1]) for line in more[:-1]]
    assert earlier == list(range(earlier[0], 70201)) and earlier[0] < numbers[0]
