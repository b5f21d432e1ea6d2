"""`${{ run.args }}` with hostile arguments in every position users write it: nothing they
contain is ever run, and the job sees exactly the arguments (models/runargs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.models.runspec import interpolate_commands
from tests.orchestrator.runner.test_runner import start, wait_final

#: what the job prints: each word it got, bracketed, one per line
PRINT = "printf '[%s]\\n'"

#: (command, the words the job gets for arguments A): the eight positions
POSITIONS: list[tuple[str, object]] = [
    ("unquoted", (f"{PRINT} ${{{{ run.args }}}}", lambda a: a)),
    ("double", (f'{PRINT} "${{{{ run.args }}}}"', lambda a: [" ".join(a)])),
    ("single", (f"{PRINT} '${{{{ run.args }}}}'", lambda a: [" ".join(a)])),
    (
        "in-double",
        (f'{PRINT} "pre ${{{{ run.args }}}} post"', lambda a: [f"pre {' '.join(a)} post"]),
    ),
    (
        "in-single",
        (f"{PRINT} 'pre ${{{{ run.args }}}} post'", lambda a: [f"pre {' '.join(a)} post"]),
    ),
    ("in-word", (f"{PRINT} pre${{{{ run.args }}}}post", lambda a: _glued("pre", a, "post"))),
    (
        "several",
        (
            f"{PRINT} ${{{{ run.args }}}} \"${{{{run.args}}}}\" '${{{{ run.args }}}}'",
            lambda a: [*a, " ".join(a), " ".join(a)],
        ),
    ),
    ("substitution", (f'{PRINT} "$(echo "${{{{ run.args }}}}")"', lambda a: [" ".join(a)])),
    ("ansi-c", (f"{PRINT} $'pre\\t${{{{ run.args }}}}'", lambda a: [f"pre\t{' '.join(a)}"])),
]


def _glued(pre: str, args: list[str], post: str) -> list[str]:
    if not args:
        return [pre + post]
    words = list(args)
    words[0] = pre + words[0]
    words[-1] = words[-1] + post
    return words


def hostile(mark: Path) -> list[str]:
    return [
        f"$(touch {mark}-dollar)",
        f"'; touch {mark}-single; '",
        f'"; touch {mark}-double; "',
        f"`touch {mark}-tick`",
        f"a\ntouch {mark}-newline",
        f"$'\\x27; touch {mark}-ansi'",
        "--lr=0.1",
        "two words",
        "*",
    ]


@pytest.mark.parametrize(
    ("command", "expect"), [p[1] for p in POSITIONS], ids=[p[0] for p in POSITIONS]
)
def test_hostile_args_are_only_text(tmp_path: Path, command: str, expect: object) -> None:
    run_dir = tmp_path / "run"
    mark = tmp_path / "pwned"
    args = hostile(mark)
    commands = interpolate_commands([command], args, "task.dstack.yml")
    start(run_dir, commands=commands, args=args)
    state = wait_final(run_dir)
    log = (run_dir / "log").read_text()
    assert not list(tmp_path.glob("pwned*")), (commands, log)
    assert state["status"] == "done", (commands, log)
    words = expect(args)  # type: ignore[operator]
    printed = log.split("[iacrun] run done")[0]
    assert printed == "".join(f"[{w}]\n" for w in words), (commands, log)


def test_no_args_expand_to_nothing(tmp_path: Path) -> None:
    commands = interpolate_commands(
        [f"{PRINT} x ${{{{ run.args }}}}", f'{PRINT} "${{{{ run.args }}}}"'], [], "f"
    )
    start(tmp_path, commands=commands)
    wait_final(tmp_path)
    assert (tmp_path / "log").read_text().startswith("[x]\n[]\n")


def test_args_are_not_in_the_commands() -> None:
    secret = "--token=s3cr3t"
    commands = interpolate_commands(["python train.py ${{ run.args }}"], [secret], "f")
    assert secret not in "".join(commands)
    assert commands == ['python train.py "$@"']


def test_a_last_line_without_newline_stays_apart_from_the_runner_note(tmp_path: Path) -> None:
    start(tmp_path, commands=["printf 'no newline at the end'"])
    wait_final(tmp_path)
    assert (
        tmp_path / "log"
    ).read_text() == "no newline at the end\n[iacrun] run done: exited (0)\n"
