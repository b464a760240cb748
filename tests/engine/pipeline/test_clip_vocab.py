from __future__ import annotations

import gzip
import json

import pytest
from transformers import CLIPTokenizer

from engine.pipeline.clip_vocab import BPE_PATH, VOCAB_SIZE, clip_vocab, write_clip_vocab
from engine.pipeline.loader import ConfigFolders

# Ids from the reference implementation (openai/CLIP's SimpleTokenizer, as shipped in
# open_clip) for these exact strings, BOS and EOS included.
REFERENCE_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
    "hello world": [49406, 3306, 1002, 49407],
    "masterpiece, best quality, 1girl, solo, long hair, blue eyes": [
        49406, 12066, 267, 949, 3027, 267, 272, 1611, 267, 5797, 267, 1538, 2225, 267, 1746, 3095, 49407,
    ],
    "score_9, score_8_up, score_7_up, source_anime": [
        49406, 4431, 318, 280, 267, 4431, 318, 279, 318, 705, 267, 4431, 318, 278, 318, 705, 267,
        3634, 318, 6469, 49407,
    ],
    "An astronaut riding a horse on Mars.": [49406, 550, 18376, 6765, 320, 4558, 525, 7496, 269, 49407],
    "lowres, bad anatomy, jpeg artifacts": [49406, 1049, 934, 267, 2103, 15376, 267, 73, 11207, 30249, 49407],
    "(masterpiece:1.2), [blue] eyes": [49406, 263, 12066, 281, 272, 269, 273, 2361, 314, 1746, 316, 3095, 49407],
    "Café déjà vu 東京": [49406, 15304, 25466, 73, 21259, 13230, 48338, 21078, 361, 49407],
}


@pytest.fixture(scope="module")
def sdxl_folder(pipeline_cache):
    return ConfigFolders(pipeline_cache).sdxl()


def test_vocabulary_has_clip_layout():
    vocab, merges = clip_vocab()
    assert len(vocab) == VOCAB_SIZE == 49408
    assert len(merges) == 49152 - 256 - 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert merges[0] == "i n"  # first merge after the header line of the .gz


@pytest.mark.parametrize("folder_name", ["tokenizer", "tokenizer_2"])
@pytest.mark.parametrize("text", list(REFERENCE_IDS))
def test_tokenizers_give_reference_ids(sdxl_folder, folder_name, text):
    tokenizer = CLIPTokenizer.from_pretrained(sdxl_folder / folder_name)
    assert tokenizer(text).input_ids == REFERENCE_IDS[text]


def test_tokenizers_pad_like_sdxl(sdxl_folder):
    # SDXL's first tokenizer pads with EOS, the OpenCLIP one with "!" (id 0).
    first = CLIPTokenizer.from_pretrained(sdxl_folder / "tokenizer")
    second = CLIPTokenizer.from_pretrained(sdxl_folder / "tokenizer_2")
    assert first("a cat", padding="max_length", max_length=6).input_ids == [49406, 320, 2368, 49407, 49407, 49407]
    assert second("a cat", padding="max_length", max_length=6).input_ids == [49406, 320, 2368, 49407, 0, 0]
    assert first.model_max_length == second.model_max_length == 77


def test_written_files_have_the_hub_layout(tmp_path):
    folder = write_clip_vocab(tmp_path / "tokenizer")
    vocab_file = folder / "vocab.json"
    assert len(json.loads(vocab_file.read_text(encoding="utf-8"))) == VOCAB_SIZE
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894


def test_rejects_a_file_that_is_not_clips_merges(tmp_path):
    fake = tmp_path / "fake.txt.gz"
    fake.write_bytes(gzip.compress(b"#version: 0.2\na b\nc d\n"))
    with pytest.raises(ValueError, match="not CLIP"):
        clip_vocab(fake)


def test_vendored_file_is_the_known_one():
    import hashlib

    digest = hashlib.sha256(BPE_PATH.read_bytes()).hexdigest()
    assert digest == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
