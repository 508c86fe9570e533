"""Metadata filters for vector search: the ONE place caller values are escaped.

A user filter is a JSON-like object ``{field: value | [values]}``: every field
must match (AND), a list matches any of its values (OR). Fields are the
metadata keys of the index (stored in hash field ``md_<key>``, see
:func:`rag_core.store.schema.metadata_field`) plus ``doc_id``. Their kinds
(``tag`` or ``numeric``) come from the index's catalog record, so an unknown
field or a text value for a numeric field is a :class:`~rag_core.errors.ConfigError`,
never a query that silently matches nothing (or everything).

Expressions are built from redisvl's ``Tag`` / ``Num`` filter objects, never
from f-strings of caller values. Tag values go through :func:`escape_tag_value`,
which escapes **every ASCII character that is not a letter, digit or ``_``**.
redisvl's own tag escaper (``TokenEscaper.TAG_ESCAPED_CHARS``) misses tab, newline,
carriage return and backtick, which RediSearch 2.10 reads as term separators
(``@f:{a<TAB>b}`` matches the tag ``a b``); older redisvl releases did not escape
``|`` either. Non-ASCII characters are passed through unescaped, because a
backslash before them stops them matching (tested against RediSearch 2.10).

Before escaping, a tag value gets the normalisation its stored copy got, so it
matches literally what was indexed: control characters are dropped (as
:func:`rag_core.documents.clean_text` does at ingest), ``\\r\\n`` becomes ``\\n``,
and leading/trailing ASCII whitespace is trimmed (RediSearch trims tags when
indexing). A value that is empty after that is refused: redisvl would render
it as ``*``, which matches every document.

Example:
    >>> kinds = {"doc_id": "tag", "lang": "tag", "year": "numeric"}
    >>> filter_string({"lang": "en-GB", "year": [2023, 2024]}, kinds)
    '(@md_lang:{en\\\\-GB} (@md_year:[2023 2023] | @md_year:[2024 2024]))'
    >>> filter_string(None, kinds)
    '*'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable, Mapping

from redisvl.query.filter import FilterExpression, Num, Tag
from redisvl.utils.token_escaper import TokenEscaper

from rag_core.errors import ConfigError
from rag_core.store.schema import FieldKind, metadata_field
from rag_core.validation import is_number

__all__ = [
    "BUILTIN_FIELDS",
    "UserFilter",
    "build_filter",
    "escape_query_term",
    "escape_tag_value",
    "field_kinds",
    "filter_string",
    "normalize_tag_value",
    "validate_filter",
]

UserFilter = Mapping[str, Any]

# Index fields (not metadata) a filter may name, with their kinds.
BUILTIN_FIELDS: dict[str, FieldKind] = {"doc_id": "tag"}

# Every ASCII character except letters, digits and "_" (the RediSearch query
# parser treats any other ASCII character as punctuation or a separator).
_TAG_SPECIAL = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]")
# What ingestion strips from stored metadata (rag_core.documents.clean_text).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What RediSearch trims from both ends of a tag value when indexing.
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c"
_MAX_VALUES = 1024


class _LiteralTagEscaper(TokenEscaper):
    """A redisvl escaper whose pattern covers all ASCII punctuation and whitespace."""

    def __init__(self) -> None:
        super().__init__(escape_chars_re=_TAG_SPECIAL)
        # Only the equality path is used; wildcards are never preserved.
        self.escaped_chars_no_wildcard_re = _TAG_SPECIAL


class _LiteralTag(Tag):
    """redisvl ``Tag`` with our escaper: every value matches literally."""

    escaper: TokenEscaper = _LiteralTagEscaper()


def normalize_tag_value(value: Any) -> str:
    """The form a tag value has in the index: what a filter must look for.

    Booleans become ``true``/``false`` and numbers their ``str`` (as the writer
    stores them); control characters are dropped and ASCII whitespace is trimmed.

    >>> normalize_tag_value("  en\\x00 "), normalize_tag_value(True), normalize_tag_value(2.5)
    ('en', 'true', '2.5')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"filter values must be strings or numbers, got {type(value).__name__}")
    text = _CONTROL_CHARS.sub("", value.replace("\r\n", "\n")).strip(_ASCII_WHITESPACE)
    return unicodedata.normalize("NFC", text)  # a filter typed in NFD matches the NFC the index holds


def escape_tag_value(value: str) -> str:
    """Escape one (normalised) tag value for ``@field:{...}``.

    >>> escape_tag_value("a|b c*")
    'a\\\\|b\\\\ c\\\\*'
    >>> escape_tag_value("日本語")
    '日本語'
    """
    return _LiteralTag.escaper.escape(value)


