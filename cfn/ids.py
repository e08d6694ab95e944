"""The one pattern every ID (task, agent, channel, key, lock name) must match.

IDs are pasted into Redis keys, file names and container names, so they may
not contain glob characters, braces (cluster hash tags), colons (key
separators), whitespace or shell metacharacters.
"""

import re

from cfn.errors import InvalidInput

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_ID_RE = re.compile(ID_PATTERN)


def validate_id(value: str, kind: str = "id") -> str:
    """Return `value` if it is a valid ID, else raise InvalidInput naming `kind`."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind} {value!r}: use 1-128 characters of letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value
