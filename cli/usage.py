"""How `iacrun COMMAND -h` reads: usage lines and argument rows the way click users expect.

Typer's own rendering shows required arguments as `{file}` and types as `<list[str]>`; ours says
`FILE`, `[ARGS]...` and `RUN...`, and every option shows its metavar (`--gpu SPEC`). Only the
help output changes here, never parsing.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


def argument_usage(param: Any) -> str:
    """`FILE`, `[FILE]`, `RUN...` or `[ARGS]...` for one positional argument."""
    name = str(param.metavar or param.name or "ARG").upper().strip("[].")
    shown = name if param.required else f"[{name}]"
    return shown + "..." if param.nargs != 1 else shown


class Command(TyperCommand):
    """A typer command whose usage line and argument rows name arguments plainly."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(argument_usage(param))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                arguments.append((argument_usage(param), getattr(param, "help", None) or ""))
            else:
                record = param.get_help_record(ctx)
                if record is not None:
                    options.append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
