"""rag_core.decoding: the stop rule on tokens and text (pure), and AnswerDoneCriteria in a real generate.

The generate tests use tiny randomly initialised models (a 1-layer Llama, a 1-layer T5)
and a byte-level BPE tokenizer trained here, so they run in seconds with no download.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from rag_core.decoding import AnswerTracker, StopReason, first_sentence_end, repeats_ngram, trim_answer
from rag_core.errors import ConfigError


class TestRepeatsNgram:
    @pytest.mark.parametrize(
        "tokens, n, times, expected",
        [
            ([], 2, 2, False),
            ([1], 1, 2, False),
            ([1, 1], 1, 2, True),
            ([1, 2, 3, 4], 2, 2, False),
            ([1, 2, 3, 1, 2], 2, 2, True),
            ([1, 2, 3, 1, 2], 3, 2, False),
            ([1, 2, 3, 1, 2, 3], 3, 2, True),
            ([1, 2, 1, 2, 1, 2], 2, 3, True),
            ([1, 2, 1, 2], 2, 3, False),
            ([7, 7, 7], 2, 2, True),  # overlapping occurrences count
            ([7, 7, 7], 2, 3, False),
            ([1, 2, 3, 9, 1, 2, 3, 4], 3, 2, False),  # only the LAST n tokens matter
            ((5, 6, 5, 6), 2, 2, True),  # any sequence
        ],
    )
    def test_table(self, tokens: list[int], n: int, times: int, expected: bool) -> None:
        assert repeats_ngram(tokens, n, times) is expected

    @pytest.mark.parametrize("kwargs, match", [({"n": 0}, "n must be"), ({"n": 2, "times": 1}, "times must be")])
    def test_invalid(self, kwargs: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            repeats_ngram([1, 2], **kwargs)


class TestFirstSentenceEnd:
    @pytest.mark.parametrize(
        "text, final, expected",
        [
            ("Paris.", True, 6),
            ("Paris.", False, None),  # "Paris." may still become "Paris.com"
            ("Paris. It is big.", False, 6),
            ("Paris is big! Yes", True, 13),
            ("Why? Because.", True, 4),
            ('He said "no." Then left.', True, 13),
            ("Use a tool, e.g. a hammer. Yes", True, 26),
            ("Mr. Smith came. Ok", True, 15),
            ("The value is 3.5 now", True, None),
            ("The value is 3.", False, None),
            ("The value is 3.5. Next", False, 17),
            ("Paris\nLondon", True, 5),
            ("Paris\n", False, 5),  # a newline after text ends it, even mid-generation
            ("Paris  \nLondon", True, 5),
            ("\n\nParis", True, None),  # leading newlines are not a sentence
            ("\nParis. It", False, 7),
            ("- Paris\n- London", True, 7),
            ("1. Paris is big. 2. Rome", True, 16),
            ("Paris. the tower", True, None),  # lower case next: not an end
            ("巴黎。它很大", False, 3),
            ("no end at all", True, None),
            ("", True, None),
        ],
    )
    def test_table(self, text: str, final: bool, expected: int | None) -> None:
        assert first_sentence_end(text, final=final) == expected


class TestTrimAnswer:
    @pytest.mark.parametrize(
        "text, kwargs, expected",
        [
            ("The id is the chunk number, which is the chunk number, which is ...", {}, "The id is the chunk number"),
            ("The id is the chunk number, which is the chunk number, which is the", {}, "The id is the chunk number"),
            ("Paris is the capital of France and Paris is the capital of France and Paris", {},
             "Paris is the capital of France"),
            ("Paris. It is the capital of France.", {}, "Paris."),
            ("Paris. It is the capital of France.", {"stop_at_sentence": False}, "Paris. It is the capital of France."),
            ("  Paris\nThe capital  ", {}, "Paris"),
            ("It was built in 1889.", {}, "It was built in 1889."),
            ("It is 3.5 m tall. Yes.", {}, "It is 3.5 m tall."),
            ("e.g. Paris or Rome. Both.", {}, "e.g. Paris or Rome."),
            ("yes yes yes yes yes", {}, "yes"),
            ("Paris, Paris, Paris, Paris", {"ngram_words": 2}, "Paris"),
            ("Paris, Paris, Paris, Paris", {"ngram_words": None}, "Paris, Paris, Paris, Paris"),
            ("The Tower THE TOWER the tower the tower", {"ngram_words": 2}, "The Tower"),  # case-insensitive
            ('"In 1889,', {}, "In 1889"),
            ('"Paris"', {}, '"Paris"'),
            ("Answer: (Paris", {}, "Answer: (Paris"),
            ("(Paris))", {}, "(Paris)"),
            ("Paris —", {}, "Paris"),
            ("Paris:", {}, "Paris"),
            ("“Paris", {}, "Paris"),
            ("a b c d a b c d", {}, "a b c d"),
            ("", {}, ""),
            ("   ", {}, ""),
            ("东京是首都。它很大。", {}, "东京是首都。"),
        ],
    )
    def test_table(self, text: str, kwargs: dict, expected: str) -> None:
        assert trim_answer(text, **kwargs) == expected

    def test_invalid(self) -> None:
        with pytest.raises(ConfigError, match="ngram_words"):
            trim_answer("x", ngram_words=0)
        with pytest.raises(ConfigError, match="must be a string"):
            trim_answer(None)  # type: ignore[arg-type]


# A toy vocabulary for the pure tracker: id -> text.
VOCAB = {1: "</s>", 10: "Paris", 11: ".", 12: " The", 13: "3", 14: "5", 15: '"', 16: " ", 17: "the",
         18: "\n", 19: " is", 20: " big", 21: "!", 22: "。", 23: "\ufffd"}


def toy_decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids if i != 1)


class TestAnswerTracker:
    def feed_one(self, tokens: list[int], **kwargs: Any) -> tuple[int | None, StopReason | None]:
        """Feed tokens one step at a time; the 1-based step at which the row is done."""
        tracker = AnswerTracker(toy_decode, 1, eos_ids=[1], **kwargs)
        for step, token in enumerate(tokens, start=1):
            if tracker.feed([[token]])[0]:
                return step, tracker.reasons[0]
        return None, None

    @pytest.mark.parametrize(
        "tokens, expected",
        [
            ([10, 11, 12], (3, StopReason.SENTENCE)),  # "Paris. The": the stop is confirmed by " The"
            ([10, 11], (None, None)),  # not yet: "Paris." may go on
            ([13, 11, 14, 19, 20], (None, None)),  # "3.5 is big"
            ([10, 11, 15, 12], (4, StopReason.SENTENCE)),  # 'Paris." The'
            ([10, 11, 16, 12], (4, StopReason.SENTENCE)),  # a lone space token keeps it pending
            ([10, 11, 16, 17], (None, None)),  # "Paris. the": lower case, no end
            ([10, 18], (2, StopReason.SENTENCE)),  # a newline ends it at once
            ([18, 10], (None, None)),  # a leading newline does not
            ([10, 21, 12], (3, StopReason.SENTENCE)),
            ([10, 22], (2, StopReason.SENTENCE)),  # "。" needs no lookahead
            ([10, 19, 20, 1, 10], (4, StopReason.EOS)),
            ([10, 19, 10, 19], (4, StopReason.REPEAT)),
        ],
    )
    def test_steps(self, tokens: list[int], expected: tuple) -> None:
        assert self.feed_one(tokens, ngram=2) == expected

    def test_ngram_and_sentence_can_be_turned_off(self) -> None:
        assert self.feed_one([10, 19, 10, 19], ngram=None) == (None, None)
        assert self.feed_one([10, 11, 12], ngram=2, stop_at_sentence=False) == (None, None)

    def test_decodes_the_tail_only_when_a_stop_is_pending(self) -> None:
        calls: list[list[int]] = []

        def decode(ids: list[int]) -> str:
            calls.append(list(ids))
            return toy_decode(ids)

        tracker = AnswerTracker(decode, 1, ngram=None)
        for token in [10, 19, 20, 19, 20, 10, 11, 12]:
            tracker.feed([[token]])
        tails = [c for c in calls if len(c) > 1]
        assert tails == [[10, 19, 20, 19, 20, 10, 11], [10, 19, 20, 19, 20, 10, 11, 12]]
        assert sorted(c[0] for c in calls if len(c) == 1) == [10, 11, 12, 19, 20]  # once per distinct id
        assert tracker.reasons == (StopReason.SENTENCE,)

    def test_rows_are_independent_and_done_is_sticky(self) -> None:
        tracker = AnswerTracker(toy_decode, 3, ngram=2, eos_ids=[1])
        assert tracker.feed([[10, 19], [10], [13]]) == [False, False, False]
        assert tracker.feed([[10], [18], [11]]) == [False, True, False]
        assert tracker.feed([[19], [10], [14]]) == [True, True, False]
        assert tracker.reasons == (StopReason.REPEAT, StopReason.SENTENCE, None)

    def test_batch_size_must_match(self) -> None:
        with pytest.raises(ConfigError, match="got tokens for 1 rows, the batch has 2"):
            AnswerTracker(toy_decode, 2).feed([[1]])
        with pytest.raises(ConfigError, match="ngram"):
            AnswerTracker(toy_decode, 1, ngram=0)


def test_importing_the_modules_loads_no_torch_or_transformers() -> None:
    code = ("import sys, rag_core.decoding, rag_core.sentences, rag_core.grounding; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- real generate

CORPUS = [
    "The Eiffel Tower is in Paris. It was finished in 1889!",
    "Mercury is the smallest planet? Yes, it is big.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "0 1 2 3 4 5 6 7 8 9 . , ; : ? ! ' \" ( ) -\n",
]


@dataclass(frozen=True)
class Tiny:
    tokenizer: Any
    llama: Any
    t5: Any


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config,
                              T5ForConditionalGeneration)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<pad>", "</s>", "<s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
    tokenizer.padding_side = "left"
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, pad_token_id=0, eos_token_id=1, bos_token_id=2)).eval()
    t5 = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=1, num_decoder_layers=1,
        num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()
    return Tiny(tokenizer, llama, t5)


def script_processor(scripts: list[list[int]], width: int) -> Any:
    """A logits processor that makes row r emit scripts[r] (a real model still runs every step)."""
    import torch
    from transformers import LogitsProcessor

    class Script(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            step = input_ids.shape[1] - width
            forced = torch.full_like(scores, float("-inf"))
            for row, script in enumerate(scripts):
                forced[row, script[min(step, len(script) - 1)]] = 0.0
            return forced

    return Script()


def generate(model: Any, tokenizer: Any, prompts: list[str], criteria: Any = None, **kwargs: Any) -> Any:
    from transformers import LogitsProcessorList, StoppingCriteriaList

    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    stopping = StoppingCriteriaList([criteria]) if criteria is not None else None
    processors = LogitsProcessorList(kwargs.pop("logits_processor", []))
    return enc, model.generate(**enc, do_sample=False, pad_token_id=0, eos_token_id=1,
                               stopping_criteria=stopping, logits_processor=processors, **kwargs)


def ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class TestAnswerDoneCriteria:
    PROMPTS = ["The Eiffel Tower is", "Mercury", "Where is it? Paris"]

    def test_rows_of_one_batch_stop_independently(self, tiny: Tiny) -> None:
        from rag_core.decoding import AnswerDoneCriteria

        tok = tiny.tokenizer
        loop = ids(tok, " b c d") * 6  # repeats a 4-gram from its 7th token
        letters = ids(tok, " e f g h i j k l m n o p q r s")  # no repeat, no full stop
        sentence = ids(tok, " Paris is big. It is")
        assert len(loop) == 18 and len(set(letters)) == len(letters) >= 12
        width = tok(self.PROMPTS, return_tensors="pt", padding=True)["input_ids"].shape[1]
        scripts = [loop, letters, sentence]
        criteria = AnswerDoneCriteria(width, tok, ngram=4)
        enc, out = generate(tiny.llama, tok, self.PROMPTS, criteria, max_new_tokens=12,
                            logits_processor=[script_processor(scripts, width)])
        generated = out[:, width:].tolist()
        assert len(generated[0]) == 12  # the letters row ran to max_new_tokens, the others did not wait
        stop_loop = 7
        assert generated[0][:stop_loop] == loop[:stop_loop] and set(generated[0][stop_loop:]) == {0}
        assert generated[1] == letters[:12]
        stop_sentence = next(k for k in range(1, len(sentence) + 1)
                             if first_sentence_end(tok.decode(sentence[:k]), final=False))
        assert tok.decode(sentence[:stop_sentence]).startswith(" Paris is big. I")  # the token after "."
        assert generated[2][:stop_sentence] == sentence[:stop_sentence]
        assert set(generated[2][stop_sentence:]) == {0}
        assert criteria.reasons == (StopReason.REPEAT, None, StopReason.SENTENCE)
        answers = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        assert [trim_answer(a) for a in answers] == ["b c d", "e f g h i j k l m n o p", "Paris is big."]

    def test_generate_stops_where_the_pure_rule_says(self, tiny: Tiny) -> None:
        """No script: the random model's own greedy output, cut where repeats_ngram/first_sentence_end say."""
        from rag_core.decoding import AnswerDoneCriteria

        tok = tiny.tokenizer
        max_new = 40
        enc, free = generate(tiny.llama, tok, self.PROMPTS, max_new_tokens=max_new)
        width = enc["input_ids"].shape[1]
        expected = []
        for row in free[:, width:].tolist():
            stop = max_new
            for k in range(1, len(row) + 1):
                text = tok.decode(row[:k], skip_special_tokens=True)
                if row[k - 1] in (0, 1) or repeats_ngram(row[:k], 4) or first_sentence_end(text, final=False):
                    stop = k
                    break
            expected.append((row, stop))
        assert min(stop for _, stop in expected) < max_new  # a tiny random model loops quickly
        criteria = AnswerDoneCriteria.for_inputs(tiny.llama, enc["input_ids"], tok)
        _, out = generate(tiny.llama, tok, self.PROMPTS, criteria, max_new_tokens=max_new)
        generated = out[:, width:].tolist()
        assert len(generated[0]) == max(stop for _, stop in expected)
        for got, (row, stop) in zip(generated, expected):
            assert got[:stop] == row[:stop] and set(got[stop:]) <= {0}
        # one criterion serves the next generate call too: it starts over on a shorter sequence
        _, again = generate(tiny.llama, tok, self.PROMPTS, criteria, max_new_tokens=max_new)
        assert again.tolist() == out.tolist()

    def test_encoder_decoder_counts_decoder_tokens_after_the_start_token(self, tiny: Tiny) -> None:
        from rag_core.decoding import AnswerDoneCriteria

        tok = tiny.tokenizer
        loop, letters = ids(tok, " b c d") * 6, ids(tok, " e f g h i j k l m n o p q r s")
        enc = tok(self.PROMPTS[:2], return_tensors="pt", padding=True)
        criteria = AnswerDoneCriteria.for_inputs(tiny.t5, enc["input_ids"], tok)
        assert criteria.prompt_lengths == 1
        _, out = generate(tiny.t5, tok, self.PROMPTS[:2], criteria, max_new_tokens=10,
                          logits_processor=[script_processor([loop, letters], 1)])
        assert out[0, 1:8].tolist() == loop[:7] and set(out[0, 8:].tolist()) == {0}
        assert out[1, 1:].tolist() == letters[:10]
        assert criteria.reasons == (StopReason.REPEAT, None)

    def test_called_directly_with_per_row_prompt_lengths(self, tiny: Tiny) -> None:
        import torch

        from rag_core.decoding import AnswerDoneCriteria

        tok = tiny.tokenizer
        criteria = AnswerDoneCriteria([1, 3], tok, ngram=2, stop_at_sentence=False)
        # row 0 generated [5, 6, 5, 6] (a repeat); row 1 only [5, 6] (its prompt is 3 long)
        done = criteria(torch.tensor([[9, 5, 6, 5, 6], [9, 5, 6, 5, 6]]), None)
        assert done.dtype == torch.bool and done.tolist() == [True, False]
        with pytest.raises(ConfigError, match="prompt_lengths has 2 rows, the batch has 1"):
            AnswerDoneCriteria([1, 3], tok)(torch.tensor([[1, 2]]), None)
        with pytest.raises(ConfigError, match="prompt_lengths"):
            AnswerDoneCriteria(-1, tok)
        assert AnswerDoneCriteria(0, tok).eos_ids == (1, 0)

    def test_is_a_transformers_stopping_criteria(self) -> None:
        from transformers import StoppingCriteria

        from rag_core import decoding

        assert issubclass(decoding.AnswerDoneCriteria, StoppingCriteria)
        assert decoding.AnswerDoneCriteria.__module__ == "rag_core.decoding"
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            decoding.Nope  # noqa: B018
