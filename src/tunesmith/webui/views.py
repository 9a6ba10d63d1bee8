"""Small pieces of HTML shared by the tabs: one-line status messages and the page's CSS."""

from __future__ import annotations

import html

from tunesmith.errors import TunesmithError

CSS = """
.ts-msg { padding: 6px 10px; border-radius: 6px; margin: 2px 0; white-space: pre-wrap; }
.ts-msg-ok { background: #e7f6ec; color: #14532d; }
.ts-msg-info { background: #eef2ff; color: #1e3a8a; }
.ts-msg-error { background: #fdecec; color: #7f1d1d; font-weight: 600; }
.ts-bar { height: 14px; background: #e5e7eb; border-radius: 7px; overflow: hidden; }
.ts-fill { height: 100%; background: #2563eb; transition: width .5s; }
.ts-facts { margin-top: 4px; font-size: 0.95em; }
.ts-warning { margin-top: 4px; color: #92400e; }
.ts-preview pre { white-space: pre-wrap; word-break: break-word; margin: 2px 0 10px; padding: 6px;
                  border: 1px solid #e5e7eb; border-radius: 6px; font-size: 0.9em; }
.ts-row-head { font-size: 0.85em; color: #6b7280; }
.ts-prompt { color: #6b7280; }
mark.ts-answer { background: #bbf7d0; color: #052e16; }
mark.ts-chosen { background: #bbf7d0; color: #052e16; }
mark.ts-rejected { background: #fecaca; color: #450a0a; }
.ts-plan { padding: 6px 10px; border: 1px solid #e5e7eb; border-radius: 6px; }
.ts-plan ul { margin: 4px 0 0 1.2em; padding: 0; }
.ts-ab-answer { white-space: pre-wrap; border: 1px solid #e5e7eb; border-radius: 6px; padding: 8px; min-height: 4em; }
"""


def message(kind: str, text: str) -> str:
    """`kind`: ok, info or error. The text is shown as it is (escaped), on its own."""
    return f'<div class="ts-msg ts-msg-{kind}">{html.escape(text)}</div>'


def one_line(error: BaseException) -> str:
    """A mistake as one readable line: tunesmith's own messages are complete; anything else gets its type."""
    if isinstance(error, TunesmithError):
        return str(error)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def error(error_or_text: BaseException | str) -> str:
    text = one_line(error_or_text) if isinstance(error_or_text, BaseException) else error_or_text
    return message("error", text)


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
