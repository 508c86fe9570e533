"""The integration tests' shared corpus, and their generator models (real, small, built or converted offline).

- ``facts``: the shared test corpus, four short documents (one chunk each) with tag and
  numeric metadata; ``build_index`` builds rows like these into an index with the real
  ingest pipeline. Tests that need more documents add their own rows to the facts.

- ``smollm2_generator``: SmolLM2-135M-Instruct from the packaged GGUF, via the
  converted cache (the first run on a machine converts it, about 20-30 s).
- ``tiny_t5``: a randomly initialised 2-layer T5 with a SentencePiece tokenizer
  trained here, saved as a model folder and as a ``torch.save`` state dict.
"""

from __future__ import annotations

import copy
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pytest

from rag_core.store.catalog import IndexCatalog, VersionRecord

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_FACTS = (
    {"id": "zorb", "title": "Zorbania", "text": "The capital of Zorbania is Quillport, a harbour city.",
     "metadata": {"region": "north", "year": 2001}},
    {"id": "bees", "title": "Bees", "text": "Honey bees communicate the location of flowers with a waggle dance.",
     "metadata": {"region": "south", "year": 1999}},
    {"id": "rust", "title": "Iron", "text": "Iron rusts when it reacts with oxygen and water over time.",
     "metadata": {"region": "north", "year": 2010}},
    {"id": "tides", "title": "Tides", "text": "Ocean tides are caused mainly by the gravitational pull of the Moon.",
     "metadata": {"region": "west", "year": 1985}},
)


@pytest.fixture(scope="session")
def facts() -> list[dict[str, Any]]:
    """The shared test corpus: one fact per document, ids ``zorb``, ``bees``, ``rust``, ``tides``.

    Session-wide, so treat it as read-only: add rows with ``facts + [...]``.
    """
    return copy.deepcopy(list(_FACTS))


@pytest.fixture(scope="session")
def build_index(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """``build_index(name, rows, *flags)``: ``rows`` built into index ``name`` by the real ingest
    pipeline (every row indexed), returning ``name``."""
    from pipelines import ingest

    def build(name: str, rows: Sequence[Mapping[str, Any]], *flags: str) -> str:
        path = tmp_path_factory.mktemp(name) / "docs.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        summary = ingest.run(["--input", str(path), "--index", name, "--redis-url", redis_url, *flags])
        assert summary["documents_indexed"] == len(rows), summary
        return name

    return build


@pytest.fixture(scope="module")
def record(redis_conn: Any, alias: str) -> VersionRecord:
    """The version the module's ``alias`` index serves (for modules that define an ``alias`` fixture)."""
    client = redis_conn.client()
    try:
        return IndexCatalog(client, alias).current()
    finally:
        client.close()


# A small, varied English text: every letter appears, so the tokenizer can spell anything.
_CORPUS = [
    " ".join(string.ascii_lowercase),
    " ".join(string.ascii_uppercase),
    "0 1 2 3 4 5 6 7 8 9 . , ; : ? ! ' \" ( ) [ ] - / < > | _",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Mercury is the smallest planet in the solar system and the closest to the Sun.",
    "Question answering systems retrieve passages and generate short answers.",
    "Answer the question using only the context. If unsure, say I don't know.",
    "Beam pipelines batch elements and run inference on each batch of prompts.",
]


@dataclass(frozen=True)
class TinyT5:
    folder: Path  # model + tokenizer, loadable with from_pretrained
    state_dict: Path  # torch.save(model.state_dict())


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> TinyT5:
    import sentencepiece as spm
    import torch
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    root = tmp_path_factory.mktemp("tiny_t5")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS * 4), encoding="utf-8")
    sp_dir = root / "sp"
    sp_dir.mkdir()
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(sp_dir / "spiece"), vocab_size=200,
        hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )
    # transformers 5: T5Tokenizer(vocab_file=...) silently ignores the file;
    # from_pretrained on a folder holding spiece.model converts it properly.
    tokenizer = T5Tokenizer.from_pretrained(str(sp_dir))
    assert len(tokenizer) > 100 and tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=2,
        num_decoder_layers=2, num_heads=2, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).eval()
    folder = root / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    state_dict = root / "t5.pt"
    torch.save(model.state_dict(), state_dict)
    return TinyT5(folder=folder, state_dict=state_dict)


@pytest.fixture(scope="session")
def smollm2_generator() -> Iterator[object]:
    from rag_core.generation import GeneratorConfig, GeneratorModelHandler

    handler = GeneratorModelHandler(GeneratorConfig(max_new_tokens=16, num_threads=1))
    yield handler.load_model()
