"""Every option of every `glassmd` command says what it does, and what it says about being required is true."""

from __future__ import annotations

import argparse

import pytest

from glassmd.cli import build_parser, main


def _options():
    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])
            else:
                yield " ".join(path), action

    return list(walk(build_parser(), []))


def test_there_are_options_to_check():
    commands = {command for command, _ in _options()}
    assert {"predict", "propensity", "train", "export", "baseline"} <= commands


@pytest.mark.parametrize("command, action", _options(),
                         ids=lambda x: x if isinstance(x, str) else "/".join(x.option_strings) or x.dest)
def test_every_option_has_help_consistent_with_argparse(command, action):
    assert action.help and action.help.strip(), f"glassmd {command} {action.option_strings or action.dest}"
    if not action.required:
        # "(required)" on an optional argument contradicts the usage line, which shows it in brackets.
        assert "(required)" not in action.help, f"glassmd {command} {action.option_strings}: {action.help}"


def test_propensity_without_temperature_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "x.dump").write_text("")
    assert main(["propensity", str(tmp_path / "x.dump"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--temperature is required" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
