"""The SciFact retrieval benchmark (BEIR's ``scifact``) from its CSV files.

Document text = title + " " + abstract, query = claim, relevance = the union of
``cited_doc_ids`` over a claim's rows: exactly as BEIR / MTEB evaluate it.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import tokenize
from ast import literal_eval
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rag_core.errors import ConfigError

_INT = re.compile(r"\d+")


def parse_sentence_list(raw: str) -> list[str]:
    """A numpy-printed list of strings (no commas between items) → its strings.

    >>> parse_sentence_list("['One.'\\n 'Two, \\"quoted\\".']")
    ['One.', 'Two, "quoted".']
    """
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(raw).readline):
        if tok.type == tokenize.STRING:
            out.append(literal_eval(tok.string))
    return out


@dataclass(frozen=True)
class SciFact:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, abstract)
    queries: dict[str, str]             # claim id -> claim
    qrels: dict[str, set[str]]          # claim id -> relevant doc ids


def _open_csv(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    if not path.exists():
        raise ConfigError(f"SciFact file not found: {path} (pass --data-dir pointing at datasets/scifact)")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"SciFact file {path} lacks the column(s) {', '.join(missing)}")
            yield from reader
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"SciFact file {path} is not valid UTF-8 CSV: {exc}") from None


def load_scifact(data_dir: str | Path, split: str = "test") -> SciFact:
    if split not in ("test", "train"):
        raise ConfigError(f"--split must be test or train, got {split!r}")
    root = Path(data_dir)
    corpus = {row["doc_id"]: (row["title"].strip(), " ".join(parse_sentence_list(row["abstract"])))
              for row in _open_csv(root / "corpus.csv", ("doc_id", "title", "abstract"))}
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for row in _open_csv(root / f"claims_{split}.csv", ("id", "claim")):
        queries[row["id"]] = row["claim"]
        qrels.setdefault(row["id"], set()).update(_INT.findall(row.get("cited_doc_ids") or ""))
    return SciFact(corpus, queries, qrels)


def corpus_jsonl_rows(data: SciFact) -> Iterator[dict[str, str]]:
    """The corpus as ``beam-rag ingest`` JSONL rows."""
    for doc_id, (title, abstract) in data.corpus.items():
        yield {"id": doc_id, "title": title, "text": abstract}
