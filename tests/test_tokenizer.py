"""The "dmvr" word tokenizer (config.data.tokenizer="dmvr"): the official pipeline's rules
(DMVR WordTokenizer) on a small vocabulary in the released file's formats, with hand-worked ids;
Python and TensorFlow agree; the pipeline selects it by config."""

import numpy as np
import pytest

from vatt.data import tokenizer as tok

# One word per line, id = line number (the released vocabularies' layout).
WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", "add", "the", "salt", "dont", "email", "été", "stir"]
PAD, BOS, EOS, UNK, ADD, THE, SALT, DONT, EMAIL, ETE, STIR = range(len(WORDS))

# Hand-worked, max_len 6, no <bos>/<eos> (the official VATT setting).
CASES = [
    ("Add the Salt!", [ADD, THE, SALT, PAD, PAD, PAD]),
    # Punctuation is deleted (not a separator), only ASCII letters are lower-cased: "ÉTÉ" -> "ÉtÉ".
    ("Don't e-mail: ÉTÉ été", [DONT, EMAIL, UNK, ETE, PAD, PAD]),
    # Any Unicode white space separates words (tab, no-break space, ideographic space, runs).
    ("stir\u00a0stir\tthe  salt\u3000add", [STIR, STIR, THE, SALT, ADD, PAD]),
    # Longer than max_len: the first 6 words.
    ("add the salt stir stir stir stir", [ADD, THE, SALT, STIR, STIR, STIR]),
    ("", [PAD] * 6),
    ("!!! ... ?", [PAD] * 6),  # punctuation only: no word at all
    # A literal "<unk>" loses its brackets: the word "unk", which the vocabulary lacks.
    ("(add) <unk> pepper", [ADD, UNK, UNK, PAD, PAD, PAD]),
]
# The same captions with <bos> and <eos>: <eos> is cut with the words beyond max_len.
BOS_EOS = [
    [BOS, ADD, THE, SALT, EOS, PAD],
    [BOS, DONT, EMAIL, UNK, ETE, EOS],
    [BOS, STIR, STIR, THE, SALT, ADD],
    [BOS, ADD, THE, SALT, STIR, STIR],
    [BOS, EOS, PAD, PAD, PAD, PAD],
    [BOS, EOS, PAD, PAD, PAD, PAD],
    [BOS, ADD, UNK, UNK, EOS, PAD],
]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "howto100m_en.txt"
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return str(path)


def _texts():
    return np.array([c for c, _ in CASES], dtype=object)


def test_hand_worked_ids(vocab_file):
    vocab = tok.load_dmvr_vocab(vocab_file)
    assert (vocab.pad, vocab.bos, vocab.eos, vocab.unk, vocab.size) == (0, 1, 2, 3, len(WORDS))
    assert tok.dmvr_words("Don't e-mail: ÉTÉ") == ["dont", "email", "ÉtÉ"]
    for (text, want), want_be in zip(CASES, BOS_EOS):
        assert tok.encode_dmvr(text, vocab, 6) == want, text
        assert tok.encode_dmvr(text, vocab, 6, prepend_bos=True, append_eos=True) == want_be, text
    tf_plain = tok.tf_tokenizer(vocab_file, "dmvr", 6)
    tf_be = tok.tf_tokenizer(vocab_file, "dmvr", 6, prepend_bos=True, append_eos=True)
    assert isinstance(tf_plain, tok.DMVRTokenizer) and tf_plain.vocab_size == len(WORDS)
    got = tf_plain(_texts()).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [w for _, w in CASES])
    np.testing.assert_array_equal(tf_be(_texts()).numpy(), BOS_EOS)
    # Only <eos>: a full caption keeps its words, a short one ends with <eos>.
    eos_only = tok.encode_dmvr("add the salt", vocab, 4, append_eos=True)
    assert eos_only == [ADD, THE, SALT, EOS]
    assert tok.tf_tokenizer(vocab_file, "dmvr", 4, append_eos=True)(
        np.array(["add the salt"], dtype=object)).numpy().tolist() == [eos_only]
    # The default "words" rules differ: apostrophes kept, all letters lower-cased.
    assert tok.words("Don't ÉTÉ") == ["don't", "été"]


