"""``fetch_fashion_mnist`` and ``dnnstress data`` without any real download.

The apt path runs against a fake ``apt-get`` (and a real ``dpkg -x`` on a tiny .deb where
dpkg-deb exists); the URL path reads tiny IDX files over file:// and a local HTTP server.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import http.server
import shutil
import subprocess
import threading

import numpy as np
import pytest

from dnnstress.commands import data as data_command
from dnnstress.datasets import FetchError, fashion_mnist, fetch, fetch_fashion_mnist, open_dataset
from fakes import make_fashion

N_TRAIN, N_TEST = 12, 4


def write_fake_files(directory, seed=0):
    """Tiny Fashion-MNIST files; returns {file name: SHA-256 of the decompressed content}."""
    make_fashion(directory, N_TRAIN, N_TEST, seed=seed)
    digests = {}
    for split in ("train", "test"):
        for name in fashion_mnist.FILES[split]:
            content = gzip.decompress((directory / f"{name}.gz").read_bytes())
            digests[f"{name}.gz"] = hashlib.sha256(content).hexdigest()
    return digests


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A directory of tiny files that the fetch verification accepts."""
    monkeypatch.delenv("DNNSTRESS_DATA", raising=False)
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian-share")
    source = tmp_path / "source"
    monkeypatch.setattr(fetch, "CONTENT_SHA256", write_fake_files(source))
    monkeypatch.setattr(fetch, "EXPECTED_SIZES", {"train": N_TRAIN, "test": N_TEST})
    return source


class FakeApt:
    """Stands in for fetch._run: answers apt-get; unpacks like dpkg -x, or calls ``dpkg``."""

    URI = "http://deb.example.org/debian/pool/main/d/x/dataset-fashion-mnist_1_all.deb"

    def __init__(self, source, deb=None, dpkg=None):
        self.source, self.deb, self.dpkg = source, deb, dpkg
        self.commands = []

    def __call__(self, command, cwd):
        self.commands.append(command)
        if command[:3] == ["apt-get", "download", "--print-uris"]:
            return f"'{self.URI}' dataset-fashion-mnist_1_all.deb 123 SHA256:00\n"
        if command[:2] == ["apt-get", "download"]:
            target = cwd / "dataset-fashion-mnist_1_all.deb"
            if self.deb is not None:
                shutil.copy(self.deb, target)
            else:
                target.write_bytes(b"!<arch>\n")
            return ""
        if command[:2] == ["dpkg", "-x"] and self.dpkg is not None:
            return self.dpkg(command, cwd)
        if command[:2] == ["dpkg", "-x"]:
            shutil.copytree(self.source, f"{command[3]}/usr/share/datasets/fashion-mnist")
            return ""
        raise AssertionError(f"unexpected command {command}")


@pytest.fixture
def tools_present(monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_apt_path_installs_verified_files(fake_source, tmp_path, monkeypatch, capsys,
                                          tools_present):
    fake = FakeApt(fake_source)
    monkeypatch.setattr(fetch, "_run", fake)
    dest = fetch_fashion_mnist(dest=tmp_path / "dest")
    out = capsys.readouterr().out
    assert "dataset-fashion-mnist" in out and FakeApt.URI in out
    # The announcement comes before anything is unpacked.
    assert out.index(FakeApt.URI) < out.index("Unpacking")
    assert [c[:2] for c in fake.commands] == [["apt-get", "download"]] * 2 + [["dpkg", "-x"]]
    assert sorted(p.name for p in dest.iterdir()) == sorted(fetch.FILE_NAMES)  # no staging left
    splits = open_dataset("fashion-mnist", dest)
    assert (len(splits["train"]), len(splits["test"])) == (N_TRAIN, N_TEST)


def test_apt_path_default_dest_is_searched_cache(fake_source, monkeypatch, tools_present):
    monkeypatch.setattr(fetch, "_run", FakeApt(fake_source))
    dest = fetch_fashion_mnist(progress=False)
    assert dest == fake_source.parent / "cache" / "datasets" / "fashion-mnist"
    assert len(open_dataset("fashion-mnist")["test"]) == N_TEST


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                    reason="needs dpkg and dpkg-deb to build and unpack a real .deb")
def test_apt_path_with_real_dpkg_on_a_tiny_deb(fake_source, tmp_path, monkeypatch):
    tree = tmp_path / "pkg"
    shutil.copytree(fake_source, tree / "usr" / "share" / "datasets" / "fashion-mnist")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        "Package: dataset-fashion-mnist\nVersion: 1\nArchitecture: all\n"
        "Maintainer: test <t@example.org>\nDescription: fake\n")
    deb = tmp_path / "fake.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
                   check=True, capture_output=True)
    monkeypatch.setattr(fetch, "_run", FakeApt(fake_source, deb=deb, dpkg=fetch._run))
    dest = fetch_fashion_mnist(dest=tmp_path / "dest", progress=False)
    assert len(open_dataset("fashion-mnist", dest)["train"]) == N_TRAIN


