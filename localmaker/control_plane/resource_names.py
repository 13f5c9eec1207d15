"""Names that become paths: checked as AWS checks them at the API boundary, and never trusted with a path.

An endpoint's, variant's, job's or channel's name names folders and files under the control plane's work
root. AWS lets none of them hold ``/`` (its patterns allow letters, digits, hyphens and, for a channel,
dots and underscores), so ``check_names`` refuses a request whose names break their shape's ``pattern``
or length, in AWS's own ValidationException words, before moto records anything. The rules are read from
botocore's service model, not restated here, so they stay what the model that clients hold says.

The check at the door is not the only guard: every path built from a name goes through ``path_under``,
which refuses one that would leave its folder, and ``discard_tree`` removes a folder only inside its
root, so a name that slips past (a ChannelName of ``..`` is a valid AWS name) cannot reach elsewhere.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from botocore.model import ListShape, Shape, StructureShape

from localmaker.control_plane.answer_shapes import operation_model
from localmaker.control_plane.answers import Answer
from localmaker.control_plane.api_errors import SerializationException, ValidationException

logger = logging.getLogger(__name__)

Forward = Callable[..., Answer]
Action = Callable[[dict[str, Any], Forward], Answer]

# The shapes whose values localmaker turns into folder, file or process names, or looks resources up by.
NAME_SHAPES = frozenset({"EndpointName", "EndpointConfigName", "ModelName", "VariantName", "TrainingJobName",
                         "TransformJobName", "ChannelName"})
# Names that match their pattern yet name no folder of their own (ChannelName allows dots).
_NOT_FOLDER_NAMES = frozenset({".", ".."})


class UnsafePath(ValueError):
    """A path built from a name would leave the folder it belongs in."""


def check_names(operation: str, request: dict[str, Any]) -> None:
    """Raise AWS's ValidationException for every name in ``request`` that breaks its shape's constraints.

    AWS lists all broken constraints of a request in one message ("2 validation errors detected: ...");
    so does this, in the order the members come.
    """
    model = operation_model(operation)
    if model is None or model.input_shape is None or not _holds_names(operation):
        return
    named = list(_named(model.input_shape, request, ""))
    failures = [sentence for location, value, shape in named for sentence in _broken(location, value, shape)]
    if failures:
        count = f"{len(failures)} validation error{'s' if len(failures) > 1 else ''} detected"
        raise ValidationException(f"{count}: " + "; ".join(failures))
    for location, value, _ in named:
        if value in _NOT_FOLDER_NAMES:
            raise ValidationException(
                f"Value '{value}' at '{location}' names no folder of its own: a channel's data goes to "
                "/opt/ml/input/data/<ChannelName>, so '.' and '..' would put it elsewhere; choose another name")


def checked_names(actions: dict[str, Action]) -> dict[str, Action]:
    """``actions``, each checking the request's names before it runs (and so before moto sees it)."""
    return {operation: _checking(operation, action) for operation, action in actions.items()}


def forwarded(request: dict[str, Any], forward: Forward) -> Answer:
    """An action for an operation that moto answers by itself, listed only so that its names are checked."""
    return forward()


def path_under(root: Path, *parts: str) -> Path:
    """``root`` joined with ``parts``; UnsafePath unless the result lies inside ``root``, below it.

    Resolved before judging (``..``, an absolute part, a symlink on the way), so the folder the OS
    would reach is the one judged. The caller's root itself is trusted: it is the control plane's.
    """
    base = root.resolve()
    target = root.joinpath(*parts).resolve()
    if not _inside(target, base):
        raise UnsafePath(f"{'/'.join(parts)!r} would lead to {target}, which is not inside {base}: a name must "
                         "name a folder or file inside the control plane's work root")
    return root / target.relative_to(base)


def discard_tree(root: Path, folder: Path) -> None:
    """``shutil.rmtree(folder)``, but only for a folder inside ``root``: a delete never reaches elsewhere."""
    if not _inside(folder.resolve(), root.resolve()):
        logger.error("refusing to delete %s: it is not inside %s", folder, root)
        return
    shutil.rmtree(folder, ignore_errors=True)


def _inside(target: Path, base: Path) -> bool:
    return target != base and target.is_relative_to(base)


def _checking(operation: str, action: Action) -> Action:
    @functools.wraps(action)
    def checked(request: dict[str, Any], forward: Forward) -> Answer:
        check_names(operation, request)
        return action(request, forward)

    return checked


@functools.cache
def _holds_names(operation: str) -> bool:
    model = operation_model(operation)
    return model is not None and model.input_shape is not None and _shape_holds_names(model.input_shape, set())


def _shape_holds_names(shape: Shape, seen: set[str]) -> bool:
    if shape.name in NAME_SHAPES:
        return True
    if shape.name in seen:  # recursive shapes (search expressions)
        return False
    seen.add(shape.name)
    if isinstance(shape, StructureShape):
        return any(_shape_holds_names(member, seen) for member in shape.members.values())
    if isinstance(shape, ListShape):
        return _shape_holds_names(shape.member, seen)
    return False


def _named(shape: Shape, value: Any, location: str) -> Iterator[tuple[str, str, Shape]]:
    """(location in AWS's form, value, shape) of every name in ``value``, such as
    ``productionVariants.1.member.variantName``; SerializationException for a name that is not a string."""
    if shape.name in NAME_SHAPES:
        if not isinstance(value, str):
            raise SerializationException(f"{location} must be a string, got {type(value).__name__}")
        yield location, value, shape
    elif isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, member in shape.members.items():
            if value.get(name) is not None:
                where = f"{location}.{name[0].lower()}{name[1:]}" if location else f"{name[0].lower()}{name[1:]}"
                yield from _named(member, value[name], where)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for index, item in enumerate(value, start=1):
            yield from _named(shape.member, item, f"{location}.{index}.member")


def _broken(location: str, value: str, shape: Shape) -> Iterator[str]:
    """AWS's sentence for each constraint of ``shape`` that ``value`` breaks, length before pattern."""
    rules = shape.metadata

    def sentence(rule: str) -> str:
        return f"Value '{value}' at '{location}' failed to satisfy constraint: Member must {rule}"

    if "max" in rules and len(value) > rules["max"]:
        yield sentence(f"have length less than or equal to {rules['max']}")
    if rules.get("min", 0) > len(value):
        yield sentence(f"have length greater than or equal to {rules['min']}")
    if "pattern" in rules and not _pattern(rules["pattern"]).fullmatch(value):
        shown = rules["pattern"] if rules["pattern"].startswith("^") else f"^{rules['pattern']}"
        yield sentence(f"satisfy regular expression pattern: {shown}")


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """AWS matches the whole value, and its character classes are ASCII ones (Java's defaults)."""
    return re.compile(pattern, re.ASCII)
