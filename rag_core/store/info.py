"""``FT.INFO``: the one place its replies are read.

RediSearch answers ``FT.INFO`` with a flat RESP2 key/value list (redis-py's
``client.ft(name).info()`` pairs it into a dict); keys and scalar values arrive as
bytes or str, numbers as their text. :func:`parse_ft_info` turns either form into a
dict of str keys, and :class:`IndexStatus` is what callers ask of it: how many
documents are searchable and whether a (re-)index is still running, during which
searches silently miss documents.

Example:
    >>> reply = [b"index_name", b"kb__v1", b"num_docs", b"3", b"indexing", b"1", b"percent_indexed", b"0.5"]
    >>> status = IndexStatus.from_reply(reply)
    >>> status
    IndexStatus(index_name='kb__v1', num_docs=3, indexing=True, percent_indexed=0.5)
    >>> status.ready
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["UNKNOWN_INDEX_ERRORS", "IndexStatus", "ft_info", "index_status", "parse_ft_info"]

# How RediSearch versions word "no such index or alias" (lowercased), kept here rather
# than at each call site.
UNKNOWN_INDEX_ERRORS = ("unknown index", "no such index", "not found")


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def parse_ft_info(reply: Any) -> dict[str, Any]:
    """An ``FT.INFO`` reply (flat list or dict) → a dict of str keys; bytes scalars become str.

    Nested values (attributes, GC stats ...) are left as they came.

    >>> parse_ft_info([b"num_docs", b"2", "indexing", 0])
    {'num_docs': '2', 'indexing': 0}
    """
    if isinstance(reply, Mapping):
        pairs = list(reply.items())
    else:
        items = list(reply or [])
        pairs = list(zip(items[::2], items[1::2]))
    return {str(_text(key)): _text(value) for key, value in pairs}


def _number(fields: Mapping[str, Any], key: str, default: float) -> float:
    value = fields.get(key)
    if value is None or value == "":
        return default
    return float(value)


@dataclass(frozen=True)
class IndexStatus:
    """What an ``FT.INFO`` reply says about one index.

    Args:
        index_name: the index (an alias resolves to the index it serves).
        num_docs: documents searchable now.
        indexing: a (re-)index of existing keys is still running.
        percent_indexed: how much of that scan is done (1.0 when none runs).
    """

    index_name: str
    num_docs: int
    indexing: bool
    percent_indexed: float

    @classmethod
    def from_reply(cls, reply: Any) -> "IndexStatus":
        """From a raw reply, or from :func:`parse_ft_info`'s dict."""
        fields = parse_ft_info(reply)
        return cls(index_name=str(fields.get("index_name", "")),
                   num_docs=int(_number(fields, "num_docs", 0)),
                   indexing=bool(int(_number(fields, "indexing", 0))),
                   percent_indexed=_number(fields, "percent_indexed", 1.0))

    @property
    def ready(self) -> bool:
        """Fully indexed: a search now sees every document."""
        return not self.indexing and self.percent_indexed >= 1.0


def _is_unknown_index(exc: BaseException) -> bool:
    """Whether a ``redis.ResponseError`` means the index or alias does not exist."""
    text = str(exc).lower()
    return any(wording in text for wording in UNKNOWN_INDEX_ERRORS)


def ft_info(client: Any, index: str) -> dict[str, Any] | None:
    """``FT.INFO index`` as :func:`parse_ft_info`'s dict, or None when the index or alias does not exist."""
    import redis

    try:
        return parse_ft_info(client.execute_command("FT.INFO", index))
    except redis.ResponseError as exc:
        if _is_unknown_index(exc):
            return None
        raise


def index_status(client: Any, index: str) -> IndexStatus | None:
    """The :class:`IndexStatus` of ``index``, or None when it does not exist."""
    fields = ft_info(client, index)
    return None if fields is None else IndexStatus.from_reply(fields)
