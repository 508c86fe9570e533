"""Generator models for the integration tests: real, small, built or converted offline.

- ``smollm2_generator``: SmolLM2-135M-Instruct from the packaged GGUF, via the
  converted cache (the first run on a machine converts it, about 20-30 s).
- ``tiny_t5``: a randomly initialised 2-layer T5 with a SentencePiece tokenizer
  trained here, saved as a model folder and as a ``torch.save`` state dict.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
