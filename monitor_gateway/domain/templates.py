"""HTTP path templates as `google.api.http` writes them, matched as grpc-gateway matches them.

    Template = "/" Segments [ ":" Verb ]
    Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}"

`{field}` binds one path segment, `{field=groups/**}` the rest of the path from `groups/` on.
A template with a verb (`/v1/tasks/{task_id}:kill`) matches only a path ending in `:kill`; a
template without one takes a colon in its last segment as part of the value, so a dataset named
`mc23:user.me.scoped` is found at `/v1/datasets/mc23:user.me.scoped`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["PathTemplate", "TemplateError", "parse_template"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL = re.compile(r"[A-Za-z0-9._~\-]+$")


class TemplateError(ValueError):
    """An annotation whose path template is not in the grammar above."""


@dataclass(frozen=True)
class PathTemplate:
    """A parsed template: `text` as written, the field paths it binds in order, and its verb."""

    text: str
    variables: tuple[str, ...]
    verb: str
    # Variables whose value may span segments (`**`): their `/` are kept, not decoded from %2F.
    multi_segment: frozenset[str]
    _pattern: re.Pattern[str]
    # Literal segments count first, then single-segment variables: the more specific template wins.
    specificity: tuple[int, int, int]

    def match(self, path: str) -> dict[str, str] | None:
        """The variables' values (percent-decoded) if `path` (as sent, still percent-encoded)
        matches, else None."""
        if self.verb:
            suffix = ":" + self.verb
            if not path.endswith(suffix):
                return None
            path = path[: -len(suffix)]
        found = self._pattern.fullmatch(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for index, field in enumerate(self.variables):
            raw = found.group(f"v{index}")
            values[field] = unquote(raw) if field not in self.multi_segment else "/".join(
                unquote(part) for part in raw.split("/"))
        return values


def _segments_regex(segments: list[str], text: str) -> tuple[str, int, int]:
    """The regex of plain segments (literals, `*`, `**`), with the counts of literals and of
    single wildcards."""
    parts: list[str] = []
    literals = singles = 0
    for position, segment in enumerate(segments):
        if segment == "**":
            if position != len(segments) - 1:
                raise TemplateError(f"{text}: `**` must be the last segment")
            parts.append("[^/]+(?:/[^/]+)*")
        elif segment == "*":
            parts.append("[^/]+")
            singles += 1
        elif _LITERAL.match(segment):
            parts.append(re.escape(segment))
            literals += 1
        else:
            raise TemplateError(f"{text}: {segment!r} is not a literal, `*` or `**`")
    return "/".join(parts), literals, singles


def parse_template(text: str) -> PathTemplate:
    if not text.startswith("/"):
        raise TemplateError(f"{text}: a template starts with /")
    body, verb = text[1:], ""
    # The verb follows the last `:` outside braces.
    depth = 0
    for index in range(len(body) - 1, -1, -1):
        char = body[index]
        if char == "}":
            depth += 1
        elif char == "{":
            depth -= 1
        elif char == ":" and depth == 0:
            body, verb = body[:index], body[index + 1:]
            if not _LITERAL.match(verb):
                raise TemplateError(f"{text}: verb {verb!r} is not a literal")
            break
    pieces = re.split(r"/(?![^{]*\})", body)
    if any("**" in piece for piece in pieces[:-1]):
        raise TemplateError(f"{text}: `**` must be the last segment")
    regex: list[str] = []
    variables: list[str] = []
    multi: set[str] = set()
    literals = singles = 0
    for piece in pieces:
        if piece.startswith("{"):
            if not piece.endswith("}"):
                raise TemplateError(f"{text}: unclosed variable {piece!r}")
            field, _, inner = piece[1:-1].partition("=")
            if not _IDENT.match(field):
                raise TemplateError(f"{text}: {field!r} is not a field path")
            if field in variables:
                raise TemplateError(f"{text}: {field} is bound twice")
            inner_regex, inner_literals, inner_singles = _segments_regex(inner.split("/") if inner else ["*"], text)
            if inner.endswith("**"):
                multi.add(field)
            regex.append(f"(?P<v{len(variables)}>{inner_regex})")
            variables.append(field)
            literals += inner_literals
            singles += inner_singles
        else:
            plain, plain_literals, plain_singles = _segments_regex([piece], text)
            regex.append(plain)
            literals += plain_literals
            singles += plain_singles
    return PathTemplate(
        text=text, variables=tuple(variables), verb=verb, multi_segment=frozenset(multi),
        _pattern=re.compile("/" + "/".join(regex)), specificity=(len(pieces), literals, singles),
    )
