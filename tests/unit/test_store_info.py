"""rag_core.store.info: the one FT.INFO reply parser (replies written by hand, RESP2 and dict forms)."""

from __future__ import annotations

import pytest

from rag_core.store.info import IndexStatus, parse_ft_info

RAW = [b"index_name", b"kb__v1", b"index_options", [], b"num_docs", b"120", b"indexing", b"0",
       b"percent_indexed", b"1", b"attributes", [[b"identifier", b"text"]], b"vector_index_sz_mb", b"0.5"]


class TestParseFtInfo:
    def test_flat_list(self) -> None:
        fields = parse_ft_info(RAW)
        assert fields["index_name"] == "kb__v1" and fields["num_docs"] == "120"
        assert fields["attributes"] == [[b"identifier", b"text"]]  # nested values as they came

    def test_dict_form_and_empty(self) -> None:
        assert parse_ft_info({b"num_docs": 3, "indexing": b"1"}) == {"num_docs": 3, "indexing": "1"}
        assert parse_ft_info(None) == {} and parse_ft_info([]) == {}


class TestIndexStatus:
    def test_ready_index(self) -> None:
        status = IndexStatus.from_reply(RAW)
        assert status == IndexStatus("kb__v1", 120, False, 1.0) and status.ready

    @pytest.mark.parametrize("reply, ready", [
        ([b"indexing", b"1", b"percent_indexed", b"0.25"], False),
        ([b"indexing", 0, b"percent_indexed", "0.999"], False),
        ({"indexing": "0", "percent_indexed": "1"}, True),
        ([b"num_docs", b"0"], True),  # no scan reported: nothing running
    ])
    def test_reindexing(self, reply: object, ready: bool) -> None:
        assert IndexStatus.from_reply(reply).ready is ready

    def test_parsed_dict_is_accepted_too(self) -> None:
        assert IndexStatus.from_reply(parse_ft_info(RAW)) == IndexStatus.from_reply(RAW)

    def test_float_counts(self) -> None:
        status = IndexStatus.from_reply([b"num_docs", b"7.0", b"indexing", b"1.0", b"percent_indexed", b""])
        assert status.num_docs == 7 and status.indexing and status.percent_indexed == 1.0
