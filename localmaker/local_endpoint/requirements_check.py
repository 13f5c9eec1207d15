"""Check code/requirements.txt against the installed distributions, without installing anything.

A SageMaker container pip-installs ``code/requirements.txt`` before it imports the script; localmaker
runs the script in the user's own environment and must not change it. So it only reports: one log line
at start-up, and an explanation attached to an ImportError, which is how a missing requirement shows.
"""

from __future__ import annotations

import enum
import importlib.metadata
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

REQUIREMENTS_FILE = "requirements.txt"
SOURCE_LABEL = "code/requirements.txt"
# pip's own rule: '#' starts a comment at the start of a line or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")
# Per-requirement options such as ``--hash=sha256:...`` follow the requirement after whitespace.
_TRAILING_OPTIONS = re.compile(r"\s+--?[A-Za-z].*$")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")
NO_INSTALL_NOTE = "localmaker does not pip-install requirements.txt (a SageMaker container would)"
# FailureReason holds 1024 characters; these keep an import failure's explanation well inside it.
_ERROR_BUDGET = 220
_LIST_BUDGET = 200


class Outcome(enum.Enum):
    SATISFIED = "satisfied"
    MISSING = "missing"
    WRONG_VERSION = "wrong version"
    NOT_APPLICABLE = "not for this platform"
    SKIPPED = "not checked"
    MALFORMED = "unreadable"


@dataclass(frozen=True)
class RequirementCheck:
    text: str
    outcome: Outcome
    detail: str = ""
    install_spec: str = ""  # what ``pip install`` needs to fix an unmet requirement

    def describe(self) -> str:
        return f"{self.text} ({self.detail})" if self.detail else self.text


@dataclass(frozen=True)
class RequirementsReport:
    checks: tuple[RequirementCheck, ...]
    source: str = SOURCE_LABEL

    def having(self, *outcomes: Outcome) -> list[RequirementCheck]:
        return [check for check in self.checks if check.outcome in outcomes]

    @property
    def unmet(self) -> list[RequirementCheck]:
        return self.having(Outcome.MISSING, Outcome.WRONG_VERSION)

    @property
    def needs_attention(self) -> bool:
        return bool(self.having(Outcome.MISSING, Outcome.WRONG_VERSION, Outcome.MALFORMED))

    def pip_command(self, budget: int | None = None) -> str:
        words = [_shell_word(check.install_spec) for check in self.unmet]
        return "pip install " + (" ".join(words) if budget is None else _bounded_join(words, budget, " "))

    def summary_line(self) -> str:
        """The one start-up log line: what is satisfied, what is not, and who must install it."""
        parts = []
        for outcome in Outcome:
            group = self.having(outcome)
            if group:
                parts.append(f"{outcome.value}: {', '.join(check.describe() for check in group)}")
        listed = "; ".join(parts) if parts else "no requirements listed"
        if self.unmet:
            advice = (f"install them into the environment that runs localmaker, e.g. {self.pip_command()}, "
                      "then deploy again")
        else:
            advice = "the packages must be installed in the environment that runs localmaker"
        return f"{self.source}: {listed}. {NO_INSTALL_NOTE}; {advice}"


def check_code_dir(code_dir: Path) -> RequirementsReport | None:
    """The report for ``code_dir/requirements.txt``, or None when the code ships no requirements."""
    path = code_dir / REQUIREMENTS_FILE
    if not path.is_file():
        return None
    return check_text(path.read_text(encoding="utf-8", errors="replace"))


def check_text(text: str) -> RequirementsReport:
    return RequirementsReport(tuple(check_line(line) for line in logical_lines(text)))


