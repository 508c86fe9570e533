"""rag_core.filters: the built query strings, pure (the real-Redis table is in
tests/integration/test_enrichment_redis.py)."""

from __future__ import annotations

import math

import pytest

from rag_core.errors import ConfigError
from rag_core.filters import (
    build_filter, escape_tag_value, field_kinds, filter_string, normalize_tag_value, validate_filter,
)

KINDS = field_kinds({"lang": "tag", "year": "numeric", "team": "tag"})

# Values that would change the meaning of a tag clause if any character slipped through.
HOSTILE = [
    "a|b", "*", "@x:{y}", "}", "{", "\\", "a b", "a-b", "-a", "a,b", "a.b", "a\tb", "a\nb", "a`b",
    "x\rb", "$vector", "=>[KNN 1 @embedding $vector]", "(x)", "[x]", '"q"', "'s'", "a:b", "a;b",
    "a!b", "a#b", "a^b", "a&b", "a+b", "a=b", "a/b", "a?b", "a<b>", "x*", "%x%", "~a", "\\|", "{a|b}",
    "' OR 1=1 --", "héllo wörld", "日本語", "😀", "a\u00a0b", "a\u3000b", "\u200b", "ab\u2028c",
]


def _unescape(escaped: str) -> str:
    out, i = [], 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 1
        out.append(escaped[i])
        i += 1
    return "".join(out)


def _unescaped_specials(escaped: str) -> list[str]:
    """ASCII characters other than letters, digits and '_' not preceded by a backslash."""
    found, i = [], 0
    while i < len(escaped):
        ch = escaped[i]
        if ch == "\\":
            i += 2
            continue
        if ord(ch) < 128 and not (ch.isalnum() or ch == "_"):
            found.append(ch)
        i += 1
    return found


class TestEscapeTagValue:
    @pytest.mark.parametrize("value", HOSTILE)
    def test_every_ascii_special_is_escaped(self, value: str) -> None:
        escaped = escape_tag_value(value)
        assert _unescaped_specials(escaped) == []
        assert _unescape(escaped) == value

    @pytest.mark.parametrize("value", ["日本語", "héllo", "😀", "a\u00a0b", "\u200b"])
    def test_non_ascii_is_left_alone(self, value: str) -> None:
        # A backslash before a non-ASCII character stops it matching in RediSearch 2.10.
        assert escape_tag_value(value) == value

    def test_whitespace_and_backtick_that_redisvl_misses(self) -> None:
        assert escape_tag_value("a\tb`c\nd\re") == "a\\\tb\\`c\\\nd\\\re"

    def test_letters_digits_underscore_untouched(self) -> None:
        assert escape_tag_value("Abc_123") == "Abc_123"


class TestNormalizeTagValue:
    @pytest.mark.parametrize("raw, stored", [
        ("  en ", "en"), ("\ten\n", "en"), ("a\x00b", "ab"), ("a\x1fb", "ab"), ("a\r\nb", "a\nb"),
        (True, "true"), (False, "false"), (2024, "2024"), (2.5, "2.5"),
        ("\u00a0x\u3000", "\u00a0x\u3000"),  # RediSearch trims ASCII whitespace only
    ])
    def test_mirrors_what_the_index_stores(self, raw: object, stored: str) -> None:
        assert normalize_tag_value(raw) == stored

    @pytest.mark.parametrize("raw", [None, {"a": 1}, b"bytes", math.nan])
    def test_refuses_non_scalars(self, raw: object) -> None:
        with pytest.raises(ConfigError, match="strings or numbers"):
            normalize_tag_value(raw)


