"""One help layout for every command: each flag says what it does, its default, and whether it is required.

argparse shows a default only when the help text spells it out, and marks a required flag only by leaving
out its brackets in the usage line; a newcomer reading ``localmaker up --help`` should not have to guess
which port ``up`` listens on. The formatter is set on every sub-parser after they are built, so command
modules add their flags as usual and still get the same layout.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def shown_default(value: object) -> str:
    """A default as a user would type it: 5,7.5,9 rather than Python's [5.0, 7.5, 9.0]."""
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def has_shown_default(action: argparse.Action) -> bool:
    """Whether a default is worth showing: a value, not "unset" (None) nor an off switch (False)."""
    # ``is``, not ``in``: 0 == False, and a default of 0 (a seed, a port) is a value worth showing.
    unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
    return not unset and (
        bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(required)`` and ``(default: ...)`` to a flag's help, unless the help already says so."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        additions = []
        if action.required and action.option_strings and "required" not in text:
            additions.append("required")
        if has_shown_default(action) and "default" not in text:
            additions.append(f"default: {shown_default(action.default)}")
        if not additions:
            return text
        addition = "(" + "; ".join(additions) + ")"
        # The help string is %-formatted by argparse afterwards; a literal % in a default must survive that.
        return f"{text} {addition.replace('%', '%%')}".strip()


class RawDescriptionDefaultsHelpFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The same, for commands whose description and epilog are laid out by hand (contract-test)."""


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for child in action.choices.values():
                if id(child) not in seen:  # an alias maps to the same parser
                    seen.add(id(child))
                    yield from all_parsers(child)


def apply_help_format(parser: argparse.ArgumentParser) -> None:
    for each in all_parsers(parser):
        chosen = each.formatter_class
        raw = isinstance(chosen, type) and issubclass(chosen, argparse.RawDescriptionHelpFormatter)
        each.formatter_class = RawDescriptionDefaultsHelpFormatter if raw else DefaultsHelpFormatter
