"""The README's ```python blocks, and the machine a new user runs them on.

A block runs as it stands, in a fresh interpreter, in an empty folder, on a machine with no AWS set-up.
An HTML comment on the line(s) just above a block tells the test what a reader would do around it:

    <!-- readme-test: needs up, model.tar.gz -->   prepare these first (see PREPARATIONS)
    <!-- readme-test: file src/inference.py -->    save the block there for the blocks that follow; don't run it
    <!-- readme-test: pytest tests/test_x.py -->   save the block there and run pytest on it
    <!-- readme-test: python PATH -->             run the block with the interpreter in environment variable PATH
    <!-- readme-test: skip REASON -->             not runnable here (real AWS, ...); the reason is required

A ``print(...)  # TEXT`` line states what it prints: the printed lines must contain, in order, one line
matching each such TEXT, where ``...``, ``…`` and ``<word>`` stand for any text.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->")
KINDS = {"needs", "file", "pytest", "python", "skip"}
PREPARATIONS = {"up", "model.tar.gz", "weights.tar.gz", "my-model-dir", "neon-city"}
_WILDCARD = re.compile(r"\.\.\.|…|<[\w-]+>")


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    heading: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.heading})"

    @property
    def needs(self) -> list[str]:
        return [item.strip() for item in self.directives.get("needs", "").split(",") if item.strip()]

    def expected_prints(self) -> list[re.Pattern[str]]:
        """One pattern per ``print(...)  # TEXT`` line, in order."""
        patterns = []
        for line in self.code.splitlines():
            match = re.match(r"\s*print\(.*\)\s+#\s?(.*)$", line)
            if match:
                parts = _WILDCARD.split(match.group(1).strip())
                patterns.append(re.compile(".*".join(re.escape(part) for part in parts)))
        return patterns


def python_blocks(text: str | None = None) -> list[Block]:
    """Every ```python block, with the directives on the comment lines right above it."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    heading = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip().startswith("```"):
            fence = line.strip()
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
            if fence == "```python":
                directives: dict[str, str] = {}
                above = index - 1
                while above >= 0 and DIRECTIVE.search(lines[above]):
                    kind, argument = DIRECTIVE.search(lines[above]).groups()  # type: ignore[union-attr]
                    directives[kind] = argument
                    above -= 1
                blocks.append(Block(index + 1, heading, "\n".join(lines[index + 1:end]) + "\n", directives))
            index = end
        index += 1
    return blocks


def no_aws_environment(home: Path) -> dict[str, str]:
    """This process's environment as a new user's machine would have it: no AWS variable, and a home
    with no ~/.aws (boto3 finds neither a region nor credentials)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SAGEMAKER_", "BOTO_")) and k != "LOCALMAKER_SDK3_PYTHON"}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), AWS_CONFIG_FILE=str(home / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(README.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def exported_variables(output: str) -> dict[str, str]:
    """The ``export NAME=VALUE ...`` lines `localmaker up` prints, as a user's shell would apply them."""
    exported = {}
    for line in output.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line.removeprefix("export "), comments=True):
                name, _, value = word.partition("=")
                exported[name] = value
    return exported
