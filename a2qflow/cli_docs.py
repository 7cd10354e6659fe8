"""docs/cli.md, generated from the click commands themselves, so that the reference and
`--help` cannot drift apart (tests/test_cli_docs.py checks the file is current).

    python -m a2qflow.cli_docs > docs/cli.md
"""
from __future__ import annotations

import click

from a2qflow.cli import main


def _option_rows(command: click.Command, ctx: click.Context) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        if "--help" in getattr(param, "opts", ()):
            continue
        record = param.get_help_record(ctx)
        if record is None:   # arguments
            rows.append(f"| `{param.human_readable_name}` | argument{' (required)' if param.required else ''} |")
            continue
        names, text = (" ".join(part.split()).replace("|", "\\|") for part in record)   # a pipe ends a cell
        rows.append(f"| `{names}` | {text} |")
    return rows


def reference() -> str:
    ctx = click.Context(main, info_name="a2qflow")
    lines = ["# a2qflow command line", "",
             "Generated from the commands' own help by `python -m a2qflow.cli_docs > docs/cli.md`; "
             "`a2qflow COMMAND --help` shows the same.", "",
             " ".join(main.help.split()), "",
             "Exit codes: 0 done, 1 refused or failed (one line naming what is wrong), 2 usage error, "
             "130 interrupted (Ctrl-C, SIGTERM). `a2qflow --debug COMMAND ...` shows tracebacks.", ""]
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx)
        lines += [f"## `a2qflow {name}`", "", " ".join((command.help or "").split()), "",
                  "```", command.get_usage(sub), "```", "", "| option | meaning |", "|---|---|"]
        lines += _option_rows(command, sub) + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
