"""RedisVectorSearchHandler against an index built by the real ingest pipeline
(real Redis, the packaged MiniLM, DirectRunner)."""

from __future__ import annotations

import dataclasses

import pickle
import time
from typing import Any, Iterator

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.enrichment import Enrichment

from rag_core.embeddings import EmbeddingConfig, embed_texts, load_sentence_transformer
from rag_core.enrichment import (
    ENRICHMENT_KEY, RETRIEVAL_KEY, OnUnavailable, RedisVectorSearchHandler, VectorSearchParameters, join_hits,
)
from rag_core.errors import ConfigError, IndexNotFoundError, ModelMismatchError, RedisUnavailableError
from rag_core.retry import RetryPolicy
from rag_core.store.catalog import VersionRecord
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import IndexLayout
from rag_core.types import Chunk, Content, Embedding

# Tag values that change a RediSearch query if any character is not escaped, plus
# whitespace, unicode and case variants. Each is stored on exactly one document.
HOSTILE = [
    "a|b", "a", "b", "*", "@x:{y}", "}", "{", "\\", "a b", "a  b", "a-b", "-a", "a,b", "a.b", "a\tb", "a\nb",
    "a`b", "$vector", "=>[KNN 1 @embedding $vector]", "(x)", "[x]", '"q"', "'s'", "a:b", "a;b", "a!b", "a#b",
    "a^b", "a&b", "a+b", "a=b", "a/b", "a?b", "a<b>", "x*", "%x%", "~a", "{a|b}", "\\|", "' OR 1=1 --", "A",
    "héllo wörld", "日本語", "😀", "a\u00a0b", "a\u3000b", "\u200b", "ab\u2028c", " padded ",
]
HOSTILE_DOC_IDS = ["guide#1 (v2)|x", "@doc_id:{*}", "dash-id"]


def _filler(i: int) -> str:
    return f"Filler note number {i} about nothing in particular, kept for metadata filter tests."


@pytest.fixture(scope="module")
def alias(build_index: Any, facts: list[dict[str, Any]]) -> str:
    """The shared facts, plus one document per hostile tag value and per hostile id, in an
    HNSW index (the default ``auto`` would make a build this small FLAT) so searches send EF_RUNTIME."""
    rows: list[dict[str, Any]] = list(facts)
    rows += [{"id": f"h{i}", "title": f"Hostile {i}", "text": _filler(i), "metadata": {"label": v, "rank": i}}
             for i, v in enumerate(HOSTILE)]
    rows += [{"id": d, "title": "Odd id", "text": f"A document with an unusual id {n}."}
             for n, d in enumerate(HOSTILE_DOC_IDS)]
    return build_index(f"t_enrich_{int(time.time() * 1000) % 10**9}", rows, "--index-type", "hnsw")


@pytest.fixture(scope="module")
def embedder(record: VersionRecord) -> Any:
    config = EmbeddingConfig.from_description(record.embedding)
    model = load_sentence_transformer(config)
    return lambda texts: embed_texts(model, texts, config)


@pytest.fixture(scope="module")
def handler(redis_conn: RedisConnection, alias: str) -> Iterator[RedisVectorSearchHandler]:
    with RedisVectorSearchHandler(redis_conn, VectorSearchParameters(alias, top_k=3)) as entered:
        yield entered


@pytest.fixture(scope="module")
def filter_handler(redis_conn: RedisConnection, alias: str) -> Iterator[RedisVectorSearchHandler]:
    """top_k larger than the corpus, so a filter's hits are every document it matches."""
    with RedisVectorSearchHandler(redis_conn, VectorSearchParameters(alias, top_k=200, return_text=False)) as entered:
        yield entered


def question(embedder: Any, text: str, qid: str = "q", filt: dict[str, Any] | None = None) -> Chunk:
    vector = embedder([text])[0]
    metadata = {"filter": filt} if filt is not None else {}
    return Chunk(content=Content(text=text), id=qid, metadata=metadata,
                 embedding=Embedding(dense_embedding=[float(x) for x in vector]))


def hits_of(handler: RedisVectorSearchHandler, request: Chunk) -> list[dict[str, Any]]:
    _, response = handler(request)
    return list(response["hits"])