def logical_lines(text: str) -> list[str]:
    """Requirement lines as pip reads them: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\r?\n", "", text)
    lines = (_COMMENT.sub("", raw).strip() for raw in joined.splitlines())
    return [line for line in lines if line]


def check_line(line: str) -> RequirementCheck:
    if line.startswith("-"):
        return RequirementCheck(line, Outcome.SKIPPED, "pip option")
    if _looks_like_location(line):
        return RequirementCheck(line, Outcome.SKIPPED, "URL or path")
    text = _TRAILING_OPTIONS.sub("", line)
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        return RequirementCheck(line, Outcome.MALFORMED, _first_line(str(exc)))
    try:
        if requirement.marker is not None and not requirement.marker.evaluate():
            return RequirementCheck(text, Outcome.NOT_APPLICABLE, f"marker {requirement.marker} is false here")
    except (UndefinedComparison, UndefinedEnvironmentName) as exc:
        return RequirementCheck(line, Outcome.MALFORMED, _first_line(str(exc)))
    return _check_installed(text, requirement)


def _check_installed(text: str, requirement: Requirement) -> RequirementCheck:
    install_spec = _install_spec(requirement)
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return RequirementCheck(text, Outcome.MISSING, "not installed", install_spec)
    if not requirement.specifier:
        return RequirementCheck(text, Outcome.SATISFIED, installed)
    try:
        matches = requirement.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return RequirementCheck(text, Outcome.WRONG_VERSION, f"{installed} installed, not a comparable version",
                                install_spec)
    if matches:
        return RequirementCheck(text, Outcome.SATISFIED, installed)
    return RequirementCheck(text, Outcome.WRONG_VERSION, f"{installed} installed", install_spec)


def explain_import_failure(exc: ImportError, report: RequirementsReport | None) -> str:
    """The ModelLoadFailed message (and so the FailureReason) for an import that failed.

    It names what failed to import, the unmet requirements, and the command that fixes them.
    """
    error = _bounded(f"{type(exc).__name__}: {exc}", _ERROR_BUDGET)
    if report is not None and report.unmet:
        unmet = _bounded_join((check.describe() for check in report.unmet), _LIST_BUDGET)
        command = report.pip_command(_LIST_BUDGET)
        return (f"{error}. {report.source} lists requirements not installed here: {unmet}. {NO_INSTALL_NOTE}: "
                f"run {command} in the environment running localmaker, then deploy again")
    module = getattr(exc, "name", None) or "the missing module"
    listed = (f"every requirement in {report.source} is installed, so add the one that provides it there"
              if report is not None else f"list it in {SOURCE_LABEL} so a SageMaker container installs it too")
    return (f"{error}. localmaker installs no packages: pip install the distribution that provides {module!r} "
            f"into the environment running localmaker; {listed}")


def _install_spec(requirement: Requirement) -> str:
    # The marker already held here, so pip needs only the name, extras and version or URL.
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    if requirement.url:
        return f"{requirement.name}{extras} @ {requirement.url}"
    return f"{requirement.name}{extras}{requirement.specifier}"


def _shell_word(spec: str) -> str:
    # Always quoted, so a pasted command never lets the shell read '>' as a redirection.
    return shlex.quote(spec) if "'" in spec else f"'{spec}'"


def _looks_like_location(line: str) -> bool:
    """A bare URL, path or archive file, which pip accepts but names no distribution to look up.

    ``name @ url`` (PEP 508) is not one: it names its distribution, so it can be checked.
    """
    before_at, has_at, _ = line.partition("@")
    return ("://" in before_at or line.startswith((".", "/", "~", "file:"))
            or (not has_at and line.lower().endswith(_ARCHIVE_SUFFIXES)))


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "cannot be parsed"


def _bounded(text: str, budget: int) -> str:
    return text if len(text) <= budget else text[: budget - 3] + "..."


def _bounded_join(items: Iterable[str], budget: int, separator: str = ", ") -> str:
    """Join whole items until ``budget`` is spent, then say how many were left out."""
    items = list(items)
    shown: list[str] = []
    for item in items:
        if shown and len(separator.join([*shown, item])) > budget:
            break
        shown.append(_bounded(item, budget))
    left = len(items) - len(shown)
    return separator.join(shown) + (f" (and {left} more)" if left else "")