def test_missing_apt_tools_suggest_url(fake_source, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match="apt-get not found.*--url"):
        fetch_fashion_mnist(dest=tmp_path / "dest")
    assert not list((tmp_path / "dest").iterdir())  # the staging directory is gone


def test_apt_failure_quotes_apt_and_suggests_fixes(tmp_path, monkeypatch):
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 100, "",
                                           "E: Unable to locate package dataset-fashion-mnist")
    monkeypatch.setattr(fetch.subprocess, "run", failing_run)
    with pytest.raises(FetchError) as info:
        fetch._run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp_path)
    message = str(info.value)
    assert "Unable to locate package" in message and "exit 100" in message
    assert "apt-get update" in message and "--url" in message


def test_url_path_over_file_scheme(fake_source, tmp_path, capsys):
    dest = fetch_fashion_mnist(dest=tmp_path / "dest", url=fake_source.as_uri())
    out = capsys.readouterr().out
    for name in fetch.FILE_NAMES:
        assert f"{fake_source.as_uri()}/{name}" in out
    np.testing.assert_array_equal(open_dataset("fashion-mnist", dest)["test"].labels,
                                  open_dataset("fashion-mnist", fake_source)["test"].labels)


@pytest.fixture
def http_server(fake_source):
    handler = functools.partial(_QuietHandler, directory=str(fake_source))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_url_path_over_http(http_server, tmp_path):
    dest = fetch_fashion_mnist(dest=tmp_path / "dest", url=http_server + "/", progress=False)
    assert len(open_dataset("fashion-mnist", dest)["train"]) == N_TRAIN


def test_url_path_missing_file_names_url(http_server, fake_source, tmp_path):
    (fake_source / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FetchError, match="t10k-labels-idx1-ubyte.gz.*404"):
        fetch_fashion_mnist(dest=tmp_path / "dest", url=http_server, progress=False)
    assert not list((tmp_path / "dest").iterdir())


def test_checksum_mismatch_installs_nothing(fake_source, tmp_path, monkeypatch):
    monkeypatch.setitem(fetch.CONTENT_SHA256, "train-labels-idx1-ubyte.gz", "0" * 64)
    with pytest.raises(FetchError, match="train-labels-idx1-ubyte.gz: SHA-256"):
        fetch_fashion_mnist(dest=tmp_path / "dest", url=fake_source.as_uri(), progress=False)
    assert not list((tmp_path / "dest").iterdir())


def test_wrong_image_count_is_refused(fake_source, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "EXPECTED_SIZES", {"train": 60000, "test": N_TEST})
    with pytest.raises(FetchError, match=f"train split has {N_TRAIN} images, expected 60000"):
        fetch_fashion_mnist(dest=tmp_path / "dest", url=fake_source.as_uri(), progress=False)


def test_verified_copy_is_not_fetched_again(fake_source, tmp_path, monkeypatch, capsys):
    fetch_fashion_mnist(dest=tmp_path / "dest", url=fake_source.as_uri(), progress=False)
    monkeypatch.setattr(fetch, "_download_url", pytest.fail)
    fetch_fashion_mnist(dest=tmp_path / "dest", url=fake_source.as_uri())
    assert "already in" in capsys.readouterr().out


# ---------------------------------------------------------------- the CLI

def main(argv):
    """``dnnstress ARGV`` with only the data command built (others may be mid-change)."""
    parser = argparse.ArgumentParser(prog="dnnstress")
    data_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fetch_then_list_and_info(fake_source, capsys):
    assert main(["data", "fetch", "fashion-mnist", "--url", fake_source.as_uri(),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    cache = fake_source.parent / "cache" / "datasets" / "fashion-mnist"
    assert f"found    {cache}" in out
    assert "voc2007        missing" in out and "host.robots.ox.ac.uk" in out
    assert main(["data", "info", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert f"train {N_TRAIN:>7} images" in out and f"test  {N_TEST:>7} images" in out


def test_cli_fetch_of_manual_data_set_explains(capsys, fake_source):
    assert main(["data", "fetch", "mit67"]) == 1
    assert "web.mit.edu/torralba" in capsys.readouterr().out


def test_cli_fetch_failure_is_an_error_the_cli_reports(fake_source, tmp_path):
    # dnnstress.cli prints RuntimeError subclasses as one line, without a traceback.
    with pytest.raises(RuntimeError, match="cannot download"):
        main(["data", "fetch", "fashion-mnist", "--url", (tmp_path / "nowhere").as_uri(),
              "--dest", str(tmp_path / "d")])
