"""Decoding that stops when the answer is done: at its first sentence, or when it starts to loop.

A small greedy generator given a grounded prompt answers in its first sentence and
then rambles or repeats itself to the token limit. HF's ``repetition_penalty`` and
``no_repeat_ngram_size`` would curb the loop, but they also punish copying from the
prompt, which is exactly what a grounded answer should do. So we look only at the
generated tokens: :class:`AnswerDoneCriteria` (a ``transformers`` ``StoppingCriteria``)
stops each row of a batch on its own once it repeats an n-gram it produced itself or
completes its first sentence, and :func:`trim_answer` is the same rule applied to the
text afterwards (the criterion stops *after* the token that shows the answer is done,
so the text still needs the trim).

``torch`` and ``transformers`` are imported only when :class:`AnswerDoneCriteria` is
first used; everything else here is pure.

Example:
    >>> repeats_ngram([5, 6, 7, 5, 6], n=2)
    True
    >>> trim_answer("The id is the chunk number, which is the chunk number, which is the")
    'The id is the chunk number'
    >>> trim_answer("Paris. It is the capital of France.")
    'Paris.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from rag_core.errors import ConfigError
from rag_core.sentences import sentence_boundaries
from rag_core.validation import check_int, check_optional_int

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "AnswerDoneCriteria",
    "AnswerTracker",
    "StopReason",
    "first_sentence_end",
    "repeats_ngram",
    "trim_answer",
]

# A token whose text holds one of these may finish a sentence ("\ufffd": part of a
# multi-byte character, e.g. half of "。", so look again once it is complete).
_STOP_CHARS = frozenset(".!?…。！？．｡।॥؟۔\n\ufffd")
_CLOSING = frozenset("\"'”’»)]}」』】）› \t\r")
_WORD = re.compile(r"\w+")
# Words an answer cut mid-clause (before a repeat) should not end with.
_DANGLING_WORDS = frozenset(
    "a an the and or but nor so which that who whom whose where when while because with of in on at "
    "to for by from as than its their his her is are was were".split()
)
_DANGLING_END = ",;:-–—/(“‘«[{ \t\r\n"
_PAIRS = (("(", ")"), ("[", "]"), ("{", "}"), ("“", "”"), ("‘", "’"), ("«", "»"))


class StopReason(str, Enum):
    """Why :class:`AnswerDoneCriteria` stopped a row."""

    REPEAT = "repeat"  # the row repeated an n-gram it had generated
    SENTENCE = "sentence"  # the row completed its first sentence
    EOS = "eos"  # the row produced an end-of-sequence (or pad) token


def repeats_ngram(tokens: Sequence[int], n: int, times: int = 2) -> bool:
    """True when the last ``n`` tokens occur at least ``times`` times in ``tokens`` (overlaps count).

    Pass generated tokens only: copying an n-gram from the prompt is not a repeat.

    >>> repeats_ngram([1, 2, 3, 1, 2, 3], 3), repeats_ngram([1, 2, 3, 4], 2), repeats_ngram([7, 7, 7], 2)
    (True, False, True)
    """
    check_int("n", n, minimum=1)
    check_int("times", times, minimum=2)
    if len(tokens) < n:
        return False
    seq = list(tokens)
    last = seq[-n:]
    found = sum(1 for i in range(len(seq) - n + 1) if seq[i:i + n] == last)
    return found >= times


def first_sentence_end(text: str, *, final: bool = True) -> int | None:
    """Index just after the first complete sentence of a generated answer, or None.

    The rules of :func:`rag_core.sentences.split_sentences` (so "e.g." and "3.5" are
    not ends), except that any newline after text ends the sentence. With
    ``final=False`` (the text is still being generated) a full stop at the very end
    does not count yet: "3." may become "3.5".

    >>> first_sentence_end("Paris, e.g. the capital. It is big.")
    24
    >>> first_sentence_end("The value is 3.5"), first_sentence_end("Paris\\nLondon")
    (None, 5)
    """
    for end in sentence_boundaries(text, final=final, hard_newlines=True):
        b = end
        while b > 0 and text[b - 1].isspace():
            b -= 1
        if text[:b].strip():
            return b
    return None


def _strip_unbalanced(text: str) -> str:
    """Drop a quote or bracket at either end that has no partner."""
    changed = True
    while changed and text:
        changed = False
        for q in ('"', "'"):
            if text.count(q) % 2 and (text.startswith(q) or text.endswith(q)):
                text = text[1:] if text.startswith(q) else text[:-1]
                changed = True
        for opener, closer in _PAIRS:
            if text.endswith(closer) and text.count(closer) > text.count(opener):
                text, changed = text[:-1], True
            if text.startswith(opener) and text.count(opener) > text.count(closer):
                text, changed = text[1:], True
        stripped = text.strip().rstrip(_DANGLING_END)
        changed = changed or stripped != text
        text = stripped
    return text


def _cut_repeat(text: str, n: int) -> str:
    """``text`` up to its first repeated word n-gram, without the connectors left dangling."""
    words = list(_WORD.finditer(text))
    seen: set[tuple[str, ...]] = set()
    for j in range(len(words) - n + 1):
        gram = tuple(w.group().lower() for w in words[j:j + n])
        if gram not in seen:
            seen.add(gram)
            continue
        text = _strip_unbalanced(text[:words[j].start()])
        while True:
            last = list(_WORD.finditer(text))
            if len(last) < 2 or last[-1].group().lower() not in _DANGLING_WORDS:
                return text
            text = _strip_unbalanced(text[:last[-1].start()])
    return text


def trim_answer(text: str, *, stop_at_sentence: bool = True, ngram_words: int | None = 4) -> str:
    """A generated answer cut to its first sentence and before its first repeated word n-gram.

    Words compare case-insensitively, ignoring punctuation. After a repeat cut the
    answer ends mid-clause, so dangling connectors ("which", "and", "of") go too.
    Trailing commas/colons/dashes and unpaired quotes or brackets are always stripped.

    Args:
        text: The generated answer.
        stop_at_sentence: Keep only the first sentence (a newline also ends it).
        ngram_words: Cut before the first ``ngram_words`` words that already occurred;
            None keeps repeats.

    >>> trim_answer("Paris, Paris, Paris, Paris", ngram_words=2)
    'Paris'
    >>> trim_answer('"In 1889,', stop_at_sentence=False)
    'In 1889'
    """
    if not isinstance(text, str):
        raise ConfigError(f"text must be a string, got {type(text).__name__}")
    check_optional_int("ngram_words", ngram_words, minimum=1)
    text = text.strip()
    if stop_at_sentence:
        end = first_sentence_end(text)
        if end is not None:
            text = text[:end]
    if ngram_words is not None:
        text = _cut_repeat(text, ngram_words)
    return _strip_unbalanced(text)


# --------------------------------------------------------------------------- the stopping rule


@dataclass
class _Row:
    tokens: list[int] = field(default_factory=list)
    grams: set[tuple[int, ...]] = field(default_factory=set)
    pending: bool = False  # a full stop was seen; the next token decides whether it ended a sentence
    reason: StopReason | None = None


class AnswerTracker:
    """The stopping rule of :class:`AnswerDoneCriteria`, on plain token ids (no torch).

    Feed each row's new generated tokens with :meth:`feed`; a row is done once it
    repeats an ``ngram`` it produced, completes its first sentence (when
    ``stop_at_sentence``), or produces one of ``eos_ids``. Each step costs one
    n-gram set lookup per row; the generated tail is decoded only while a token that
    may end a sentence is pending (decoded token texts are cached by id).

    Args:
        decode: Token ids -> text (special tokens skipped).
        batch_size: Rows in the batch.
        ngram: Stop on a repeated n-gram of this many tokens; None never.
        stop_at_sentence: Stop once the first sentence is complete.
        eos_ids: Tokens that end a row (and are not part of its answer).

    >>> tracker = AnswerTracker(lambda ids: " ".join(map(str, ids)), 2, ngram=2, stop_at_sentence=False)
    >>> tracker.feed([[1, 2], [1, 2]]), tracker.feed([[1], [3]]), tracker.feed([[2], [4]])
    ([False, False], [False, False], [True, False])
    >>> tracker.reasons
    (<StopReason.REPEAT: 'repeat'>, None)
    """

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        batch_size: int,
        *,
        ngram: int | None = 4,
        stop_at_sentence: bool = True,
        eos_ids: Iterable[int] = (),
    ) -> None:
        check_int("batch_size", batch_size, minimum=1)
        check_optional_int("ngram", ngram, minimum=1)
        self._decode = decode
        self.ngram = ngram
        self.stop_at_sentence = bool(stop_at_sentence)
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self._pieces: dict[int, str] = {}
        self._rows = [_Row() for _ in range(batch_size)]

    @property
    def done(self) -> list[bool]:
        return [row.reason is not None for row in self._rows]

    @property
    def reasons(self) -> tuple[StopReason | None, ...]:
        return tuple(row.reason for row in self._rows)

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._decode([token])
        return piece

    def _step(self, row: _Row, token: int) -> None:
        if token in self.eos_ids:
            row.reason = StopReason.EOS
            return
        row.tokens.append(token)
        n = self.ngram
        if n is not None and len(row.tokens) >= n:
            gram = tuple(row.tokens[-n:])
            if gram in row.grams:
                row.reason = StopReason.REPEAT
                return
            row.grams.add(gram)
        if not self.stop_at_sentence:
            return
        piece = self._piece(token)
        may_end = any(c in _STOP_CHARS for c in piece)
        if (may_end or row.pending) and first_sentence_end(self._decode(row.tokens), final=False) is not None:
            row.reason = StopReason.SENTENCE
            return
        # After "3." the token "5" settles it (no end); a '"' or a lone space leaves it open.
        row.pending = may_end or (row.pending and all(c in _CLOSING for c in piece))

    def feed(self, new_tokens: Sequence[Sequence[int]]) -> list[bool]:
        """Add each row's newly generated tokens; returns which rows are done."""
        if len(new_tokens) != len(self._rows):
            raise ConfigError(f"got tokens for {len(new_tokens)} rows, the batch has {len(self._rows)}")
        for row, tokens in zip(self._rows, new_tokens):
            for token in tokens:
                if row.reason is not None:
                    break
                self._step(row, int(token))
        return self.done


