"""`--help` of every command: what a new user reads before anything else says what each option
does and, for the commands that exit non-zero on partial input, what the exit status means."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from deliverability.cli import cli


def _commands(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


COMMANDS = list(_commands(cli, ()))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "deliverability")
def test_every_option_of_every_command_says_what_it_does(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert command.help, f"{' '.join(path)} has no help"
    silent = [
        option.opts[0]
        for option in command.params
        if isinstance(option, click.Option) and not option.help and "--help" not in option.opts
    ]
    assert silent == []


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (("nightly",), "Exit status: 0"),
        (("ingest",), "Exit status: 0"),
        (("policy", "check"), "2 when the file cannot be read"),
    ],
)
def test_a_command_that_exits_non_zero_on_partial_input_says_so_in_its_help(
    path: tuple[str, ...], says: str
) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert says in " ".join(result.output.split())
