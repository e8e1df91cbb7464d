"""``fetch_fashion_mnist`` and ``dnnstress data`` without any real download.

The apt path runs against a fake ``apt-get`` serving a tiny .deb built here (and one built
by ``dpkg-deb`` where it exists); the URL path reads tiny IDX files over file:// and a
local HTTP server.  Crafted tar, zip and .deb archives check that nothing is ever
written outside the destination.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import http.server
import io
import shutil
import stat
import subprocess
import tarfile
import threading
import zipfile

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


def tar_file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def tar_link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def tar_bytes(members, compression="xz"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def ar_bytes(members):
    """An ar archive (the .deb container) of (name, bytes) pairs."""
    out = [b"!<arch>\n"]
    for name, content in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode())
        out.append(content + b"\n" * (len(content) % 2))
    return b"".join(out)


def make_deb(path, members, compression="xz"):
    """A Debian package whose data.tar.<compression> holds ``members``."""
    data_name = "data.tar" + (f".{compression}" if compression else "")
    path.write_bytes(ar_bytes([("debian-binary", b"2.0\n"),
                               ("control.tar.xz", tar_bytes([tar_file("./control")])),
                               (data_name, tar_bytes(members, compression))]))
    return path


def deb_of(source, path, extra=()):
    """A .deb laid out like dataset-fashion-mnist's, with the files of ``source``."""
    files = [tar_file(f"./{fetch._PACKAGE_DIR}/{p.name}", p.read_bytes())
             for p in sorted(source.iterdir())]
    return make_deb(path, [tar_file("./usr/share/doc/dataset-fashion-mnist/copyright"),
                           *extra, *files])


class FakeApt:
    """Stands in for fetch._run: answers apt-get with a .deb (``deb`` or one of ``source``)."""

    URI = "http://deb.example.org/debian/pool/main/d/x/dataset-fashion-mnist_1_all.deb"

    def __init__(self, source, deb=None):
        self.source, self.deb = source, deb
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
                deb_of(self.source, target)
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
    assert [c[:2] for c in fake.commands] == [["apt-get", "download"]] * 2
    assert sorted(p.name for p in dest.iterdir()) == sorted(fetch.FILE_NAMES)  # no staging left
    splits = open_dataset("fashion-mnist", dest)
    assert (len(splits["train"]), len(splits["test"])) == (N_TRAIN, N_TEST)


def test_apt_path_default_dest_is_searched_cache(fake_source, monkeypatch, tools_present):
    monkeypatch.setattr(fetch, "_run", FakeApt(fake_source))
    dest = fetch_fashion_mnist(progress=False)
    assert dest == fake_source.parent / "cache" / "datasets" / "fashion-mnist"
    assert len(open_dataset("fashion-mnist")["test"]) == N_TEST


@pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                    reason="needs dpkg-deb to build a real .deb")
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
    monkeypatch.setattr(fetch, "_run", FakeApt(fake_source, deb=deb))
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


# --- crafted archives --------------------------------------------------------------------

