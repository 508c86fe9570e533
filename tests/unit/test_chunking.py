import random

import pytest

from rag_core.chunking import Chunker, ChunkingConfig, content_hash, embedding_input, plan_chunks
from rag_core.errors import ConfigError
from rag_core.types import Document


def word_spans(texts):
    """A whitespace 'tokenizer': one token per word, with character offsets."""
    out = []
    for text in texts:
        spans, pos = [], 0
        for word in text.split():
            start = text.index(word, pos)
            spans.append((start, start + len(word)))
            pos = start + len(word)
        out.append(spans)
    return out


def words(n, seed=0):
    rng = random.Random(seed)
    return " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(n))


class TestPlanChunks:
    def test_short_text_is_one_chunk(self):
        spans = plan_chunks("One sentence. Two sentences.", word_spans, budget=50, overlap=5)
        assert len(spans) == 1 and spans[0].tokens == 4

    @pytest.mark.parametrize("seed", range(20))
    def test_never_over_budget_and_covers_every_word(self, seed):
        rng = random.Random(seed)
        sentences = [words(rng.randint(1, 40), seed + i) + rng.choice([".", "!", "?"]) for i in range(30)]
        text = ""
        for s in sentences:
            text += s + rng.choice([" ", "\n\n", "  "])
        budget, overlap = rng.randint(10, 60), rng.randint(0, 4)
        spans = plan_chunks(text, word_spans, budget, overlap)
        assert all(s.tokens <= budget for s in spans)
        assert all(len(text[s.start:s.end].split()) <= budget for s in spans)
        covered = set()
        for s in spans:
            covered.update(range(s.start, s.end))
        assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
        assert [s.start for s in spans] == sorted(s.start for s in spans)

    def test_sentence_boundaries_are_respected(self):
        text = "First sentence here. Second one is here. Third sentence ends."
        spans = plan_chunks(text, word_spans, budget=7, overlap=0)
        pieces = [text[s.start:s.end] for s in spans]
        assert pieces == ["First sentence here. Second one is here.", "Third sentence ends."]

    def test_overlap_repeats_trailing_sentence(self):
        text = "A b c. D e f. G h i. J k l."
        spans = plan_chunks(text, word_spans, budget=6, overlap=3)
        pieces = [text[s.start:s.end] for s in spans]
        assert pieces[0] == "A b c. D e f." and pieces[1].startswith("D e f.")

    def test_paragraph_preferred_as_break(self):
        text = "A b c d e. F g h.\n\nNew para i j k l."
        spans = plan_chunks(text, word_spans, budget=12, overlap=0)
        assert text[spans[1].start:spans[1].end].startswith("New para")


class TestChunker:
    def test_ids_hash_and_metadata(self):
        chunker = Chunker(word_spans, ChunkingConfig(max_tokens=16, overlap_tokens=0))
        doc = Document(id="doc/1", text=". ".join(words(5, i) for i in range(6)) + ".", title="My title",
                       metadata={"lang": "en"})
        chunks = chunker(doc)
        assert [c.id for c in chunks] == [f"doc/1#{i}" for i in range(len(chunks))]
        assert len(chunks) > 1
        for c in chunks:
            assert c.metadata["chunk_count"] == len(chunks)
            assert c.metadata["metadata"] == {"lang": "en"}
            assert c.content.text == embedding_input("My title", c.metadata["text"])
            assert c.metadata["content_hash"] == content_hash("My title", c.metadata["text"])
            assert c.metadata["tokens"] <= 16

    def test_deterministic(self):
        chunker = Chunker(word_spans, ChunkingConfig(max_tokens=16, overlap_tokens=2))
        doc = Document(id="d", text=words(200) + ".")
        assert [(c.id, c.metadata["content_hash"]) for c in chunker(doc)] == \
               [(c.id, c.metadata["content_hash"]) for c in chunker(doc)]

    def test_max_chunks_keeps_the_first_chunks_and_counts_the_rest(self):
        doc = Document(id="d", text=" ".join(f"Sentence {i} is here." for i in range(40)))
        every = Chunker(word_spans, ChunkingConfig(max_tokens=20, overlap_tokens=0))(doc)
        first = Chunker(word_spans, ChunkingConfig(max_tokens=20, overlap_tokens=0, max_chunks=2))(doc)
        assert len(every) > 2 and first[0].content.text == every[0].content.text
        # The last chunk kept fills the window: the next sentence's first words, cut at a token.
        assert first[1].content.text.startswith(every[1].content.text.split(" Sentence")[0])
        assert first[1].metadata["tokens"] == 20 and len(first[1].content.text.split()) == 18
        assert all(c.metadata["chunks_dropped"] == len(every) - 2 and c.metadata["chunk_count"] == 2
                   for c in first)
        assert all(c.metadata["chunks_dropped"] == 0 for c in every)
        short = Chunker(word_spans, ChunkingConfig(max_chunks=1))(Document(id="s", text="Short text."))
        assert len(short) == 1 and short[0].metadata["chunks_dropped"] == 0

    @pytest.mark.parametrize("kwargs", [{"max_tokens": 8}, {"overlap_tokens": 200}, {"overlap_tokens": -1},
                                        {"max_chunks": 0}, {"max_chunks": True}, {"max_chunks": 1.5}])
    def test_invalid_config(self, kwargs):
        with pytest.raises(ConfigError):
            ChunkingConfig(**kwargs)


class TestTokenizers:
    TEXTS = ["Crème brûlée, naïve café — déjà vu.", "Ｆｕｌｌｗｉｄｔｈ and 中文字符 mixed with emoji 🙂 here.",
             "  leading and trailing  \n\n whitespace\t runs  ", "antidisestablishmentarianism's hyper-parameters (e.g. 3.5%)",
             "", "IL-6/STAT3 signalling in CD4+ T-cells: p<0.05, n=1,024."]

    def test_the_tokenizer_file_gives_exactly_the_autotokenizer_spans(self):
        from transformers import AutoTokenizer

        from rag_core.chunking import hf_token_spans, load_token_spans
        from rag_core.embeddings import resolve_embedding_model

        path = resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2")
        fast, auto = load_token_spans(path), hf_token_spans(AutoTokenizer.from_pretrained(path))
        assert fast(self.TEXTS) == auto(self.TEXTS)
        assert fast([]) == [] and len(fast([" ".join(["word"] * 600)])[0]) == 600  # never truncated

    def test_a_folder_without_a_tokenizer_file_goes_through_autotokenizer(self, tmp_path):
        import shutil

        from transformers import AutoTokenizer

        from rag_core.chunking import hf_token_spans, load_token_spans
        from rag_core.embeddings import resolve_embedding_model

        path = resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2")
        for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
            shutil.copy(f"{path}/{name}", tmp_path / name)
        assert not (tmp_path / "tokenizer.json").exists()
        assert load_token_spans(str(tmp_path))(self.TEXTS) == hf_token_spans(AutoTokenizer.from_pretrained(path))(self.TEXTS)
