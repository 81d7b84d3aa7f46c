"""Tiny tokenizers built in code: no Hub, no sentencepiece, a few KB, the same every time.

CLIP's tokenizer is byte-level BPE: its vocabulary is the 256 byte symbols (each also with the end-of-word marker
`</w>`), a handful of merges and the two special tokens. That is enough to tokenize any prompt deterministically.
"""

from __future__ import annotations

# A few merges so that common prompt words become single tokens, like they would with a real vocabulary.
_CLIP_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("c", "a"), ("ca", "t</w>")]


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (printable bytes map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


def tiny_clip_tokenizer(model_max_length: int = 77):
    """A CLIPTokenizer with a ~520-token vocabulary. `model_max_length` must stay 77 for CLIP text models."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for symbol in byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    for symbol in byte_symbols():
        vocab.setdefault(symbol + "</w>", len(vocab))
    for first, second in _CLIP_MERGES:
        vocab.setdefault(first + second, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(_CLIP_MERGES), model_max_length=model_max_length)


_WORDS = ("a", "cat", "the", "dog", "photo", "of", "and", "moon", "blurry", "low", "quality")


def tiny_t5_tokenizer(model_max_length: int = 256):
    """A T5 tokenizer from an in-memory Unigram vocabulary (no sentencepiece): a few words, and single letters
    (with and without the word-start marker) so every lowercase prompt tokenizes."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *word_pieces()]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def word_pieces() -> list[tuple[str, float]]:
    """Unigram pieces (with their log-probabilities) that tokenize any lowercase prompt: the word-start marker, a
    few whole words, and single letters with and without the marker (the words are likelier, so they win)."""
    pieces = [("▁", -2.0)]
    pieces += [(f"▁{word}", -1.0 - index / 10) for index, word in enumerate(_WORDS)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    known = {piece for piece, _ in pieces}
    pieces += [(letter, -5.0) for letter in letters]
    pieces += [(f"▁{letter}", -4.0) for letter in letters if f"▁{letter}" not in known]
    return pieces


def tiny_xlm_roberta_tokenizer(model_max_length: int = 77):
    """An XLM-RoBERTa tokenizer (Kandinsky 2.1's multilingual CLIP) from an in-memory Unigram vocabulary (no
    sentencepiece, no Hub): its four specials first (`<s>`, `<pad>`, `</s>`, `<unk>`, ids 0-3 as in the real
    vocabulary), the word pieces, `<mask>` last."""
    from transformers import XLMRobertaTokenizer

    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [*specials, *word_pieces(), ("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=model_max_length)


def tiny_gemma_tokenizer():
    """A Gemma tokenizer from an in-memory BPE vocabulary: letters, digits, punctuation and the 256 byte-fallback
    tokens, so any text (Sana's long instruction prompt included) tokenizes."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for char in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;'!?-\n()\"/":
        vocab.setdefault(char, len(vocab))
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [("▁", "a"), ("c", "a"), ("▁", "ca")]
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=merges)


def tiny_qwen2_tokenizer(vision: bool = False, words: tuple[str, ...] = ()):
    """A Qwen2 tokenizer: byte-level BPE over the 256 byte symbols with a few merges, and the chat markers
    (`<|im_start|>`, `<|im_end|>`) as special tokens so prompt templates tokenize like the real ones; `vision` adds
    Qwen-VL's image markers (`<|vision_start|>`, `<|image_pad|>`, ...); each of `words` (ASCII, a leading space or a
    trailing newline allowed) becomes one token, as in the real vocabulary, so a pipeline's fixed prompt template is
    as many tokens as the pipeline assumes:

        tiny_qwen2_tokenizer(words=(" image",))(" image").input_ids  # -> one id (six without `words`)
    """
    from transformers import Qwen2Tokenizer

    vocab: dict[str, int] = {}
    for symbol in byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    # the words' merges come first (the likeliest), so a shorter merge inside a word cannot break its chain
    merges = word_merges(words)
    merges += [m for m in [("Ġ", "a"), ("c", "a"), ("ca", "t"), ("Ġ", "t"), ("h", "e")] if m not in merges]
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if vision:
        specials += ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, additional_special_tokens=specials[1:])
    if words:
        # a word is looked up whole: merged left to right, two words can break each other's chain (`second`'s
        # `s e` ranks before `user`'s `u s`, and `user` would come out as `u se r`)
        tokenizer.backend_tokenizer.model.ignore_merges = True
    return tokenizer


def word_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Byte-level BPE merges that build each word from its first symbol left to right (`Ġ` for a space, `Ċ` for a
    newline):

    word_merges((" the",))  # -> [("Ġ", "t"), ("Ġt", "h"), ("Ġth", "e")]
    word_merges((".\n",))   # -> [(".", "Ċ")]
    """
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = word.replace(" ", "Ġ").replace("\n", "Ċ")
        for end in range(1, len(symbols)):
            merge = (symbols[:end], symbols[end])
            if merge not in merges:
                merges.append(merge)
    return merges


class UnigramPieces:
    """What ChatGLM's tokenizer calls of sentencepiece's `SentencePieceProcessor`, over an in-memory Unigram model of
    the `tokenizers` library: no sentencepiece, no model file. Ids 0, 1, 2 are `<unk>` (also padding), `<s>`, `</s>`.
    """

    def __init__(self):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), *word_pieces()]
        self.pieces = [piece for piece, _ in pieces]
        self.ids = {piece: index for index, piece in enumerate(self.pieces)}
        self.model = Tokenizer(models.Unigram(pieces, unk_id=0))
        self.model.pre_tokenizer = pre_tokenizers.Metaspace()
        self.model.decoder = decoders.Metaspace()

    def vocab_size(self) -> int:
        return len(self.pieces)

    get_piece_size = vocab_size

    def unk_id(self) -> int:
        return 0

    def bos_id(self) -> int:
        return 1

    def eos_id(self) -> int:
        return 2

    def EncodeAsPieces(self, text: str) -> list[str]:  # noqa: N802  (sentencepiece's name)
        return self.model.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> list[int]:
        return self.model.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.model.decode(ids)

    def DecodePieces(self, pieces: list[str]) -> str:  # noqa: N802
        return self.decode([self.PieceToId(piece) for piece in pieces])

    def PieceToId(self, piece: str) -> int:  # noqa: N802
        return self.ids.get(piece, 0)

    def IdToPiece(self, index: int) -> str:  # noqa: N802
        return self.pieces[index]


def tiny_chatglm_tokenizer(cls: type):
    """A `cls` (Kolors' `ChatGLMTokenizer` or a subclass) whose sentencepiece model is `UnigramPieces`.

    Its constructor loads a sentencepiece model file through `sentencepiece.SentencePieceProcessor(model_file=...)`;
    for the length of the call that name is `UnigramPieces` (sentencepiece itself need not be installed), and the
    file it is given is this module (it must exist; nothing reads it).
    """
    import sys
    import types
    from unittest import mock

    from diffusers.pipelines.kolors import tokenizer as chatglm

    stand_in = types.ModuleType("sentencepiece")
    stand_in.SentencePieceProcessor = lambda model_file: UnigramPieces()
    previous = sys.modules.get("sentencepiece")
    sys.modules["sentencepiece"] = stand_in
    try:
        with mock.patch.object(chatglm, "is_sentencepiece_available", return_value=True):
            return cls(vocab_file=__file__)
    finally:
        if previous is None:
            del sys.modules["sentencepiece"]
        else:
            sys.modules["sentencepiece"] = previous


# WordPiece: whole words for common prompt words, every letter and digit both word-initial and as a `##`
# continuation, so any lower-cased ASCII word splits into known pieces
_BERT_WORDS = ("a", "the", "of", "and", "photo", "cat", "dog", "moon", "blurry", "low", "quality")


def tiny_bert_tokenizer(model_max_length: int = 77):
    """A BertTokenizer with a ~100-token WordPiece vocabulary, given in memory (no vocab file, no Hub)."""
    from transformers import BertTokenizer

    pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(n) for n in range(10)]
    vocab: dict[str, int] = {}
    for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,!?'-", *pieces, *(f"##{p}" for p in pieces)):
        vocab.setdefault(token, len(vocab))
    for word in _BERT_WORDS:
        vocab.setdefault(word, len(vocab))
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)


def tiny_roberta_tokenizer(model_max_length: int = 32):
    """A RobertaTokenizer (CLAP's): byte-level BPE over the 256 byte symbols with a few merges, RoBERTa's special
    tokens at RoBERTa's ids (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, as CLAP's text config expects them) and
    `<mask>` last."""
    from transformers import RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    merges = [("Ġ", "a"), ("c", "a"), ("ca", "t"), ("Ġ", "t"), ("h", "e")]
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
