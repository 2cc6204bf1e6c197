"""``/api/whoami-v2``: who a bearer token speaks for, in the hub's shape.

A token's user is set at ``weightvault token create --user``. There are no
organisations to join here: every write token may write every namespace. So
``orgs`` lists the namespaces the token can see in the store (other than the
user's own), each with the token's role in it: what the hub's ``orgs`` means
to a client deciding where it may push. Clients read ``name``, ``orgs[].name``
and ``auth.accessToken`` (``hf auth whoami``, ``hf auth login``).
"""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from weightvault.dedup.tokens import find_token
from weightvault.errors import Unauthorized
from weightvault.store.models import Repo

from . import entries
from .auth import ReadAccess, VaultDep

router = APIRouter(tags=["hub"])


def _namespace(name: str, role: str) -> dict:
    return {"type": "org", "id": f"org-{name}", "name": name, "fullname": name, "email": None, "canPay": False,
            "periodEnd": None, "avatarUrl": "", "roleInOrg": role, "isEnterprise": False}


@router.get("/api/whoami-v2", summary="Who the bearer token belongs to (whoami, hf auth whoami)")
def whoami(vault: VaultDep, access: ReadAccess) -> dict:
    if access.token is None:  # anonymous reads do not make an anonymous user
        raise Unauthorized("whoami needs a token: Authorization: Bearer <token>")
    with vault.catalog.read_session() as s:
        token = find_token(s, access.token)
        names = s.scalars(select(Repo.name)).all()
    if token is None:  # deleted since the request was authenticated
        raise Unauthorized("Invalid credentials in Authorization header")
    role = "write" if token.scope == "write" else "read"
    spaces = sorted({n.split("/", 1)[0] for n in names} - {token.user})
    return {
        "type": "user", "id": f"user-{token.user}", "name": token.user, "fullname": token.user, "email": None,
        "emailVerified": False, "canPay": False, "isPro": False, "periodEnd": None, "avatarUrl": "",
        "orgs": [_namespace(n, role) for n in spaces],
        "auth": {"type": "access_token",
                 "accessToken": {"displayName": token.name or f"{token.scope} token", "role": token.scope,
                                 "createdAt": entries.iso(token.created_at)}},
    }