class TestRetrieval:
    def test_nearest_neighbour_is_the_expected_document(self, handler, embedder, record) -> None:
        hits = hits_of(handler, question(embedder, "What is the capital city of Zorbania?"))
        assert [h["doc_id"] for h in hits][:1] == ["zorb"]
        top = hits[0]
        assert set(top) == {"chunk_id", "doc_id", "title", "text", "score", "chunk_index"}
        assert top["chunk_id"] == "zorb#0" and top["title"] == "Zorbania" and top["chunk_index"] == 0
        assert "Quillport" in top["text"]
        assert 0.5 < top["score"] <= 1.0
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert len(hits) == 3

    def test_score_is_cosine_similarity(self, handler, embedder, record, facts) -> None:
        text = facts[1]["text"]
        hits = hits_of(handler, question(embedder, text))
        # The question is the chunk's own text: similarity ~1 (the stored title is not embedded).
        assert hits[0]["doc_id"] == "bees" and hits[0]["score"] > 0.6

    def test_response_names_the_version_searched(self, handler, embedder, record) -> None:
        _, response = handler(question(embedder, "tides"))
        assert response["index"] == record.index and response["batch_size"] == 1
        assert handler.index_info.dimension == 384

    def test_a_batch_answers_each_question_in_order(self, handler, embedder) -> None:
        texts = ["What makes iron rust?", "How do bees tell others where flowers are?", "What causes tides?"]
        requests = [question(embedder, t, qid=f"q{i}") for i, t in enumerate(texts)]
        pairs = handler(requests)
        assert [req.id for req, _ in pairs] == ["q0", "q1", "q2"]
        assert [resp["hits"][0]["doc_id"] for _, resp in pairs] == ["rust", "bees", "tides"]
        # One pipelined round trip for the whole batch: one latency, batch size 3.
        assert {resp["batch_size"] for _, resp in pairs} == {3}
        assert len({resp["latency_ms"] for _, resp in pairs}) == 1

    def test_identical_questions_in_one_batch_both_get_results(self, handler, embedder) -> None:
        same = question(embedder, "What is the capital of Zorbania?", qid="dup")
        twin = question(embedder, "What is the capital of Zorbania?", qid="dup")
        other = question(embedder, "What is the capital of Zorbania?", qid="dup2")
        pairs = handler([same, twin, other])
        assert len(pairs) == 3
        hit_lists = [resp["hits"] for _, resp in pairs]
        assert all(h and h[0]["doc_id"] == "zorb" for h in hit_lists)
        assert hit_lists[0] == hit_lists[1] == hit_lists[2]
        assert pairs[0][0] is same and pairs[1][0] is twin

    def test_empty_batch(self, handler) -> None:
        assert handler([]) == []

    def test_score_threshold_drops_weak_passages(self, redis_conn, alias, embedder) -> None:
        params = VectorSearchParameters(alias, top_k=5, score_threshold=0.5)
        with RedisVectorSearchHandler(redis_conn, params) as strict:
            on_topic = hits_of(strict, question(embedder, "What is the capital of Zorbania?"))
            off_topic = hits_of(strict, question(embedder, "Who won the 1966 football world cup?"))
        assert [h["doc_id"] for h in on_topic] == ["zorb"]
        assert all(h["score"] >= 0.5 for h in on_topic)
        assert off_topic == []

    def test_ef_runtime_and_no_text(self, redis_conn, alias, embedder) -> None:
        params = VectorSearchParameters(alias, top_k=2, ef_runtime=64, return_text=False)
        with RedisVectorSearchHandler(redis_conn, params) as tuned:
            assert tuned.index_info.algorithm == "hnsw" and tuned.index_info.ef_runtime_for(params) == 64
            hits = hits_of(tuned, question(embedder, "What causes ocean tides?"))
        assert hits[0]["doc_id"] == "tides" and hits[0]["text"] is None

    def test_pinned_version(self, redis_conn, record, embedder) -> None:
        alias_of, layout = IndexLayout.parse(record.index)
        assert layout is not None and layout.version == record.version and alias_of == record.index.split("__")[0]
        with RedisVectorSearchHandler(redis_conn, VectorSearchParameters(record.index, top_k=1)) as pinned:
            request = question(embedder, "bees")
            assert pinned(request)[1]["index"] == record.index

    def test_through_beam_enrichment(self, handler, embedder, redis_conn, alias) -> None:
        texts = {"q-zorb": "capital of Zorbania", "q-rust": "Why does iron rust?",
                 "q-bees": "waggle dance of honey bees", "q-dup": "capital of Zorbania"}
        requests = [question(embedder, t, qid=qid) for qid, t in texts.items()]
        requests.append(question(embedder, "Which region?", qid="q-filtered", filt={"region": "west"}))
        handler = RedisVectorSearchHandler(redis_conn, VectorSearchParameters(alias, top_k=2), max_batch_size=8)
        with BeamTestPipeline() as p:
            top = (p
                   | beam.Create(requests)
                   | Enrichment(handler, join_fn=join_hits, timeout=handler.worst_case_seconds())
                   | beam.Map(lambda c: (c.id, c.metadata[ENRICHMENT_KEY][0]["doc_id"],
                                         c.metadata[RETRIEVAL_KEY]["index"].startswith(alias + "__"),
                                         c.content.text == texts.get(c.id, "Which region?"))))
            assert_that(top, equal_to([("q-zorb", "zorb", True, True), ("q-rust", "rust", True, True),
                                       ("q-bees", "bees", True, True), ("q-dup", "zorb", True, True),
                                       ("q-filtered", "tides", True, True)]))

    def test_join_does_not_modify_the_request(self, handler, embedder) -> None:
        request = question(embedder, "tides", qid="t")
        joined = join_hits(*handler(request))
        assert ENRICHMENT_KEY not in request.metadata and joined.metadata[ENRICHMENT_KEY]
        assert joined.id == "t" and joined.content.text == "tides"

    def test_handler_pickles_without_its_client(self, handler) -> None:
        clone = pickle.loads(pickle.dumps(handler))
        assert clone._client is None and clone._info is None
        assert clone.search_parameters == handler.search_parameters and clone.connection == handler.connection
        assert clone.retry == handler.retry and clone.on_unavailable is OnUnavailable.RAISE