def _build_criteria_class() -> type:
    import torch
    from transformers import StoppingCriteria

    class AnswerDoneCriteria(StoppingCriteria):
        """Stop each row of a ``generate`` batch once its answer is done (see :class:`AnswerTracker`).

        Only the generated part of a row counts: the tokens after the prompt width of a
        decoder-only model, or every decoder token after the start token of an
        encoder-decoder model (use :meth:`for_inputs` to get this right). Returns the
        per-row bool tensor ``generate`` expects, so finished rows get padding while the
        others go on. Make one per ``generate`` call; it starts over by itself when it
        sees a shorter sequence or another batch size.

        Args:
            prompt_lengths: The prompt width (one int for a padded batch) or one start
                column per row.
            tokenizer: Decodes generated tokens (``decode(ids, skip_special_tokens=True)``).
            ngram: Stop on a repeated n-gram of this many generated tokens; None never.
            stop_at_sentence: Stop once the first sentence is complete.
            eos_ids: Tokens that end a row; default the tokenizer's eos and pad ids.
        """

        def __init__(
            self,
            prompt_lengths: int | Sequence[int],
            tokenizer: Any,
            *,
            ngram: int | None = 4,
            stop_at_sentence: bool = True,
            eos_ids: Iterable[int] | None = None,
        ) -> None:
            if isinstance(prompt_lengths, int):  # check_int refuses a bool
                self.prompt_lengths: int | tuple[int, ...] = check_int("prompt_lengths", prompt_lengths, minimum=0)
            else:
                self.prompt_lengths = tuple(check_int("each prompt length", p, minimum=0) for p in prompt_lengths)
                if not self.prompt_lengths:
                    raise ConfigError("prompt_lengths must not be empty")
            check_optional_int("ngram", ngram, minimum=1)
            self.tokenizer = tokenizer
            self.ngram = ngram
            self.stop_at_sentence = stop_at_sentence
            if eos_ids is None:
                eos_ids = [i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None]
            self.eos_ids = tuple(int(i) for i in eos_ids)
            self._tracker: AnswerTracker | None = None
            self._seen = 0

        @classmethod
        def for_inputs(cls, model: Any, input_ids: Any, tokenizer: Any, **kwargs: Any) -> "AnswerDoneCriteria":
            """The criterion for ``model.generate(input_ids, ...)``: decoder-only or encoder-decoder."""
            encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
            return cls(1 if encoder_decoder else int(input_ids.shape[1]), tokenizer, **kwargs)

        @property
        def reasons(self) -> tuple[StopReason | None, ...]:
            """Why each row of the last batch stopped (None: it did not stop here)."""
            return () if self._tracker is None else self._tracker.reasons

        def _decode(self, ids: list[int]) -> str:
            return str(self.tokenizer.decode(ids, skip_special_tokens=True))

        def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
            batch, width = int(input_ids.shape[0]), int(input_ids.shape[1])
            starts = ([self.prompt_lengths] * batch if isinstance(self.prompt_lengths, int)
                      else list(self.prompt_lengths))
            if len(starts) != batch:
                raise ConfigError(f"prompt_lengths has {len(starts)} rows, the batch has {batch}")
            tracker = self._tracker
            if tracker is None or len(tracker.done) != batch or width <= self._seen:
                tracker = self._tracker = AnswerTracker(
                    self._decode, batch, ngram=self.ngram, stop_at_sentence=self.stop_at_sentence,
                    eos_ids=self.eos_ids)
                self._seen = min(starts)
            low = self._seen
            columns = input_ids[:, low:width].tolist()
            done = tracker.feed([row[max(0, start - low):] for row, start in zip(columns, starts)])
            self._seen = width
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    AnswerDoneCriteria.__module__ = __name__
    AnswerDoneCriteria.__qualname__ = "AnswerDoneCriteria"
    return AnswerDoneCriteria


def __getattr__(name: str) -> Any:
    # AnswerDoneCriteria subclasses transformers' StoppingCriteria: build it on first use
    # so importing this module does not import torch or transformers.
    if name == "AnswerDoneCriteria":
        cls = _build_criteria_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
