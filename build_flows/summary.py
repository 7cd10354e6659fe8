"""Human views of machine-readable results: Markdown tables and a static HTML page beside
each summary.md. Every report module writes its JSON/CSV first and its summary from them."""
from __future__ import annotations

import html
from pathlib import Path

from .run_folder import write_text_atomic

PAGE_STYLE = ("body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}"
              "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
              "img{max-width:100%}")


def cell(value, digits: int = 2) -> str:
    """A table cell: '-' for missing, floats rounded, never a raw container."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (dict, list, tuple)):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else ", ".join(map(str, value))
    return str(value)


def markdown_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> list[str]:
    """Rows as a Markdown table (columns in the given order)."""
    lines = ["| " + " | ".join(headers or columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def write_summary(path: Path, text: str, title: str) -> None:
    """summary.md and, beside it, the same as a static summary.html (plots linked, not copied)."""
    from markdown_it import MarkdownIt

    write_text_atomic(path, text)
    body = MarkdownIt("commonmark").enable("table").render(text)
    write_text_atomic(path.with_suffix(".html"),
                      f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                      f"<style>{PAGE_STYLE}</style></head><body>{body}</body></html>\n")