class TestFilters:
    @pytest.mark.parametrize("index_of_value", range(len(HOSTILE)), ids=[repr(v) for v in HOSTILE])
    def test_hostile_tag_value_matches_exactly_its_document(self, filter_handler, embedder,
                                                            index_of_value: int) -> None:
        value = HOSTILE[index_of_value]
        hits = hits_of(filter_handler, question(embedder, "filler note", filt={"label": value}))
        assert {h["doc_id"] for h in hits} == {f"h{index_of_value}"}

    def test_a_list_of_hostile_values_is_a_union(self, filter_handler, embedder) -> None:
        hits = hits_of(filter_handler, question(embedder, "filler", filt={"label": HOSTILE[:8]}))
        assert {h["doc_id"] for h in hits} == {f"h{i}" for i in range(8)}

    @pytest.mark.parametrize("doc_id", HOSTILE_DOC_IDS)
    def test_doc_id_filter(self, filter_handler, embedder, doc_id: str) -> None:
        hits = hits_of(filter_handler, question(embedder, "unusual id", filt={"doc_id": doc_id}))
        assert {h["doc_id"] for h in hits} == {doc_id}

    def test_numeric_and_tag_fields_combine(self, filter_handler, embedder) -> None:
        assert {h["doc_id"] for h in hits_of(filter_handler, question(
            embedder, "x", filt={"rank": [1, 2]}))} == {"h1", "h2"}
        assert {h["doc_id"] for h in hits_of(filter_handler, question(
            embedder, "x", filt={"region": "north", "year": 2010}))} == {"rust"}

    def test_filtered_nearest_neighbour(self, handler, embedder) -> None:
        hits = hits_of(handler, question(embedder, "What is the capital of Zorbania?", filt={"region": "south"}))
        assert [h["doc_id"] for h in hits] == ["bees"]

    def test_unknown_field_and_wrong_kind_are_refused(self, handler, embedder) -> None:
        with pytest.raises(ConfigError, match="unknown filter field 'colour'"):
            handler(question(embedder, "x", filt={"colour": "red"}))
        with pytest.raises(ConfigError, match="'year' is numeric"):
            handler(question(embedder, "x", filt={"year": "2001"}))


class TestRefusals:
    def test_dimension_mismatch(self, handler) -> None:
        bad = Chunk(content=Content(text="q"), id="short", embedding=Embedding(dense_embedding=[0.1] * 10))
        with pytest.raises(ModelMismatchError, match="10-dimensional.*384-dimensional"):
            handler(bad)

    def test_missing_embedding(self, handler) -> None:
        with pytest.raises(ConfigError, match="no dense embedding"):
            handler(Chunk(content=Content(text="q"), id="none"))

    def test_expected_model_mismatch_is_refused_on_enter(self, redis_conn, alias) -> None:
        params = VectorSearchParameters(alias, expected_embedding={"model": "other/model"})
        with pytest.raises(ModelMismatchError, match="other/model"):
            RedisVectorSearchHandler(redis_conn, params).__enter__()

    def test_unknown_index(self, redis_conn) -> None:
        with pytest.raises(IndexNotFoundError, match="does not exist"):
            RedisVectorSearchHandler(redis_conn, VectorSearchParameters("t_no_such_index")).__enter__()

    def test_batching_and_cache_key(self, handler, embedder) -> None:
        assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 32}
        a = question(embedder, "tides", qid="a")
        b = question(embedder, "tides", qid="b")
        c = question(embedder, "tides", qid="c", filt={"region": "west"})
        assert handler.get_cache_key(a) == handler.get_cache_key(b) != handler.get_cache_key(c)


