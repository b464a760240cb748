"""The real CLIP tokenizer vocabulary, built offline from the vendored BPE merges file.

Both SDXL text encoders tokenize with OpenAI CLIP's byte-level BPE. Its merges ship here as
`sdxl_config/bpe_simple_vocab_16e6.txt.gz` (MIT, see the LICENSE note beside it); this module
turns them into the `vocab.json` + `merges.txt` pair that Hugging Face's CLIPTokenizer reads,
with the token ids openai/CLIP defines, so no tokenizer is ever fetched from a hub.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from engine.atomic import write_text_atomic

BPE_PATH = Path(__file__).with_name("sdxl_config") / "bpe_simple_vocab_16e6.txt.gz"

VOCAB_SIZE = 49408
# openai/CLIP keeps the first 49152 - 256 - 2 merges after the header line: together with
# 2 x 256 byte symbols and 2 special tokens that makes exactly 49408 ids.
_MERGE_COUNT = 49152 - 256 - 2
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    # CLIP's byte-level alphabet, as in openai/CLIP and transformers.
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


@lru_cache(maxsize=2)
def clip_vocab(bpe_path: Path = BPE_PATH) -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id table and its ordered merges ("a b" pairs), as openai/CLIP builds them."""
    lines = gzip.decompress(Path(bpe_path).read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : _MERGE_COUNT + 1]
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [ch + "</w>" for ch in alphabet]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or len(tokens) != VOCAB_SIZE:
        raise ValueError(f"{bpe_path} is not CLIP's merges file ({len(vocab)} tokens)")
    return vocab, merges


def write_clip_vocab(folder: Path, bpe_path: Path = BPE_PATH) -> Path:
    """Write vocab.json and merges.txt into `folder` (the layout of the Hub's CLIP tokenizers)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab(bpe_path)
    # Two processes (bot and CLI) may build the files at once; a reader never sees half of one.
    write_text_atomic(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    write_text_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder
