"""Sphinx tweaks for the rnngrad book's HTML.

Jupyter Book 1 always loads sphinx-thebe, which registers its inline configuration
script once per read pass; with notebook execution that can happen twice, and the
browser then reports "Identifier 'THEBE_JS_URL' has already been declared". The book
has no live-code buttons (launch_buttons.thebe is false), so its scripts are dropped:
this also keeps a remote address (unpkg.com) out of every page.
"""

from __future__ import annotations

from typing import Any


def _drop_thebe_scripts(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    def is_thebe(script: Any) -> bool:
        filename = str(getattr(script, "filename", "") or "")
        body = str(getattr(script, "attributes", {}).get("body", ""))
        return "thebe" in filename or "THEBE_JS_URL" in body

    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not is_thebe(s)]


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _drop_thebe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
