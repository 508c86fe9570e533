"""The ACL rules per role (checked against a real server in tests/integration/test_security.py)."""

from __future__ import annotations

import pytest

from rag_core.errors import ConfigError
from rag_core.store.acl import AclRole, acl_rules, setuser_command


def test_the_query_role_reads_only_its_own_knowledge_base() -> None:
    rules = acl_rules("docs", AclRole.QUERY)
    assert rules[0] == "resetkeys" and "-@all" in rules
    keys = [r for r in rules if "~" in r]
    assert keys == ["%R~beamrag:catalog:docs", "%R~beamrag:docs:*", "~docs", "~docs__v*"]
    assert not any(r.startswith("+@") and r not in ("+@connection",) for r in rules)  # no command category
    assert {"+ft.search", "+ft.info", "+hget"} <= set(rules) and "+hset" not in rules


def test_the_build_role_writes_its_own_keys_and_nothing_server_wide() -> None:
    rules = acl_rules("docs", AclRole.BUILD)
    assert "~beamrag:lease:docs" in rules and "~beamrag:docs:*" in rules and "~*" not in rules
    assert rules.index("-@dangerous") > rules.index("+@write")  # the exclusion comes after the grant
    assert {"+ft.create", "+ft.aliasupdate", "+ft.dropindex"} <= set(rules)


def test_setuser_leaves_the_password_to_fill_in_and_refuses_bad_names() -> None:
    line = setuser_command("rag-build", "docs", AclRole.BUILD)
    assert line.startswith("ACL SETUSER rag-build on >PASSWORD resetkeys ")
    with pytest.raises(ConfigError):
        acl_rules("docs with space", AclRole.QUERY)


def test_the_readme_shows_the_lines_the_command_prints() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for user, role in (("rag-query", AclRole.QUERY), ("rag-build", AclRole.BUILD)):
        assert setuser_command(user, "docs", role) in readme
