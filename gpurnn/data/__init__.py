"""Reading real data into token ids and batches: character text, word lists, CoNLL-U tagging,
labelled sentences.

    ids, vocab = encode_text(read_text("input.txt"))          # characters -> ids (N,), Vocab
    train, valid = split_text(ids, 0.1)                       # -> gpurnn.batches.TokenStreams
    sentences = read_conllu("train.conllu")                   # [(words, tags)]
    encoder = WordEncoder.build([s.words for s in sentences]) # words -> ids, unknown words by spelling
    fields = FeatureEncoder.build([s.words for s in sentences], ["suffix3", "lower"])   # -> ids (L,F) per sentence
    tags = Vocab.build((t for s in sentences for t in s.tags), specials=(), unk=None)
    batches = tagged_batches(sentences, encoder, tags, batch_size=32)
    labelled = read_files_per_label({"pos": "rt-polarity.pos", "neg": "rt-polarity.neg"})
    batches = labelled_batches(labelled, Vocab.build(w for s in labelled for w in s.words), ["neg", "pos"], 32)

A malformed file raises `DataError` (a `ValueError`) naming the file and the line.
"""
from .batching import labelled_batches, tagged_batches
from .conll import TaggedSentence, read_conllu
from .errors import DataError
from .features import FeatureEncoder
from .sentences import LabelledSentence, fixed_split, read_files_per_label, read_label_column
from .signatures import WordEncoder, signature
from .text import char_vocab, encode_text, read_text, split_text
from .vocab import UNK, Vocab
from .words import STOP, docstring_words, encode_words, read_words, word_vocab

__all__ = [
    "DataError", "FeatureEncoder", "LabelledSentence", "STOP", "TaggedSentence", "UNK", "Vocab", "WordEncoder", "char_vocab",
    "docstring_words", "encode_text", "encode_words", "fixed_split", "labelled_batches", "read_conllu",
    "read_files_per_label", "read_label_column", "read_text", "read_words", "signature", "split_text",
    "tagged_batches", "word_vocab",
]