def escape_query_term(term: str) -> str:
    """Escape one word of a full-text query (``@text:(w1|w2)``): the same rule as tag values,
    so no query operator can pass (see :mod:`rag_core.hybrid`).

    >>> escape_query_term("il-6"), escape_query_term("$vec")
    ('il\\\\-6', '\\\\$vec')
    """
    return _LiteralTag.escaper.escape(term)


def field_kinds(metadata_fields: Mapping[str, str] | None) -> dict[str, FieldKind]:
    """Filterable fields of an index: its metadata field kinds plus ``doc_id``.

    ``metadata_fields`` is ``VersionRecord.spec["metadata_fields"]``.

    >>> field_kinds({"lang": "tag"})
    {'doc_id': 'tag', 'lang': 'tag'}
    """
    kinds: dict[str, FieldKind] = dict(BUILTIN_FIELDS)
    for name, kind in (metadata_fields or {}).items():
        if kind not in ("tag", "numeric"):
            raise ConfigError(f"metadata field {name!r} has unknown kind {kind!r}")
        if name in BUILTIN_FIELDS:
            continue
        kinds[name] = "tag" if kind == "tag" else "numeric"
    return kinds


def _values(name: str, raw: Any) -> list[Any]:
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not values:
        raise ConfigError(f"filter field {name!r} has an empty list of values")
    if len(values) > _MAX_VALUES:
        raise ConfigError(f"filter field {name!r} has more than {_MAX_VALUES} values")
    for value in values:
        if isinstance(value, (dict, list, tuple, set)) or value is None:
            raise ConfigError(
                f"filter field {name!r}: each value must be a string or a number, got {value!r}")
    return values


def _tag_expression(name: str, values: Iterable[Any]) -> FilterExpression:
    tags: list[str] = []
    for value in values:
        tag = normalize_tag_value(value)
        if not tag:
            raise ConfigError(f"filter field {name!r} has an empty value (after trimming whitespace)")
        if tag not in tags:
            tags.append(tag)
    field = name if name in BUILTIN_FIELDS else metadata_field(name)
    return _LiteralTag(field) == tags


def _numeric_expression(name: str, values: Iterable[Any]) -> FilterExpression:
    expression: FilterExpression | None = None
    for value in values:
        if not is_number(value):
            if isinstance(value, float):  # nan, inf
                raise ConfigError(f"filter field {name!r}: {value!r} is not a finite number")
            raise ConfigError(
                f"filter field {name!r} is numeric: its values must be numbers, got {value!r}")
        clause = Num(metadata_field(name)) == (int(value) if isinstance(value, int) else float(value))
        expression = clause if expression is None else expression | clause
    assert expression is not None  # _values refuses an empty list
    return expression


def build_filter(user_filter: UserFilter | None,
                 kinds: Mapping[str, FieldKind]) -> FilterExpression | None:
    """A redisvl ``FilterExpression`` for ``user_filter``, or None for no filter.

    Args:
        user_filter: ``{field: value | [values]}``; None or ``{}`` means no filter.
        kinds: filterable fields and their kinds, from :func:`field_kinds`.

    Raises:
        ConfigError: not an object, unknown field, empty or non-scalar value,
            or a non-number for a numeric field.
    """
    if user_filter is None:
        return None
    if not isinstance(user_filter, Mapping):
        raise ConfigError(
            f"a filter must be an object of field: value(s), got {type(user_filter).__name__}")
    expression: FilterExpression | None = None
    for name in sorted(user_filter):
        if not isinstance(name, str) or name not in kinds:
            known = ", ".join(sorted(kinds)) or "none"
            raise ConfigError(f"unknown filter field {name!r}: this index can filter on {known}")
        values = _values(name, user_filter[name])
        clause = (_tag_expression(name, values) if kinds[name] == "tag"
                  else _numeric_expression(name, values))
        expression = clause if expression is None else expression & clause
    return expression


def filter_string(user_filter: UserFilter | None, kinds: Mapping[str, FieldKind]) -> str:
    """The query-string form of :func:`build_filter`; ``*`` when there is no filter."""
    expression = build_filter(user_filter, kinds)
    return "*" if expression is None else str(expression)


def validate_filter(user_filter: Any, kinds: Mapping[str, FieldKind]) -> None:
    """Raise :class:`ConfigError` if ``user_filter`` could not be used; else return."""
    build_filter(user_filter, kinds)
