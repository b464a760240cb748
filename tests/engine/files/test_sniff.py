"""Files that are not safetensors are named for what they are, not for a bogus header length."""

from __future__ import annotations

import json
import pickle
import zipfile

import pytest

from engine.errors import CorruptFileError, UnsafeFileError
from engine.files.header import read_header

PAYLOAD = {"state_dict": {"w": [1.0, 2.0]}, "epoch": 3}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_pickles_of_every_protocol_are_named(tmp_path, protocol):
    path = tmp_path / "m.safetensors"
    path.write_bytes(pickle.dumps(PAYLOAD, protocol=protocol))
    with pytest.raises(UnsafeFileError, match=r"renamed to \.safetensors") as err:
        read_header(path)
    assert "pickle" in str(err.value) and "bytes" not in str(err.value)


def test_text_pickle_of_an_object_is_named(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"ccollections\nOrderedDict\np0\n((lp1\n(lp2\nVw\np3\naI1\naatp4\nRp5\n.")
    with pytest.raises(UnsafeFileError, match="pickle"):
        read_header(path)


def test_torch_zip_is_named(tmp_path):
    path = tmp_path / "m.safetensors"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(PAYLOAD, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"PyTorch pickle \(zip\) renamed to .safetensors"):
        read_header(path)


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 64, "JPEG image"),
        (b"GIF89a" + b"\0" * 64, "GIF image"),
        (b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 64, "WebP image"),
        (b"GGUF\x03\x00\x00\x00" + b"\0" * 64, "GGUF"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "web page"),
        (json.dumps({"items": [1, 2, 3]}).encode(), "JSON"),
        (b"just some notes, not a model\n" * 4, "text"),
    ],
)
def test_impostors_are_named(tmp_path, head, words):
    path = tmp_path / "m.safetensors"
    path.write_bytes(head)
    with pytest.raises(CorruptFileError, match=words) as err:
        read_header(path)
    assert "header is" not in str(err.value)
