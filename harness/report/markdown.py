"""The one Markdown table writer every report (run report, paper tables, compare) uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def md_escape(text: object) -> str:
    """Text safe inside a Markdown table cell (pipes and emphasis markers escaped)."""
    return str(text).replace("|", "\\|").replace("*", "\\*")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                   right_aligned: Sequence[bool] | None = None) -> list[str]:
    """A GitHub-flavoured pipe table as lines. Cells are written as given: escape free text
    with :func:`md_escape` first (a cell may hold deliberate Markdown, e.g. **bold**)."""
    align = right_aligned or [False] * len(header)
    if len(align) != len(header):
        raise ValueError(f"{len(align)} alignments for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---:|" if right else "---|" for right in align)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} columns")
        lines.append("| " + " | ".join(row) + " |")
    return lines
