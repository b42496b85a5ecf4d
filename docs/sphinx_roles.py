"""Griffe extension for the API reference: the docstrings' reST habits as Markdown.

The docstrings cross-reference with reST roles (``:class:`Problem```, ``:func:`pnp.problems.cached_norm```), which
mkdocstrings would print verbatim. Each becomes a cross-reference to the rendered object when the name resolves to
a documented public object of a module the reference renders, and plain code otherwise (a private helper, a module
left out of the reference, another package): never a dangling link, so ``mkdocs build --strict`` stays clean.
A bullet list that starts right under a line of text, or text that resumes right under a list, gets the blank
line Markdown needs to see the list.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([\w.]+)`")
ITEM = re.compile(r"[*-] ")


def separate_lists(text: str) -> str:
    """Blank lines around unindented bullet lists (continuation lines of an item are indented)."""
    out: list[str] = []
    in_list = False
    for line in text.splitlines():
        item, text_line = ITEM.match(line) is not None, bool(line.strip()) and not line.startswith(" ")
        if out and out[-1].strip() and ((item and not in_list) or (in_list and text_line and not item)):
            out.append("")
        in_list = item or (in_list and not text_line)
        out.append(line)
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite roles once the package is loaded; ``rendered``: the modules whose public members the pages render."""

    def __init__(self, rendered: list[str] | None = None) -> None:
        super().__init__()
        self.modules = list(rendered or [])

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self.collection = loader.modules_collection
        self.rendered: set[str] = set()
        for path in self.modules:
            if path == pkg.path or path.startswith(f"{pkg.path}."):
                self.collect(self.collection[path])
        self.rewrite(pkg, set())

    def collect(self, obj: griffe.Object) -> None:
        """The paths the reference renders: a rendered module, its public documented members (their final target
        for the names its ``__all__`` re-exports), recursively through classes."""
        self.rendered.add(obj.path)
        for name, member in obj.members.items():
            if name.startswith("_"):
                continue
            if member.is_alias:
                if not (obj.is_module and obj.exports and name in obj.exports):
                    continue
                try:
                    member = member.final_target
                except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                    continue
            if member.is_class or (member.docstring is not None and not member.is_module):
                self.rendered.add(member.path)
                if member.is_class:
                    self.collect(member)

    def rewrite(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            value = ROLE.sub(lambda m: self.reference(obj, m.group(1), m.group(2)), obj.docstring.value)
            obj.docstring.value = separate_lists(value)
        for member in obj.members.values():
            if not member.is_alias:
                self.rewrite(member, seen)

    def reference(self, obj: griffe.Object, tilde: str, name: str) -> str:
        shown = f"`{name.rsplit('.', 1)[-1] if tilde else name}`"
        target = self.resolve(obj, name)
        return f"[{shown}][{target}]" if target else shown

    def resolve(self, obj: griffe.Object, name: str) -> str | None:
        """The rendered path of ``name`` seen from ``obj`` (its scope, its parent's, or absolute), or None."""
        head, _, rest = name.partition(".")
        candidates = [name]
        for scope in (obj, obj.parent):
            if scope is None:
                continue
            with contextlib.suppress(griffe.NameResolutionError, AttributeError):
                candidates.append(scope.resolve(head) + (f".{rest}" if rest else ""))
        for path in candidates:
            try:
                target = self.collection[path]
                target = target.final_target if target.is_alias else target
            except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            if target.path in self.rendered:
                return target.path
        return None
