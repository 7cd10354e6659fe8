"""Hardware sources that ship with a2qflow as files (build_flows/templates/): Verilog and
C++ templates rendered with Jinja2, and the adjustments made to copies of FINN's files,
described as data (rtl_patches.yaml). No Python module holds Verilog or C++ text."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

from a2qflow.errors import A2qflowError

TEMPLATES = Path(__file__).resolve().parent / "templates"
PATCHES_FILE = TEMPLATES / "rtl_patches.yaml"


class AdjustmentError(A2qflowError, RuntimeError):
    """A source file no longer looks the way an adjustment expects (finn-rtllib changed)."""


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)


def render(template: str, **context) -> str:
    """A template of build_flows/templates rendered with `context` (every variable required)."""
    return _environment().get_template(template).render(**context)


def _render_string(text: str, context: dict) -> str:
    return _environment().from_string(text).render(**context)


def template_path(name: str) -> Path:
    """A shipped source used as it is (e.g. a C++ harness)."""
    return TEMPLATES / name


@lru_cache(maxsize=1)
def patches() -> dict:
    return yaml.safe_load(PATCHES_FILE.read_text())


def patch_description(name: str) -> str:
    return " ".join(patches()[name]["why"].split())


def _once(pattern: str, text: str, name: str, file: str) -> re.Match:
    matches = list(re.finditer(pattern, text))
    if len(matches) != 1:
        raise AdjustmentError(f"{file}: adjustment {name} expected one match of {pattern!r}, found "
                              f"{len(matches)}; finn-rtllib changed, update build_flows/templates/rtl_patches.yaml")
    return matches[0]


def apply_patch(name: str, text: str, file: str, **context) -> str:
    """The adjustment `name` of rtl_patches.yaml applied to `text` (the contents of `file`)."""
    for step in patches()[name]["steps"]:
        if "replace" in step:
            m = _once(step["replace"], text, name, file)
            text = text[:m.start()] + m.expand(_render_string(step["with"], context)) + text[m.end():]
        elif "replace_literal" in step:
            old = step["replace_literal"]
            if text.count(old) != 1:
                raise AdjustmentError(f"{file}: adjustment {name} expected one occurrence of {old!r}, found "
                                      f"{text.count(old)}; finn-rtllib changed, update rtl_patches.yaml")
            text = text.replace(old, _render_string(step["with"], context))
        elif "insert_after" in step:
            m = _once(step["insert_after"], text, name, file)
            text = text[:m.end()] + _render_string(step["text"], context) + text[m.end():]
        elif "move" in step:
            m = _once(step["move"], text, name, file)
            body = m.group(1)
            text = text[:m.start(1)] + text[m.end(1):]
            anchor = _once(step["after"], text, name, file)
            dedent = step.get("dedent", "")
            moved = "\n".join(line[len(dedent):] if dedent and line.startswith(dedent) else line
                              for line in body.splitlines()) + "\n"
            text = text[:anchor.end()] + step.get("header", "") + moved + text[anchor.end():]
        else:
            raise AdjustmentError(f"rtl_patches.yaml: adjustment {name} has a step of unknown kind: {sorted(step)}")
    return text
