"""Who is calling the portal: a bearer token of cfn's persistent layer (cfn.tokens).

An operator token (role `operator`: `cfn token issue --role operator`) sees and does
everything; any other role is an agent's, which may only read its own task. The secret is
the project's own (CFN_TOKEN_SECRET, or the one generated into the state directory): there
is no default secret to guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfn.errors import CfnError, ExitCode

OPERATOR = "operator"


class Refused(CfnError):
    """No valid token (401), or a token without the right to do this (403)."""

    exit_code = ExitCode.NEGATIVE

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    agent_id: str
    task_id: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    def may_read(self, task_id: str) -> None:
        """An agent reads only its own task."""
        if not self.is_operator and task_id != self.task_id:
            raise Refused(f"this token is for task {self.task_id}, not {task_id}", 403)

    def must_operate(self) -> None:
        """Spawning, stopping, deciding and starting loops are the operator's."""
        if not self.is_operator:
            raise Refused("only an operator token may do this (role operator)", 403)


def caller(secret: str, authorization: str | None) -> Caller:
    """The caller an `Authorization: Bearer TOKEN` header names; Refused (401) if none."""
    from cfn import tokens

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused("send a token: Authorization: Bearer TOKEN (cfn token issue)", 401)
    try:
        claims = tokens.verify(secret, token)
    except CfnError as exc:
        raise Refused(str(exc), 401) from None
    return Caller(claims["sub"], claims["task_id"], claims.get("role") or "agent")