class TestBuildFilter:
    def test_no_filter_matches_everything(self) -> None:
        assert build_filter(None, KINDS) is None
        assert build_filter({}, KINDS) is None
        assert filter_string(None, KINDS) == "*"

    def test_tag_value_uses_metadata_field(self) -> None:
        assert filter_string({"lang": "en"}, KINDS) == "@md_lang:{en}"

    def test_doc_id_is_a_builtin_tag_field(self) -> None:
        assert filter_string({"doc_id": "guide#1"}, KINDS) == "@doc_id:{guide\\#1}"

    def test_list_is_a_union_of_escaped_values(self) -> None:
        assert filter_string({"lang": ["a|b", "c d"]}, KINDS) == "@md_lang:{a\\|b|c\\ d}"

    def test_duplicates_in_a_list_collapse(self) -> None:
        assert filter_string({"lang": ["en", " en ", "en"]}, KINDS) == "@md_lang:{en}"

    def test_numeric_equality_and_union(self) -> None:
        assert filter_string({"year": 2024}, KINDS) == "@md_year:[2024 2024]"
        assert filter_string({"year": [2023, 2.5]}, KINDS) == "(@md_year:[2023 2023] | @md_year:[2.5 2.5])"

    def test_fields_are_anded_in_a_stable_order(self) -> None:
        assert filter_string({"year": 1, "lang": "en"}, KINDS) == "(@md_lang:{en} @md_year:[1 1])"

    def test_numbers_and_booleans_on_tag_fields_match_their_stored_text(self) -> None:
        assert filter_string({"team": [7, True]}, KINDS) == "@md_team:{7|true}"

    @pytest.mark.parametrize("value", HOSTILE)
    def test_hostile_value_stays_inside_one_clause(self, value: str) -> None:
        built = filter_string({"lang": value}, KINDS)
        assert built.startswith("@md_lang:{") and built.endswith("}")
        inner = built[len("@md_lang:{"):-1]
        assert _unescaped_specials(inner) == []
        assert _unescape(inner) == value

    def test_unknown_field_names_the_known_ones(self) -> None:
        with pytest.raises(ConfigError, match=r"unknown filter field 'colour'.*doc_id, lang, team, year"):
            build_filter({"colour": "red"}, KINDS)

    def test_unprefixed_hash_field_names_are_not_fields(self) -> None:
        with pytest.raises(ConfigError, match="unknown filter field 'md_lang'"):
            build_filter({"md_lang": "en"}, KINDS)

    @pytest.mark.parametrize("value", ["2024", True, [2024, "x"], math.inf, math.nan])
    def test_numeric_field_refuses_non_numbers(self, value: object) -> None:
        with pytest.raises(ConfigError, match="year"):
            build_filter({"year": value}, KINDS)

    @pytest.mark.parametrize("value", ["", "   ", "\x00", [""], []])
    def test_empty_values_are_refused_not_turned_into_match_all(self, value: object) -> None:
        with pytest.raises(ConfigError, match="empty"):
            build_filter({"lang": value}, KINDS)

    @pytest.mark.parametrize("value", [None, {"$ne": "en"}, [["en"]]])
    def test_non_scalar_values_are_refused(self, value: object) -> None:
        with pytest.raises(ConfigError, match="string or a number"):
            build_filter({"lang": value}, KINDS)

    @pytest.mark.parametrize("bad", ["lang=en", ["lang", "en"], 3])
    def test_filter_must_be_an_object(self, bad: object) -> None:
        with pytest.raises(ConfigError, match="must be an object"):
            validate_filter(bad, KINDS)

    def test_too_many_values(self) -> None:
        with pytest.raises(ConfigError, match="more than"):
            build_filter({"lang": [str(i) for i in range(2000)]}, KINDS)


class TestFieldKinds:
    def test_adds_doc_id(self) -> None:
        assert field_kinds(None) == {"doc_id": "tag"}
        assert field_kinds({"year": "numeric"}) == {"doc_id": "tag", "year": "numeric"}

    def test_refuses_unknown_kinds(self) -> None:
        with pytest.raises(ConfigError, match="unknown kind"):
            field_kinds({"x": "vector"})


def test_filter_values_are_nfc_so_nfd_input_matches() -> None:
    from rag_core.filters import normalize_tag_value

    assert normalize_tag_value("Cafe\u0301") == normalize_tag_value("Caf\u00e9") == "Caf\u00e9"
