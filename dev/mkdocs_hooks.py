"""MkDocs hook of ``make docs`` (mkdocs.yml): links from docs/ to files outside it.

The pages link to repository files outside docs/ (the README, the example DAGs), which work when the Markdown is read
in the repository but are not part of the site. On the site each such link becomes its text followed by the file's
path in the repository; a link whose file does not exist is a warning, so the strict build fails on it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.carecycle_docs")

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    repo = docs_dir.parent
    page_dir = (docs_dir / page.file.src_uri).parent

    def outside_link(match: re.Match[str]) -> str:
        target = match["target"]
        file_part = target.partition("#")[0]
        if _SCHEME.match(target) or not file_part:
            return match[0]
        dest = (page_dir / file_part).resolve()
        if dest.is_relative_to(docs_dir):
            return match[0]  # a page or file of the site: MkDocs checks it
        if not dest.exists():
            log.warning("%s links to %s, which is not in the repository", page.file.src_uri, target)
            return match[0]
        path = dest.relative_to(repo).as_posix() + ("/" if dest.is_dir() else "")
        text = match["text"]
        return f"{text} (in the repository)" if text.strip("`") == path else f"{text} (`{path}` in the repository)"

    out, fence = [], None
    for line in markdown.split("\n"):
        opened = _FENCE.match(line)
        if fence:
            fence = None if opened and opened[1][0] == fence[0] and len(opened[1]) >= len(fence) else fence
        elif opened:
            fence = opened[1]
        else:
            line = _LINK.sub(outside_link, line)
        out.append(line)
    return "\n".join(out)
