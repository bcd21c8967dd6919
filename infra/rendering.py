"""Jinja2 rendering of the files the lab ships (host scripts, jupyterhub_config.py).

Rendering is pure: it returns text and writes nothing. StrictUndefined makes a
misspelt variable fail loudly instead of rendering an empty string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATE_DIR = Path(__file__).parent / "templates"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,  # noqa: S701 - shell and Python, not HTML
)
# Values enter shell scripts quoted, and Python files as Python literals, never raw.
_environment.filters["sh"] = lambda value: _single_quoted(str(value))
_environment.filters["py"] = lambda value: repr(value)
_environment.filters["json"] = lambda value: json.dumps(value, sort_keys=True)


def _single_quoted(text: str) -> str:
    """``text`` as one shell word, always quoted (shellcheck reads ``a=b-2`` as arithmetic)."""
    return "'" + text.replace("'", "'\\''") + "'"


def render(template: str, **values: Any) -> str:
    """Render ``templates/<template>`` with ``values``."""
    return _environment.get_template(template).render(**values)
