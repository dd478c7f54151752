"""Every flag of `python -m d1sandbox` is documented in d1sandbox/README.md and in its --help."""

from __future__ import annotations

import argparse

import pytest

from d1sandbox.cli import parser_build
from d1sandbox.testing import PROJECT_ROOT

README = (PROJECT_ROOT / "d1sandbox" / "README.md").read_text()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = parser_build()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["keys", "serve", "feed", "verify"])
def test_every_flag_is_in_the_readme_and_has_help(command: str) -> None:
    subcommand = _subcommands()[command]
    flags = [
        option
        for action in subcommand._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]

    assert flags
    undocumented = [flag for flag in flags if flag not in README]
    assert not undocumented, f"{command}: {undocumented} missing from d1sandbox/README.md"
    assert all(action.help for action in subcommand._actions), command