class TestRedisUnavailable:
    def test_down_redis_fails_fast_naming_the_url_not_the_password(self, free_port) -> None:
        port = free_port()
        conn = RedisConnection.from_url(f"redis://:s3cret-pw@127.0.0.1:{port}/0", connect_timeout=0.5)
        handler = RedisVectorSearchHandler(conn, VectorSearchParameters("docs"),
                                           retry=RetryPolicy(max_retries=2, backoff_s=0.05))
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError) as info:
            handler.__enter__()
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert f"redis://127.0.0.1:{port}/0" in message and "3 attempts" in message
        assert "s3cret" not in message and "s3cret" not in repr(handler)

    def test_transient_stall_is_retried_then_a_long_one_gives_up(self, redis_client, redis_conn, alias,
                                                                 embedder) -> None:
        conn = dataclasses.replace(redis_conn, socket_timeout=0.3)
        request = question(embedder, "What is the capital of Zorbania?")
        patient = RedisVectorSearchHandler(conn, VectorSearchParameters(alias),
                                           retry=RetryPolicy(max_retries=6, backoff_s=0.1))
        hasty = RedisVectorSearchHandler(conn, VectorSearchParameters(alias),
                                         retry=RetryPolicy(max_retries=1, backoff_s=0.05))
        with patient, hasty:
            try:
                redis_client.execute_command("CLIENT", "PAUSE", 700, "ALL")
                _, response = patient(request)  # times out, backs off, then succeeds
                assert response["hits"][0]["doc_id"] == "zorb"
                redis_client.execute_command("CLIENT", "PAUSE", 2000, "ALL")
                with pytest.raises(RedisUnavailableError, match=r"Searching in Redis at redis://127\.0\.0\.1"):
                    hasty(request)
            finally:
                redis_client.execute_command("CLIENT", "UNPAUSE")


_BUSY_LUA = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) + tonumber(t0[2]) / 1e6
while true do
  local t = redis.call('TIME')
  if tonumber(t[1]) + tonumber(t[2]) / 1e6 - start > tonumber(ARGV[1]) then break end
end
return 1
"""


class TestRedisErrorReplies:
    """Error replies, not lost connections: retried when transient, else dead-lettered or re-resolved."""

    def test_busy_server_is_retried(self, redis_conn, redis_client, alias, embedder) -> None:
        import threading

        request = question(embedder, "What is the capital of Zorbania?")
        handler = RedisVectorSearchHandler(redis_conn, VectorSearchParameters(alias),
                                           retry=RetryPolicy(max_retries=10, backoff_s=0.1, max_backoff_s=0.3))
        threshold = redis_client.config_get("busy-reply-threshold")["busy-reply-threshold"]
        blocker = redis_conn.client()
        with handler:
            try:
                redis_client.config_set("busy-reply-threshold", 50)
                script = threading.Thread(target=blocker.eval, args=(_BUSY_LUA, 0, 1.0))
                script.start()
                time.sleep(0.2)  # the script is running: every other command gets BUSY
                _, response = handler(request)
                script.join()
            finally:
                redis_client.config_set("busy-reply-threshold", threshold)
                blocker.close()
        assert response["hits"][0]["doc_id"] == "zorb" and "error" not in response

    def test_pruned_version_is_re_resolved_through_the_alias(self, redis_conn, redis_client, build_index, facts,
                                                             embedder) -> None:
        name = build_index(f"t_prune_{int(time.time() * 1000) % 10**9}", facts)
        handler = RedisVectorSearchHandler(redis_conn, VectorSearchParameters(name, top_k=2),
                                           on_unavailable=OnUnavailable.REPORT)
        request = question(embedder, "How do bees tell others where flowers are?")
        with handler:
            first = handler.index_info.index
            build_index(name, facts, "--keep-versions", "0")  # publishes a new version, drops `first`
            assert redis_client.exists(f"beamrag:{name}:{first.split('__')[1]}:zorb#0") == 0
            _, response = handler(request)
        assert "error" not in response and response["hits"][0]["doc_id"] == "bees"
        assert response["index"] != first and response["index"].startswith(name + "__")

    def test_dropped_pinned_version_dead_letters_with_the_reason(self, redis_conn, redis_client, build_index,
                                                                 facts, embedder) -> None:
        name = build_index(f"t_drop_{int(time.time() * 1000) % 10**9}", facts)
        with RedisVectorSearchHandler(redis_conn, VectorSearchParameters(name)) as probe:
            pinned = probe.index_info.index
        request = question(embedder, "What is the capital of Zorbania?")
        report = RedisVectorSearchHandler(redis_conn, VectorSearchParameters(pinned),
                                          on_unavailable=OnUnavailable.REPORT)
        with report:
            redis_client.execute_command("FT.DROPINDEX", pinned)
            _, response = report(request)
        assert response["hits"] == [] and response["index"] == pinned
        assert response["error"].startswith(f"Redis refused the search of {pinned}: ")
        assert "index" in response["error"].lower()
