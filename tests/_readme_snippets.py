"""Code blocks of the README, read from it, so that tests run the very snippet a user copies."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def readme_strategy(class_name: str = "TopTwo") -> str:
    """The README's python block that defines ``class_name`` (the strategy a new user writes first)."""
    return next(block for block in python_blocks() if f"class {class_name}(" in block)
