"""docs/cli.md is generated from click and must match the commands as they are."""
from pathlib import Path

from a2qflow.cli_docs import reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_current():
    assert DOC.read_text() == reference(), "docs/cli.md is stale: python -m a2qflow.cli_docs > docs/cli.md"


def test_cli_reference_covers_every_command_and_option():
    from a2qflow.cli import main

    text = DOC.read_text()
    for name, command in main.commands.items():
        assert f"## `a2qflow {name}`" in text
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in text, (name, opt)
