"""Word-level tokenizers (config.data.tokenizer): "words" (default) and "dmvr".

"words": the vocabulary is built from training captions (vatt.data.build) and stored as plain
text. Vocabulary file `vocab.txt`: one word per line, line number = id; line 0 is `<pad>` (id 0),
line 1 is `<unk>` (id 1), then words by decreasing count (ties alphabetical), 2^16 ids in all at
most. Normalisation (identical in Python and in the TensorFlow op): lower-case, every run of
characters that are not letters, digits or apostrophes becomes a space, split on spaces.

"dmvr": the rules of DMVR's WordTokenizer as the official VATT pipeline applies it, so that the
released vocabulary (howto100m_en.txt) gives the released ids:
- the 32 ASCII punctuation characters (RE2 ``[[:punct:]]``, Python ``string.punctuation``) are
  deleted, not replaced ("don't" -> "dont", "e-mail" -> "email"); other characters stay;
- ASCII letters are lower-cased, nothing else ("ÉTÉ" stays "ÉTÉ": ``tf.strings.lower`` without an
  encoding);
- words are split on runs of Unicode white space (ICU White_Space, as tensorflow_text's
  WhitespaceTokenizer; non-breaking and ideographic spaces included);
- `<bos>` before and `<eos>` after the words when asked (official VATT: neither), then the ids
  are cut to max_len (so a long caption loses its `<eos>`) and padded with the `<pad>` id.
Vocabulary file: one entry per line, either ``word`` (id = line number, from 0) or ``id word``
separated by one space; ids and words unique, words lower-case, and `<pad>`, `<bos>`, `<eos>`,
`<unk>` all present; unknown words map to the `<unk>` id. The models mask id 0, so `<pad>` must
have id 0 here (a released-vocabulary fact; any other is refused).
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string
from typing import Iterable

from etils import epath

from vatt import paths
from vatt.data.pipeline_config import TOKENIZERS

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
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


# ------------------------------------------------------------------------------------ "dmvr"

# Punctuation deleted and ASCII upper case lowered in one pass (the DMVR rules, in Python).
_DMVR_TABLE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)
# ICU White_Space: the separators of tensorflow_text's WhitespaceTokenizer.
_WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f"
                "\u205f\u3000")
_PY_WHITE_SPACE = re.compile(f"[{_WHITE_SPACE}]+")
TF_WHITE_SPACE = (r"[\t\n\x0b\x0c\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
                  r"\x{202f}\x{205f}\x{3000}]+")  # the RE2 twin of _PY_WHITE_SPACE
TF_PUNCT = "[[:punct:]]"  # RE2: exactly string.punctuation


@dataclasses.dataclass(frozen=True)
class DmvrVocab:
    """A DMVR word vocabulary: word -> id and the ids of its four special tokens."""

    word_to_id: dict[str, int]
    pad: int
    bos: int
    eos: int
    unk: int

    @property
    def size(self) -> int:
        """Rows an embedding table needs: the largest id + 1."""
        return max(self.word_to_id.values()) + 1


def dmvr_words(text: str) -> list[str]:
    """Words of one caption under the DMVR rules (punctuation deleted, ASCII lower-cased)."""
    return [w for w in _PY_WHITE_SPACE.split(text.translate(_DMVR_TABLE)) if w]


def load_dmvr_vocab(path: str) -> DmvrVocab:
    """Read a DMVR vocabulary (a file, or a directory holding vocab.txt; local or gs://)."""
    if epath.Path(path).is_dir():
        path = paths.join(path, VOCAB_FILENAME)
    lines = paths.read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line
    word_to_id: dict[str, int] = {}
    ids: set[int] = set()
    for n, line in enumerate(lines):
        parts = line.strip().split(" ")
        if len(parts) not in (1, 2) or (len(parts) == 2 and not parts[0].lstrip("-").isdigit()):
            raise ValueError(f"{path} line {n + 1}: {line!r} is neither 'word' nor 'id word'")
        idx, word = (int(parts[0]), parts[1]) if len(parts) == 2 else (n, parts[0])
        if idx in ids:
            raise ValueError(f"{path} line {n + 1}: id {idx} is given twice")
        if word in word_to_id:
            raise ValueError(f"{path} line {n + 1}: word {word!r} is given twice")
        if word != word.lower():
            raise ValueError(f"{path} line {n + 1}: word {word!r} is not lower case")
        ids.add(idx)
        word_to_id[word] = idx
    missing = [t for t in (PAD, BOS, EOS, UNK) if t not in word_to_id]
    if missing:
        raise ValueError(f"{path}: a DMVR vocabulary must hold {PAD}, {BOS}, {EOS} and {UNK}; "
                         f"missing {', '.join(missing)}")
    if word_to_id[PAD] != PAD_ID:
        raise ValueError(f"{path}: {PAD} has id {word_to_id[PAD]}; the models mask id {PAD_ID}, "
                         f"so {PAD} must have id {PAD_ID}")
    if min(ids) < 0:
        raise ValueError(f"{path}: negative id {min(ids)}")
    return DmvrVocab(word_to_id, word_to_id[PAD], word_to_id[BOS], word_to_id[EOS],
                     word_to_id[UNK])


def encode_dmvr(text: str, vocab: DmvrVocab, max_len: int = 16, prepend_bos: bool = False,
                append_eos: bool = False) -> list[int]:
    """Python reference of DMVRTokenizer: ids cut to and padded to `max_len`."""
    ids = [vocab.word_to_id.get(w, vocab.unk) for w in dmvr_words(text)]
    ids = [vocab.bos] * prepend_bos + ids + [vocab.eos] * append_eos
    return ids[:max_len] + [vocab.pad] * (max_len - len(ids[:max_len]))


class DMVRTokenizer:
    """TensorFlow twin of encode_dmvr for tf.data: strings [...] -> int32 ids [..., max_len]."""

    def __init__(self, vocab: DmvrVocab, max_len: int = 16, prepend_bos: bool = False,
                 append_eos: bool = False):
        import tensorflow as tf

        self.max_len, self.vocab_size = max_len, vocab.size
        self._vocab, self._bos, self._eos = vocab, prepend_bos, append_eos
        words, ids = zip(*vocab.word_to_id.items())
        self._table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(words, tf.string), tf.constant(ids, tf.int64)), vocab.unk)

    def __call__(self, text):
        import tensorflow as tf

        text = tf.strings.regex_replace(text, TF_PUNCT, "")
        text = tf.strings.lower(text)  # no encoding: ASCII letters only, as DMVR
        if self._bos:  # as text, like DMVR: the <bos> word then maps through the table
            text = tf.constant(BOS + " ") + text
        if self._eos:
            text = text + tf.constant(" " + EOS)
        toks = tf.strings.split(tf.strings.regex_replace(text, TF_WHITE_SPACE, " "))
        ids = tf.cast(self._table.lookup(toks), tf.int32)[..., : self.max_len]
        return ids.to_tensor(default_value=self._vocab.pad,
                             shape=ids.shape[:-1].as_list() + [self.max_len])


def tf_tokenizer(path: str, kind: str = "words", max_len: int = 16, prepend_bos: bool = False,
                 append_eos: bool = False):
    """The TensorFlow tokenizer config.data.tokenizer names, over the vocabulary at `path`."""
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer {kind!r} is not known: use one of {TOKENIZERS}")
    if kind == "dmvr":
        return DMVRTokenizer(load_dmvr_vocab(path), max_len, prepend_bos, append_eos)
    if prepend_bos or append_eos:
        raise ValueError("prepend_bos / append_eos need tokenizer 'dmvr' (a 'words' vocabulary "
                         "has no <bos> or <eos>)")
    return TFTokenizer(load_vocab(path), max_len)
