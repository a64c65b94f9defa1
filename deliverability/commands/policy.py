"""`deliverability policy show | check FILE`: the effective policy, and a validator for policy
files that reports every problem with its file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from deliverability.policy import SECTIONS, check_policy_file, load_policy


@click.group()
def policy() -> None:
    """Show the effective policy, or check a policy file."""


@policy.command("show")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["toml", "json"]),
    default="toml",
    show_default=True,
    help="toml prints a file that `--policy` reads back; json is for programs.",
)
@click.pass_context
def show(ctx: click.Context, fmt: str) -> None:
    """Print the effective policy: the numbers after the user file is applied, and every rule in
    the order it is checked (first match wins)."""
    effective = ctx.obj.policy() if ctx.obj is not None else load_policy()
    data = effective.as_dict()
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(to_toml(data), nl=False)


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check(ctx: click.Context, file: Path) -> None:
    """Check a policy FILE: print every problem as `file:line: severity: key: message (fix: ...)`.

    Exits 1 when there is an error, 0 otherwise (warnings alone are not errors), 2 when the file
    cannot be read.
    """
    problems = check_policy_file(file)
    for problem in problems:
        click.echo(str(problem))
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    if not problems:
        click.echo(f"{file}: no problems found")
    else:
        click.echo(f"{file}: {errors} error(s), {warnings} warning(s)", err=True)
    ctx.exit(1 if errors else 0)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for everything json.dumps writes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def _table(name: str, table: dict[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    out.append(f"[{name}]")
    out.extend(f"{k} = {_value(v)}" for k, v in scalars.items())
    out.append("")
    for key, sub in table.items():
        if isinstance(sub, dict):
            if all(isinstance(v, dict) for v in sub.values()) and sub:
                for group, inner in sub.items():
                    _table(f"{name}.{key}.{group}", inner, out)
            else:
                _table(f"{name}.{key}", sub, out)


def to_toml(data: dict[str, Any]) -> str:
    """The policy's plain data as a TOML policy file (what `policy show` prints)."""
    out = ["# The effective deliverability policy (deliverability policy show)."]
    out.append("# Read from: " + ", ".join(data.get("source_files", [])))
    out.append("")
    for section in SECTIONS:
        _table(section, data[section], out)
    for rule in data["rule"]:
        out.append("[[rule]]")
        origin = rule.get("origin")
        if origin:
            out[-1] += f"  # {origin}"
        out.extend(f"{k} = {_value(v)}" for k, v in rule.items() if k != "origin")
        out.append("")
    return "\n".join(out)
