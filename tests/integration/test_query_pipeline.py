"""`beam-rag query` end to end: real Redis, an index built by the real ingest
pipeline, the packaged MiniLM and SmolLM2-135M, DirectRunner."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import cli, query
from rag_core.errors import ConfigError, IndexNotFoundError, ModelMismatchError
from rag_core.generation import GeneratorConfig, GeneratorModelHandler
from rag_core.embeddings import for_index
from rag_core.types import DeadLetter

MAX_CHARS = 200
FAST = ["--max-new-tokens", "32", "--max-question-chars", str(MAX_CHARS)]


def write_lines(path: Path, lines: Iterable[str | bytes | dict[str, Any]]) -> Path:
    data = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        data += (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
    path.write_bytes(data)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def alias(build_index: Any, facts: list[dict[str, Any]]) -> str:
    """One small index of the shared facts for the whole module."""
    return build_index(f"t_query_{int(time.time() * 1000) % 10**9}", facts)


def run_cli(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any] | None, str]:
    """``beam-rag query ...``: exit code, the summary (last stdout line) and stderr."""
    code = cli.main(["query", *args])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.strip()]
    return code, (json.loads(lines[-1]) if code == 0 and lines else None), err


class TestAnswering:
    def test_answers_abstains_and_dead_letters_with_counts_reconciling(
            self, tmp_path, redis_url, alias, record, capsys) -> None:
        questions = write_lines(tmp_path / "questions.jsonl", [
            {"id": "zorb", "question": "What is the capital of Zorbania?"},
            {"id": "cup", "question": "Who won the 1966 football world cup?"},
            {"id": "tides", "question": "What causes the tides?", "filter": {"region": "west"}},
            "",  # blank lines are not questions
            {"id": "empty", "question": "   "},
            {"id": "long", "question": "Why " * MAX_CHARS},
            b'{"id": "latin1", "question": "caf\xe9?"}',
            "{not json",
            {"id": "zorb", "question": "Second question with an id already used"},
            {"id": "badfilter", "question": "What makes iron rust?", "filter": {"colour": "red"}},
            # two names the sources never mention: no answer could clear --abstain-below, so none is generated
            {"id": "napoleon", "question": "When did Napoleon and Wellington visit the capital of Zorbania?"},
        ])
        output = tmp_path / "out" / "answers.jsonl"
        # Any Beam flag passes through the CLI to the pipeline.
        code, summary, err = run_cli(["--input", str(questions), "--output", str(output), "--index", alias,
                                      "--redis-url", redis_url, "--direct_num_workers", "1", *FAST], capsys)
        assert code == 0, err
        assert summary is not None
        assert summary["questions_read"] == 10
        assert summary["questions_answered"] == 4 and summary["questions_dead_lettered"] == 6
        assert summary["abstained_before_generation"] == 1
        assert summary["reconciled"] is True
        assert summary["index"] == record.index and summary["tokens_generated"] > 0
        assert summary["retrieval_latency_ms"]["count"] == 4

        assert sorted(p.name for p in output.parent.iterdir()) == ["answers.jsonl",
                                                                    "answers.jsonl.dead-letter.jsonl"]
        rows = {r["id"]: r for r in read_jsonl(output)}
        assert set(rows) == {"zorb", "cup", "tides", "napoleon"}
        for row in rows.values():
            assert list(row) == ["id", "question", "answer", "sources", "model", "index", "answer_generated", "answer_span", "confidence"]
            assert row["index"] == record.index and row["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        zorb = rows["zorb"]
        assert zorb["question"] == "What is the capital of Zorbania?"
        assert "Quillport" in zorb["answer"]
        if zorb["answer_span"]:  # grounded: the answer is a verifiable quote of the cited source
            span = zorb["answer_span"]
            assert zorb["sources"][span["source"]]["text"][span["start"]:span["end"]] == zorb["answer"]
            assert zorb["sources"][span["source"]]["cited"]
        assert 0.0 <= zorb["confidence"] <= 1.0
        assert zorb["sources"][0]["doc_id"] == "zorb" and zorb["sources"][0]["chunk_id"] == "zorb#0"
        assert set(zorb["sources"][0]) == {"chunk_id", "doc_id", "title", "score", "text", "cited"}
        assert "Quillport" in zorb["sources"][0]["text"] and zorb["sources"][0]["score"] > 0.5
        assert rows["cup"]["answer"] == "I don't know" and rows["cup"]["sources"] == []
        napoleon = rows["napoleon"]
        assert napoleon["answer"] == "I don't know" and napoleon["answer_generated"] is None
        assert napoleon["sources"][0]["doc_id"] == "zorb" and napoleon["confidence"] < 0.5  # what it judged stays
        assert [s["doc_id"] for s in rows["tides"]["sources"]] == ["tides"]  # the filter held
        assert rows["tides"]["answer"]

        letters = [DeadLetter.from_json(line) for line in
                   (output.parent / "answers.jsonl.dead-letter.jsonl").read_text().splitlines()]
        by_line = {int(d.source.rsplit(":", 1)[1]): d for d in letters}
        assert sorted(by_line) == [5, 6, 7, 8, 9, 10]  # line 4 is blank: not a question
        assert (by_line[5].id, by_line[5].stage, by_line[5].reason) == ("empty", "validate", "empty question")
        assert (by_line[6].id, by_line[6].stage) == ("long", "validate")
        assert by_line[6].reason == f"question longer than --max-question-chars ({4 * MAX_CHARS - 1} > {MAX_CHARS})"
        assert (by_line[7].stage, by_line[7].reason) == ("read", "undecodable bytes (not UTF-8)")
        assert by_line[8].stage == "read" and by_line[8].reason.startswith("malformed JSON")
        assert by_line[9].id == "zorb" and by_line[9].reason == f"duplicate question id 'zorb' (first at {questions}:1)"
        assert by_line[10].id == "badfilter" and "unknown filter field 'colour'" in by_line[10].reason
        assert all(d.source.startswith(str(questions) + ":") for d in letters)

    def test_a_failing_generation_batch_is_dead_lettered_and_the_rest_answered(
            self, tmp_path, redis_url, alias) -> None:
        questions = write_lines(tmp_path / "q.jsonl", [
            {"id": "zorb", "question": "What is the capital of Zorbania?"},
            {"id": "tides", "question": "What causes ocean tides?"},
            {"id": "cup", "question": "Who won the 1966 football world cup?"},
        ])
        output = tmp_path / "answers.jsonl"
        dead = tmp_path / "dead" / "letters.jsonl"
        summary = query.run(
            ["--input", str(questions), "--output", str(output), "--index", alias, "--redis-url", redis_url,
             "--dead-letter", str(dead), "--generation-batch-size", "1", "--no-large-model", *FAST],
            generator_handler=FailOnZorbania(GeneratorConfig(max_new_tokens=32, batch_size=1, large_model=False)))
        assert (summary["questions_read"], summary["questions_answered"], summary["questions_dead_lettered"]) == (
            3, 2, 1)
        assert summary["reconciled"] and summary["dead_letter"] == str(dead)
        assert {r["id"] for r in read_jsonl(output)} == {"tides", "cup"}
        [letter] = [DeadLetter.from_json(line) for line in dead.read_text().splitlines()]
        assert letter.id == "zorb" and letter.stage == "generate"
        assert letter.reason.startswith("generation failed: RuntimeError: ") and "GPU fell over" in letter.reason
        assert letter.source == f"{questions}:1"


class FailOnZorbania(GeneratorModelHandler):
    """The real generator, except that a batch holding a Zorbania prompt fails."""

    def run_inference(self, batch: Sequence[str], model: Any, inference_args: dict[str, Any] | None = None) -> Any:
        if any("Zorbania" in prompt for prompt in batch):
            raise RuntimeError("GPU fell over")
        return super().run_inference(batch, model, inference_args)


class TestRetrievalOnly:
    @pytest.mark.parametrize("fmt", ["csv", "parquet"])
    def test_text_questions_retrieval_only(self, tmp_path, redis_url, alias, record, fmt: str) -> None:
        questions = write_lines(tmp_path / "questions.txt", [
            "What is the capital of Zorbania?", "", "How do bees find flowers?"])
        output = tmp_path / f"answers.{fmt}"
        summary = query.run(["--input", str(questions), "--output", str(output), "--index", alias,
                             "--redis-url", redis_url, "--retrieval-only", "--top-k", "2",
                             "--output-format", fmt])
        assert (summary["questions_read"], summary["questions_answered"], summary["reconciled"]) == (2, 2, True)
        assert summary["model"] is None and summary["retrieval_only"] is True
        if fmt == "csv":
            reader = csv.DictReader(io.StringIO(output.read_text(encoding="utf-8")))
            assert reader.fieldnames == ["id", "question", "answer", "sources", "model", "index", "answer_generated", "answer_span", "confidence"]
            rows = {r["id"]: dict(r, sources=json.loads(r["sources"])) for r in reader}
            assert rows["1"]["answer"] == ""
        else:
            import pyarrow.parquet as pq

            rows = {r["id"]: r for r in pq.read_table(output).to_pylist()}
            assert rows["1"]["answer"] is None
        # Ids are line numbers; without --min-score every top-k passage is kept, ranked.
        assert set(rows) == {"1", "3"}
        assert [s["doc_id"] for s in rows["1"]["sources"]][0] == "zorb" and len(rows["1"]["sources"]) == 2
        assert rows["3"]["sources"][0]["doc_id"] == "bees"
        scores = [s["score"] for s in rows["3"]["sources"]]
        assert scores == sorted(scores, reverse=True)
        assert rows["3"]["index"] == record.index

    def test_sharded_jsonl_output(self, tmp_path, redis_url, alias) -> None:
        questions = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "tides?"}])
        summary = query.run(["--input", str(questions), "--output", str(tmp_path / "out"), "--index", alias,
                             "--redis-url", redis_url, "--retrieval-only", "--num-shards", "2"])
        shards = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out-"))
        assert shards == ["out-00000-of-00002", "out-00001-of-00002"] and summary["questions_answered"] == 1


class TestRefusals:
    @pytest.mark.parametrize("flags, match", [
        (["--embedding-model", "sentence-transformers/all-mpnet-base-v2"],
         "built with embedding model 'sentence-transformers/all-MiniLM-L6-v2'.*all-mpnet-base-v2"),
        (["--embedding-backend", "torch"], "built with embedding backend_family 'int8'.*'fp32'"),
    ])
    def test_model_mismatch_is_refused_before_anything_runs(self, tmp_path, redis_url, alias, capsys,
                                                            flags: list[str], match: str) -> None:
        questions = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "tides?"}])
        output = tmp_path / "answers.jsonl"
        args = ["--input", str(questions), "--output", str(output), "--index", alias, "--redis-url", redis_url,
                *flags]
        with pytest.raises(ModelMismatchError, match=match):
            query.run(args)
        code, _, err = run_cli(args, capsys)
        assert code == cli.EXIT_ERROR and err.startswith("beam-rag: error: Index ")
        assert not output.exists()

    def test_same_model_under_another_name_and_same_family_backend_are_accepted(self, record) -> None:
        assert record.embedding["backend"] == "onnx-int8"  # the build default
        config = for_index(record.embedding, record.index, model="all-MiniLM-L6-v2", backend="onnx-int8")
        assert config.backend == "onnx-int8" and config.backend_family == "int8"

    def test_unknown_index_and_missing_flags(self, tmp_path, redis_url) -> None:
        questions = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "tides?"}])
        with pytest.raises(IndexNotFoundError, match="t_nope"):
            query.run(["--input", str(questions), "--output", str(tmp_path / "o"), "--index", "t_nope",
                       "--redis-url", redis_url])
        with pytest.raises(ConfigError, match="--output is required"):
            query.run(["--input", str(questions), "--index", "t_nope", "--redis-url", redis_url])
        with pytest.raises(ConfigError, match="No files match"):
            query.run(["--input", str(tmp_path / "none*.jsonl"), "--output", "o", "--index", "t_nope",
                       "--redis-url", redis_url])

    def test_bigquery_output_builds_a_write_to_bigquery_step(self, tmp_path, redis_url, alias) -> None:
        questions = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "tides?"}])
        argv = ["--input", str(questions), "--output", "my-project:rag.answers", "--output-format", "bigquery",
                "--index", alias, "--redis-url", redis_url, "--dead-letter", str(tmp_path / "dead.jsonl")]
        options = PipelineOptions(argv)
        plan = query.plan_query(options, argv)
        pipeline = beam.Pipeline(options=options)
        query.build_pipeline(pipeline, options, plan)
        labels = [t.full_label for t in pipeline.transforms_stack[0].parts]
        assert "WriteAnswers" in labels and plan.dead_letter_path == str(tmp_path / "dead.jsonl")
        write = next(t for t in pipeline.transforms_stack[0].parts if t.full_label == "WriteAnswers")
        assert [p.full_label for p in write.parts] == ["WriteAnswers/WriteBigQuery"]

    def test_typed_answers_are_on_by_default_and_can_be_turned_off(self, tmp_path, redis_url, alias) -> None:
        questions = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "tides?"}])
        argv = ["--input", str(questions), "--output", str(tmp_path / "o"), "--index", alias, "--redis-url", redis_url]
        assert query.plan_query(PipelineOptions(argv), argv).policy.extract is True
        argv.append("--no-typed-answers")
        assert query.plan_query(PipelineOptions(argv), argv).policy.extract is False


class TestCommand:
    def test_help_lists_the_query_flags(self, capsys) -> None:
        assert cli.main(["query", "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: beam-rag query") and "--retrieval-only" in out and "--min-score" in out


    @pytest.mark.parametrize("module, prog", [("pipelines.query", "beam-rag query"),
                                              ("pipelines.ingest", "beam-rag ingest")])
    def test_python_m_help_runs_the_module_itself(self, module: str, prog: str) -> None:
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: {prog}") and "--index" in done.stdout and "--redis-url" in done.stdout