def _zip(path, entries):
    """A zip of (name, data, unix mode or None) entries."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def _archive(tmp_path, kind, members):
    if kind == "deb":
        return make_deb(tmp_path / "crafted.deb", members)
    path = tmp_path / f"crafted.tar.{kind}"
    path.write_bytes(tar_bytes(members, kind))
    return path


HOSTILE_TAR = {
    "dotdot": [tar_file("ok"), tar_file("../escaped")],
    "deep-dotdot": [tar_file("a/b/../../../escaped")],
    "absolute": [tar_file("/tmp/escaped-absolute")],
    "symlink-out": [tar_link("out", "../..")],
    "symlink-then-write": [tar_link("dir", "../"), tar_file("dir/escaped")],
    "symlink-deep-out": [tar_link("a/b/link", "../../../escaped")],
    "hardlink-out": [tar_link("hard", "../escaped", tarfile.LNKTYPE)],
    "hardlink-absolute": [tar_link("hard", "/etc/passwd", tarfile.LNKTYPE)],
    "device": [tar_link("dev", "", tarfile.CHRTYPE)],
    "fifo": [tar_link("fifo", "", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("kind", ["gz", "xz", "deb"])
@pytest.mark.parametrize("case", list(HOSTILE_TAR))
def test_hostile_tar_members_are_refused_before_anything_is_written(tmp_path, kind, case):
    archive = _archive(tmp_path, kind, HOSTILE_TAR[case])
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(FetchError, match=r"crafted\.(deb|tar\.\w+): refusing (member|link)"):
        fetch.extract_archive(archive, dest)
    assert list(dest.iterdir()) == []  # checked as a whole: not even the good members
    assert not (tmp_path / "a" / "b" / "escaped").exists()
    assert not (tmp_path / "a" / "escaped").exists()


def test_absolute_symlink_is_refused_by_the_data_filter(tmp_path):
    # Taken from the archive's root by the member check; the "data" filter still refuses
    # to create a link that would point outside the destination on this disk.
    archive = _archive(tmp_path, "gz", [tar_link("etc", "/etc")])
    with pytest.raises(FetchError, match="refusing member"):
        fetch.extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest" / "etc").is_symlink()


def test_links_inside_the_root_are_unpacked(tmp_path):
    archive = _archive(tmp_path, "gz", [tar_file("d/data", b"content"),
                                        tar_link("d/alias", "data"),
                                        tar_link("top", "d/data", tarfile.LNKTYPE)])
    dest = fetch.extract_archive(archive, tmp_path / "dest")
    assert (dest / "d" / "alias").read_bytes() == b"content"
    assert (dest / "top").read_bytes() == b"content"


def test_deb_extracts_only_the_requested_folder(tmp_path, fake_source):
    # Real packages carry absolute links (to shared docs): checked, not created.
    deb = deb_of(fake_source, tmp_path / "ok.deb",
                 extra=[tar_link("./usr/share/doc/dataset-fashion-mnist/NEWS", "/usr/share/x")])
    dest = fetch.extract_archive(deb, tmp_path / "dest", under=fetch._PACKAGE_DIR)
    assert sorted(p.name for p in (dest / fetch._PACKAGE_DIR).iterdir()) == \
        sorted(fetch.FILE_NAMES)
    assert not (dest / "usr" / "share" / "doc").exists()


@pytest.mark.parametrize(("entries", "match"), [
    ([("ok", b"x", None), ("../escaped", b"x", None)], "refusing member '../escaped'"),
    ([("/tmp/escaped-absolute", b"x", None)], "refusing member '/tmp/escaped-absolute'"),
    ([("C:/escaped", b"x", None)], "refusing member 'C:/escaped'"),
    ([("a\\..\\..\\escaped", b"x", None)], "refusing member"),
    ([("link", b"../../etc", stat.S_IFLNK | 0o777)], "refusing member 'link', a symbolic"),
], ids=["dotdot", "absolute", "drive", "backslashes", "symlink"])
def test_hostile_zip_members_are_refused(tmp_path, entries, match):
    archive = _zip(tmp_path / "crafted.zip", entries)
    with pytest.raises(FetchError, match=match):
        fetch.extract_archive(archive, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []
    assert not (tmp_path / "escaped").exists()


def test_zip_is_unpacked(tmp_path):
    archive = _zip(tmp_path / "ok.zip", [("d/f", b"content", None)])
    assert (fetch.extract_archive(archive, tmp_path / "dest") / "d" / "f").read_bytes() == \
        b"content"


@pytest.mark.parametrize(("content", "match"), [
    (ar_bytes([("../escaped", b"x")]), "unsafe ar member name '../escaped'"),
    (ar_bytes([("debian-binary", b"2.0\n")]), "has no data.tar member"),
    (b"!<arch>\n" + b"data.tar.xz     0           0     0     100644  99999999  `\n",
     "runs past the end of the file"),
    (b"!<arch>\ndata.tar", "corrupt ar member header"),
    (b"not an ar archive", "is not a Debian package"),
    (ar_bytes([("data.tar.xz", b"not xz")]), "unreadable data.tar.xz"),
], ids=["member-name", "no-data", "size-past-end", "short-header", "no-magic",
        "bad-data"])
def test_malformed_deb_containers_are_refused(tmp_path, content, match):
    deb = tmp_path / "crafted.deb"
    deb.write_bytes(content)
    with pytest.raises(FetchError, match=match):
        fetch.extract_archive(deb, tmp_path / "dest")
    assert not (tmp_path / "escaped").exists()


def test_fetch_refuses_a_hostile_package(fake_source, tmp_path, monkeypatch, tools_present):
    deb = deb_of(fake_source, tmp_path / "evil.deb", extra=[tar_file("../../escaped")])
    monkeypatch.setattr(fetch, "_run", FakeApt(fake_source, deb=deb))
    with pytest.raises(FetchError, match="refusing member '../../escaped'"):
        fetch_fashion_mnist(dest=tmp_path / "dest", progress=False)
    assert not (tmp_path / "escaped").exists() and list((tmp_path / "dest").iterdir()) == []


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd tool")
def test_zstd_compressed_deb_is_unpacked_and_checked(tmp_path):
    def zstd_deb(name, members):
        data = subprocess.run(["zstd", "-q", "-c"], input=tar_bytes(members, None),
                              capture_output=True, check=True).stdout
        path = tmp_path / name
        path.write_bytes(ar_bytes([("debian-binary", b"2.0\n"), ("data.tar.zst", data)]))
        return path

    dest = fetch.extract_archive(zstd_deb("ok.deb", [tar_file("f", b"zst")]), tmp_path / "d")
    assert sorted(p.name for p in dest.iterdir()) == ["f"] and (dest / "f").read_bytes() == b"zst"
    with pytest.raises(FetchError, match="refusing member '../escaped'"):
        fetch.extract_archive(zstd_deb("evil.deb", [tar_file("../escaped")]), tmp_path / "e")
    assert not (tmp_path / "escaped").exists()
