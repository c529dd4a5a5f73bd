"""Vocabulary helpers: the exact bytes each token id stands for, and a GPT-2 BPE tokenizer.

Grammar constraints work on bytes, so every tokenizer is reduced to a :class:`Vocabulary`:
one ``bytes`` per token id (``None`` for special tokens, which a grammar never allows).
"""

from decoding.tokenizers.gpt2 import Gpt2Tokenizer, gpt2_ranks_path, load_gpt2
from decoding.tokenizers.vocab import Vocabulary, byte_level_decoder, vocabulary

__all__ = ["Gpt2Tokenizer", "Vocabulary", "byte_level_decoder", "gpt2_ranks_path", "load_gpt2", "vocabulary"]
