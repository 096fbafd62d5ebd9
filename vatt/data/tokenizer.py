"""Word-level tokenizer: the vocabulary is built from training captions and stored as plain text.

Vocabulary file `vocab.txt`: one word per line, line number = id; line 0 is `<pad>` (id 0),
line 1 is `<unk>` (id 1), then words by decreasing count (ties alphabetical), 2^16 ids in all at
most. Normalisation (identical in Python and in the TensorFlow op): lower-case, every run of
characters that are not letters, digits or apostrophes becomes a space, split on spaces.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable

from etils import epath

from vatt import paths

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
DEFAULT_VOCAB_SIZE = 2**16
VOCAB_FILENAME = "vocab.txt"

_PY_SPLIT = re.compile(r"[^\w']+|_")  # \w (Unicode) minus underscore == letters + digits.
TF_SPLIT = r"[^\pL\pN']+"  # The RE2 twin of _PY_SPLIT used by tf.strings.regex_replace.


def words(text: str) -> list[str]:
    """Normalised words of one caption."""
    return [w for w in _PY_SPLIT.sub(" ", text.lower()).split() if w]


def build_vocab(counts: collections.Counter, size: int = DEFAULT_VOCAB_SIZE) -> list[str]:
    """Most frequent words (ties alphabetical), after <pad> and <unk>, `size` entries at most."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [PAD, UNK] + [w for w, _ in ranked[: max(0, size - 2)] if w not in (PAD, UNK)]


def count_words(captions: Iterable[str]) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for cap in captions:
        c.update(words(cap))
    return c


def save_vocab(path: str, vocab: list[str]) -> None:
    paths.write_text(path, "\n".join(vocab) + "\n")


def load_vocab(path: str) -> list[str]:
    """Read `vocab.txt` (a file or a directory holding one; local or gs://, vatt.paths)."""
    if epath.Path(path).is_dir():
        path = paths.join(path, VOCAB_FILENAME)
    vocab = paths.read_text(path).split("\n")
    while vocab and vocab[-1] == "":
        vocab.pop()
    if vocab[:2] != [PAD, UNK]:
        raise ValueError(f"{path}: a vocabulary must start with {PAD!r}, {UNK!r}; got {vocab[:2]}")
    return vocab


def encode(text: str, vocab: list[str] | dict, max_len: int = 16) -> list[int]:
    """Python reference encoder: ids padded with 0 to `max_len` (used by tests and tools)."""
    index = vocab if isinstance(vocab, dict) else {w: i for i, w in enumerate(vocab)}
    ids = [index.get(w, UNK_ID) for w in words(text)][:max_len]
    return ids + [PAD_ID] * (max_len - len(ids))


class TFTokenizer:
    """TensorFlow word tokenizer for tf.data: strings [...] -> int32 ids [..., max_len]."""

    def __init__(self, vocab: list[str], max_len: int = 16):
        import tensorflow as tf

        self.max_len = max_len
        self.vocab_size = len(vocab)
        keys = tf.constant(vocab[2:], tf.string)
        vals = tf.range(2, len(vocab), dtype=tf.int64)
        self._table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, vals), UNK_ID)

    def __call__(self, text):
        import tensorflow as tf

        text = tf.strings.lower(text, encoding="utf-8")
        text = tf.strings.regex_replace(text, TF_SPLIT, " ")
        toks = tf.strings.split(text)  # ragged [..., None]
        ids = tf.cast(self._table.lookup(toks), tf.int32)
        ids = ids[..., : self.max_len]
        return ids.to_tensor(default_value=PAD_ID, shape=ids.shape[:-1].as_list() + [self.max_len])
