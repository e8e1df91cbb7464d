"""The authors' result tables shipped as package data: complete, unchanged, found by default."""

import hashlib
import re

import pytest

from dnnstress.authors import ENV_VAR, SHIPPED_DIR, default_authors_dir, \
    find_authors_rows, list_tables, \
    load_authors_rows, published_layers

# One "<sha256>  <file name>" line per shipped CSV, as `sha256sum` prints them.
_DIGEST_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64})  (?P<name>.+\.csv)$", re.MULTILINE)


def _recorded_digests():
    return {m["name"]: m["digest"]
            for m in _DIGEST_LINE.finditer((SHIPPED_DIR / "SOURCE.md").read_text())}


def test_shipped_tables_match_the_digests_recorded_at_copy_time():
    recorded = _recorded_digests()
    shipped = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
               for path in SHIPPED_DIR.glob("*.csv")}
    assert len(recorded) == 18
    assert shipped == recorded


def test_shipped_tables_carry_their_licence_and_source():
    licence = (SHIPPED_DIR / "LICENSE").read_text()
    assert licence.startswith("The MIT License (MIT)")
    assert "Copyright (c) 2016 Micael Carvalho" in licence
    assert "github.com/MicaelCarvalho/DNNsUnderStress" in (SHIPPED_DIR / "SOURCE.md").read_text()


def test_the_shipped_copy_is_the_default(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert default_authors_dir() == SHIPPED_DIR
    # Every shipped file is recognised by name: none is silently left out.
    assert len(list_tables()) == len(list(SHIPPED_DIR.glob("*.csv")))
    assert load_authors_rows()[0]["score"] == pytest.approx(0.76952192)


def test_our_names_find_the_authors_tables():
    rows = find_authors_rows("vgg-m", "voc2007")  # case and punctuation do not matter
    assert rows[0]["layer"] == 19 and rows[0]["score"] == pytest.approx(0.76952192)
    assert find_authors_rows("VGG_M", "MIT 67", "L19")[0]["dataset"] == "MIT-67"
    layer16 = find_authors_rows("vgg-m", "voc2007", 16)
    assert {r["layer"] for r in layer16} == {16} and len(layer16) > 1
    assert find_authors_rows("vgg-m", "fashion-mnist") is None
    assert find_authors_rows("vgg-m", "voc2007", "pooled") is None  # no layer number
    assert find_authors_rows("vgg-m", "voc2007", 3) is None  # not published
    assert published_layers("vgg-m", "voc2007") == [15, 16, 17, 18, 19, 20, 21]
    assert published_layers("GoogLeNet", "VOC 2007") == [151]
    assert published_layers("efficientnet-lite0", "voc2007") == []
