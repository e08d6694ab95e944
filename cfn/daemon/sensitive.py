"""Secret-looking values in text: found for the audit, masked for prompts.

One list of patterns serves both, so what the audit reports is exactly what a prompt
never carries. A finding holds a masked hint of at most four characters, never the value.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

# (kind, severity, what it is, regex): the group `v` is the secret itself
_TOKENS = (
    ("aws-access-key", "high", "an AWS access key ID",
     r"\b(?P<v>(?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    # a cut context may hold a key's start only: the block runs to its END line or the end
    ("private-key", "high", "a private key block",
     r"(?P<v>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
     r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*\Z))"),
    ("anthropic-key", "high", "an Anthropic API key", r"(?P<v>\bsk-ant-[A-Za-z0-9_-]{20,})"),
    ("github-token", "high", "a GitHub token",
     r"(?P<v>\b(?:gh[pousr]_[A-Za-z0-9]{36}\b|github_pat_[A-Za-z0-9_]{22,}))"),
    ("slack-token", "high", "a Slack token", r"(?P<v>\bxox[abposr]-[A-Za-z0-9-]{10,})"),
)
_NAME = r"(?P<n>[\w.-]*(?:password|passwd|secret|api_?key|token)[\w.-]*)"
# a literal assigned to a secret-sounding name, in code or config: name = "value"
_ASSIGNED = ("assigned-secret", "medium", "a literal assigned to a secret-sounding name",
             r"(?i)\b" + _NAME + r"""["']?\s*(?::|=|:=|=>)\s*(?P<q>["'])(?P<v>[^"'\s]{8,})(?P=q)""")
# a dotenv line: NAME=value, unquoted
_DOTENV = ("env-secret", "medium", "a secret-sounding variable set in an env file",
           r"(?im)^[ \t]*(?:export[ \t]+)?" + _NAME + r"[ \t]*=[ \t]*['\"]?(?P<v>[^\s'\"#]{8,})")
_PLACEHOLDER = re.compile(
    r"(?i)change.?me|example|placeholder|dummy|redacted|your[_-]|xxxx|\*\*\*|<[^>]*>|"
    r"\$[\w{(]|\{\{|%\(|(?-i:^[A-Z][A-Z0-9_]*$)")  # the last: the *name* of a variable holding it
# names that hold where or what a secret is, not the secret: SECRET_FILE, api_key_env
_ABOUT_SECRET = re.compile(r"(?i)[_.-](?:file|path|dir|name|env|var|url|header|field|prefix|"
                           r"suffix|len|length|type|kind)$")

_COMPILED = [(kind, sev, what, re.compile(rx)) for kind, sev, what, rx in _TOKENS]
_ASSIGNED_RX = re.compile(_ASSIGNED[3])
_NAME_WORDS = re.compile(r"(?i)passw|secret|api_?key|token")
_DOTENV_RX = re.compile(_DOTENV[3])


@dataclass(frozen=True)
class Secret:
    """Where a secret-looking value is, and what kind: never the value itself."""

    kind: str
    severity: str
    description: str
    line: int
    hint: str  # at most its first four characters, then an ellipsis
    start: int
    end: int


def hint(value: str) -> str:
    """A masked hint: the first four characters at most (fewer of a short value)."""
    return value[: min(4, len(value) // 4)] + "…"


def is_dotenv(name: str) -> bool:
    """Whether a file name is a dotenv file (.env, .env.local); examples are not."""
    return (name == ".env" or name.startswith(".env.")) and \
        not name.endswith((".example", ".sample", ".template", ".dist"))


def find(text: str, *, dotenv: bool = False) -> list[Secret]:
    """The secret-looking values in `text`, in order; `dotenv` adds unquoted NAME=value."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    found = sorted(_matches(text, dotenv), key=lambda s: s[3])
    kept, last_end = [], -1
    for kind, severity, what, start, end in found:
        if start < last_end:  # one value, two patterns: the first (the specific one) wins
            continue
        kept.append(Secret(kind, severity, what, bisect.bisect_right(starts, start),
                           hint(text[start:end]), start, end))
        last_end = end
    return kept


def _matches(text: str, dotenv: bool) -> Iterator[tuple[str, str, str, int, int]]:
    for kind, severity, what, rx in _COMPILED:
        for m in rx.finditer(text):
            yield kind, severity, what, m.start("v"), m.end("v")
    if not _NAME_WORDS.search(text):
        return  # no secret-sounding name anywhere: the slower generic patterns cannot match
    generic = [(_ASSIGNED, _ASSIGNED_RX)] + ([(_DOTENV, _DOTENV_RX)] if dotenv else [])
    for (kind, severity, what, _), rx in generic:
        for m in rx.finditer(text):
            if _non_trivial(m.group("v")) and not _ABOUT_SECRET.search(m.group("n")):
                yield kind, severity, what, m.start("v"), m.end("v")


def _non_trivial(value: str) -> bool:
    """A literal that could be a real secret: not a placeholder, not one repeated char."""
    return not _PLACEHOLDER.search(value) and len(set(value)) >= 4


def redact(text: str, *, dotenv: bool = True) -> str:
    """`text` with every secret-looking value replaced by its hint and `[redacted]`."""
    out, last = [], 0
    for secret in find(text, dotenv=dotenv):
        out += [text[last:secret.start], f"{secret.hint}[redacted {secret.kind}]"]
        last = secret.end
    return "".join(out) + text[last:]