def test_id_word_format_gives_the_files_ids(tmp_path):
    """'id word' lines: the ids are the file's, not the line numbers."""
    path = tmp_path / "vocab.txt"
    path.write_text("0 <pad>\n7 <unk>\n5 <bos>\n6 <eos>\n2 salt\n9 add\n", encoding="utf-8")
    vocab = tok.load_dmvr_vocab(str(path))
    assert (vocab.pad, vocab.bos, vocab.eos, vocab.unk, vocab.size) == (0, 5, 6, 7, 10)
    want = [5, 9, 2, 7, 6]
    assert tok.encode_dmvr("Add SALT, pepper", vocab, 5, True, True) == want
    tft = tok.DMVRTokenizer(vocab, 5, prepend_bos=True, append_eos=True)
    assert tft(np.array(["Add SALT, pepper"], dtype=object)).numpy().tolist() == [want]


@pytest.mark.parametrize("text, message", [
    ("<pad>\n<bos>\n<eos>\n", "missing <unk>"),
    ("<bos>\n<pad>\n<eos>\n<unk>\n", "<pad> has id 1; the models mask id 0"),
    ("<pad>\n<bos>\n<eos>\n<unk>\nSalt\n", "line 5: word 'Salt' is not lower case"),
    ("0 <pad>\n1 <bos>\n1 <eos>\n3 <unk>\n", "line 3: id 1 is given twice"),
    ("<pad>\n<bos>\n<eos>\n<unk>\nsalt\nsalt\n", "line 6: word 'salt' is given twice"),
    ("<pad>\n<bos>\n<eos>\n<unk>\n1 2 salt\n", "line 5: '1 2 salt' is neither 'word' nor 'id word'"),
])
def test_bad_vocabularies_are_refused(tmp_path, text, message):
    path = tmp_path / "v.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="^" + str(path)) as err:
        tok.load_dmvr_vocab(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_python_and_tf_agree(vocab_file):
    vocab = tok.load_dmvr_vocab(vocab_file)
    rng = np.random.default_rng(0)
    pieces = ["add", "The", "SALT", "don't", "e-mail", "été", "ÉTÉ", "stir,", "x", "!", "\u00a0",
              "\t", "\u2009", "\u3000", "\n", "  ", "\u00e9", "naïve", "(salt)", "_", "~", "«»—"]
    texts = ["".join(rng.choice(pieces, size=rng.integers(0, 12))) for _ in range(64)]
    texts += [" ".join(rng.choice(pieces, size=rng.integers(0, 12))) for _ in range(64)]
    for bos, eos in [(False, False), (True, True), (False, True)]:
        got = tok.DMVRTokenizer(vocab, 7, bos, eos)(np.array(texts, dtype=object)).numpy()
        np.testing.assert_array_equal(got, [tok.encode_dmvr(t, vocab, 7, bos, eos) for t in texts])


def test_words_tokenizer_refuses_bos_eos(tmp_path):
    tok.save_vocab(str(tmp_path / "vocab.txt"), ["<pad>", "<unk>", "salt"])
    assert isinstance(tok.tf_tokenizer(str(tmp_path)), tok.TFTokenizer)
    with pytest.raises(ValueError, match="need tokenizer 'dmvr'"):
        tok.tf_tokenizer(str(tmp_path), "words", 4, prepend_bos=True)
    with pytest.raises(ValueError, match="tokenizer 'dmvr ' is not known"):
        tok.tf_tokenizer(str(tmp_path), "dmvr ", 4)


def test_pipeline_reads_captions_with_the_dmvr_tokenizer(vocab_file, tmp_path):
    """config.data.tokenizer='dmvr' reaches the tf.data pipeline (DMVR records here)."""
    from vatt.data import decode, dmvr, pipeline

    frames = np.stack([np.full([24, 32, 3], 10 * k, np.uint8) for k in range(12)])
    ex = [dmvr.make_example(decode.encode_jpeg(frames), np.zeros(8000, np.float32),
                            ["Add the Salt!", "Don't e-mail"], video_id=f"v{k}") for k in range(2)]
    dmvr.write(str(tmp_path / "x-0.tfrecord"), ex)
    dmvr.convert(str(tmp_path / "x-0.tfrecord"), str(tmp_path / "ar"))
    c = pipeline.default_config()
    c.name = f"dmvr:{tmp_path}/ar/*.array_record"
    c.modalities = "video,text"
    c.num_frames, c.target_fps, c.frame_size = 4, 2.5, 16
    c.dmvr_fps, c.dmvr_sample_rate = 5.0, 8000
    c.num_captions, c.max_text_len, c.vocab_path = 2, 5, vocab_file
    c.tokenizer, c.prepend_bos, c.append_eos = "dmvr", True, True
    b = next(pipeline.make_iterator(c, global_batch_size=2, training=False))
    want = sorted([[BOS, ADD, THE, SALT, EOS], [BOS, DONT, EMAIL, EOS, PAD]])
    for row in b["text"]:
        assert sorted(row.tolist()) == want
