"""Least-privilege Redis ACLs for one knowledge base: what its query jobs and its build need.

RediSearch checks an index name against the user's key patterns like a key, so the
alias and its version names (``<kb>__v<stamp>``) are key patterns here next to the
data keys (``beamrag:<kb>:...``), the catalog hash and the build lease. Commands are
what limits the query user to reading: it may run nothing but FT.SEARCH, FT.INFO
and HGET/HGETALL (the catalog). Checked against a real server by ``tests/integration/test_security.py``.

>>> " ".join(acl_rules("docs", AclRole.QUERY))
'resetkeys %R~beamrag:catalog:docs %R~beamrag:docs:* ~docs ~docs__v* resetchannels -@all +@connection +ft.search +ft.info +hget +hgetall'
"""

from __future__ import annotations

from enum import Enum

from rag_core.store.schema import KEY_ROOT, validate_index_name

__all__ = ["AclRole", "acl_rules", "setuser_command"]

QUERY_COMMANDS = ("+@connection", "+ft.search", "+ft.info", "+hget", "+hgetall")  # hgetall: `index info`
# Builds write hashes, take the lease (SET NX PX, a Lua check), publish in a MULTI, and
# manage the index versions; nothing server-wide (-@dangerous: no FLUSHALL, CONFIG, KEYS ...).
BUILD_COMMANDS = ("+@read", "+@write", "+@keyspace", "+@transaction", "+@scripting", "+@connection", "-@dangerous",
                  "+ft.info", "+ft.create", "+ft.search", "+ft.aliasadd", "+ft.aliasupdate", "+ft.aliasdel",
                  "+ft.dropindex", "+ft._list")


class AclRole(str, Enum):
    QUERY = "query"  # beam-rag query / ask: read-only
    BUILD = "build"  # beam-rag ingest and the index commands (rollback, drop)


def acl_rules(alias: str, role: AclRole) -> list[str]:
    """The ``ACL SETUSER`` rules (after ``on`` and the password) for ``role`` on knowledge base ``alias``."""
    name = validate_index_name(alias)
    if role is AclRole.QUERY:
        keys = [f"%R~{KEY_ROOT}:catalog:{name}", f"%R~{KEY_ROOT}:{name}:*"]
        commands = QUERY_COMMANDS
    else:
        keys = [f"~{KEY_ROOT}:catalog:{name}", f"~{KEY_ROOT}:lease:{name}", f"~{KEY_ROOT}:{name}:*"]
        commands = BUILD_COMMANDS
    return ["resetkeys", *keys, f"~{name}", f"~{name}__v*", "resetchannels", "-@all", *commands]


def setuser_command(user: str, alias: str, role: AclRole) -> str:
    """The ``redis-cli`` line that creates ``user`` (the password left for the operator to fill in).

    >>> setuser_command("rag-reader", "docs", AclRole.QUERY).split()[:5]
    ['ACL', 'SETUSER', 'rag-reader', 'on', '>PASSWORD']
    """
    return " ".join(["ACL", "SETUSER", user, "on", ">PASSWORD", *acl_rules(alias, role)])
