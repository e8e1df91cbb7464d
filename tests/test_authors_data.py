"""The authors' result tables shipped as package data: complete, unchanged, found by default."""

import hashlib
import re

import pytest

from dnnstress.authors import ENV_VAR, SHIPPED_DIR, default_authors_dir, list_tables, \
    load_authors_rows

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
