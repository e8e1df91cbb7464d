"""``dnnstress data fetch fashion-mnist``: get the default data set without a browser.

Two sources give the same four IDX files:

- Debian's ``dataset-fashion-mnist`` package (30.9 MB, MIT licence), reachable wherever
  apt is, even on machines whose only network access is a package mirror.  No root is
  needed: ``apt-get download`` fetches the .deb into a temporary directory and
  :func:`extract_archive` unpacks the four files from it there.
- A base URL serving ``train-images-idx3-ubyte.gz`` etc. (the upstream bucket, or a
  mirror), read with urllib.

Either way the files are checked (SHA-256 of their decompressed content, which both
sources share, and the 60,000 / 10,000 image counts) before they are moved into place,
so a failed or partial fetch never leaves a half-written data set behind.

Archives are unpacked by :func:`extract_archive`, which reads the whole member list
first and refuses the archive if any member could land outside the destination (an
absolute name, a ``..`` step, a link leading out, a device file): a crafted package or
mirror cannot write anywhere else.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from dnnstress.datasets import fashion_mnist
from dnnstress.datasets.locations import default_dataset_dir

FILE_NAMES = [f"{name}.gz" for pair in fashion_mnist.FILES.values() for name in pair]
# SHA-256 of the decompressed files: gzip headers differ between the Debian package and
# the upstream bucket (the upstream ones store a file name), the IDX content does not.
CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
EXPECTED_SIZES = {"train": 60000, "test": 10000}
_PACKAGE = fashion_mnist.DEBIAN_PACKAGE
_PACKAGE_DIR = "usr/share/datasets/fashion-mnist"  # where the .deb holds the files
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A fetch that could not complete; the message says what to do instead."""


def fetch_fashion_mnist(dest=None, url: str | None = None, progress: bool = True,
                        force: bool = False) -> Path:
    """Download Fashion-MNIST into ``dest`` and return that directory.

    What is fetched and from where is always printed before the download starts.

    Parameters
    ----------
    dest : path-like, optional
        Target directory; default ``default_dataset_dir("fashion-mnist")`` in the
        dnnstress cache, which :func:`dnnstress.datasets.open_dataset` searches.
    url : str, optional
        Base URL serving the four ``*.gz`` files (e.g.
        ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/``).  Without it
        the Debian package is used (needs ``apt-get``, not root).
    progress : bool, default True
        Print each step.
    force : bool, default False
        Fetch even if ``dest`` already holds a verified copy.

    Raises
    ------
    FetchError
        The tools are missing, the download failed, or the files did not verify.
    """
    dest = Path(dest).expanduser() if dest is not None else default_dataset_dir(
        fashion_mnist.NAME)
    say = print if progress else _silent
    if not force and _holds_verified_copy(dest):
        print(f"Fashion-MNIST is already in {dest} (verified); use --force to fetch again")
        return dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
        # Staging inside dest keeps the final os.replace on one file system (atomic).
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest))
    except OSError as error:
        raise FetchError(f"cannot write to {dest} ({error}); choose another --dest") from error
    try:
        if url is None:
            files = _download_debian(staging, dest, say)
        else:
            files = _download_url(url, staging, say)
        say("Verifying checksums and image counts ...")
        _verify(files)
        for name in FILE_NAMES:
            os.replace(files / name, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sizes = " / ".join(f"{n} {split}" for split, n in EXPECTED_SIZES.items())
    print(f"Fashion-MNIST ({sizes} images) is in {dest}")
    return dest


def _silent(*args, **kwargs) -> None:
    """A ``print`` that prints nothing (progress=False)."""


def _download_debian(staging: Path, dest: Path, say) -> Path:
    """Fetch and unpack the Debian package; the directory holding the four files."""
    if shutil.which("apt-get") is None:
        raise FetchError(
            f"apt-get not found, so the Debian package {_PACKAGE} cannot be used here. "
            f"On a machine with internet use --url {fashion_mnist.UPSTREAM_URL} , or "
            f"copy the files {', '.join(FILE_NAMES)} into {dest} by hand.")
    uri = _debian_uri(staging)
    print(f"Fetching Fashion-MNIST: Debian package {_PACKAGE} (MIT licence, about 31 MB) "
          f"from {uri}")
    _run(["apt-get", "download", _PACKAGE], cwd=staging)
    debs = sorted(staging.glob(f"{_PACKAGE}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download finished but left no {_PACKAGE}_*.deb in {staging}")
    say(f"Unpacking {debs[0].name} ...")
    unpacked = staging / "unpacked"
    extract_archive(debs[0], unpacked, under=_PACKAGE_DIR)
    files = unpacked / _PACKAGE_DIR
    missing = [name for name in FILE_NAMES if not (files / name).is_file()]
    if missing:
        raise FetchError(f"the package {debs[0].name} lacks {', '.join(missing)} "
                         f"under /{_PACKAGE_DIR}")
    return files


def extract_archive(archive, dest, under: str | None = None) -> Path:
    """Unpack a ``.deb``, tar (any compression tarfile reads) or zip archive into ``dest``.

    Every member is checked before anything is written: an absolute name, a ``..``
    step, a symbolic or hard link whose target leaves the archive's root, or a device
    or FIFO refuses the whole archive.  Tar members are then extracted with tarfile's
    ``"data"`` filter (which checks the same again and drops permissions bits such as
    set-uid).  In a ``.deb`` only the ``data.tar.*`` member is unpacked (``.zst`` needs
    the ``zstd`` tool); the ar container's member names are checked too.

    Parameters
    ----------
    archive : path-like
    dest : path-like
        Created if missing.
    under : str, optional
        Extract only the regular files and folders below this folder of the archive
        (the whole archive is still checked); links are then never created.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    FetchError
        For an unsafe member, naming it, or an archive that is not one of these formats.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".deb":
        with _deb_data(archive, dest) as tar:
            _extract_tar(tar, dest, archive.name, under)
    elif zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, under)
    else:
        try:
            tar = tarfile.open(archive, "r:*")
        except (tarfile.TarError, OSError) as error:
            raise FetchError(f"{archive.name} is not a .deb, tar or zip archive "
                             f"({error})") from error
        with tar:
            _extract_tar(tar, dest, archive.name, under)
    return dest


def _deb_data(deb: Path, scratch: Path) -> tarfile.TarFile:
    """The ``data.tar.*`` member of a Debian package (an ar archive), opened."""
    size = deb.stat().st_size
    with open(deb, "rb") as file:
        if file.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb.name} is not a Debian package (no ar header)")
        while header := file.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                raise FetchError(f"{deb.name}: corrupt ar member header")
            name = header[:16].decode("ascii", "replace").strip().removesuffix("/")
            try:
                length = int(header[48:58])
            except ValueError:
                raise FetchError(f"{deb.name}: corrupt ar member size") from None
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise FetchError(f"{deb.name}: unsafe ar member name {name!r}")
            if length < 0 or file.tell() + length > size:
                raise FetchError(f"{deb.name}: ar member {name!r} runs past the end of the file")
            if name.startswith("data.tar"):
                data = file.read(length)
                break
            file.seek(length + (length & 1), os.SEEK_CUR)  # members are 2-byte aligned
        else:
            raise FetchError(f"{deb.name} has no data.tar member")
    if name == "data.tar.zst":  # not in the standard library before Python 3.14
        if shutil.which("zstd") is None:
            raise FetchError(f"{deb.name} is compressed with zstd: install zstd, or use "
                             f"--url {fashion_mnist.UPSTREAM_URL}")
        compressed = scratch / f".{deb.name}.data.tar.zst"
        compressed.write_bytes(data)
        _run(["zstd", "-d", "-q", "-f", "--rm", str(compressed)], cwd=scratch)
        plain = compressed.with_suffix("")
        data = plain.read_bytes()
        plain.unlink()
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as error:
        raise FetchError(f"{deb.name}: unreadable {name} ({error})") from error


def _check_name(name: str, where: str) -> PurePosixPath:
    """The archive member name as a relative path inside the root, or FetchError."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise FetchError(f"{where}: refusing member {name!r}, whose path leaves the "
                         "destination")
    return path


def _check_link(member: tarfile.TarInfo, where: str) -> None:
    """A link must resolve inside the archive's root (absolute targets are taken from the
    root, as dpkg installs them); a hard link names another member."""
    target = member.linkname
    if member.islnk():
        _check_name(target, where)
        return
    base = "" if target.startswith("/") else posixpath.dirname(member.name)
    resolved = posixpath.normpath(posixpath.join(base, target.lstrip("/")))
    if resolved == ".." or resolved.startswith("../"):
        raise FetchError(f"{where}: refusing link {member.name!r} -> {target!r}, which "
                         "points outside the destination")


def _is_below(path: PurePosixPath, folder: str) -> bool:
    return PurePosixPath(folder) in (path, *path.parents)


def _extract_tar(tar: tarfile.TarFile, dest: Path, where: str, under: str | None) -> None:
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FetchError(f"{where}: corrupt archive ({error})") from error
    for member in members:
        _check_name(member.name, where)
        if member.issym() or member.islnk():
            _check_link(member, where)
        elif not (member.isfile() or member.isdir()):
            raise FetchError(f"{where}: refusing member {member.name!r}, a device or FIFO")
    if under is not None:
        members = [m for m in members if (m.isfile() or m.isdir())
                   and _is_below(_check_name(m.name, where), under)]
    try:
        # The "data" filter (Python >= 3.11.4 and security releases) checks each member
        # again as it is written; our own checks above have already covered older ones.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)
    except tarfile.FilterError as error:
        raise FetchError(f"{where}: refusing member ({error})") from error
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FetchError(f"{where}: cannot unpack into {dest} ({error})") from error


def _extract_zip(archive: Path, dest: Path, under: str | None) -> None:
    where = archive.name
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
            for info in infos:
                _check_name(info.filename, where)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise FetchError(f"{where}: refusing member {info.filename!r}, a "
                                     "symbolic link")
            for info in infos:
                if under is None or _is_below(_check_name(info.filename, where), under):
                    zipped.extract(info, dest)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise FetchError(f"{where}: cannot unpack ({error})") from error


def _debian_uri(staging: Path) -> str:
    """The URI apt would download the package from (its configured source)."""
    output = _run(["apt-get", "download", "--print-uris", _PACKAGE], cwd=staging)
    # Line format: 'URI' FILENAME SIZE HASH
    for line in output.splitlines():
        if line.startswith("'"):
            return line.split()[0].strip("'")
    return "the configured apt sources"


def _run(command: list[str], cwd: Path) -> str:
    """Run ``command``; its standard output, or a FetchError quoting its error output."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise FetchError(f"cannot run {command[0]}: {error}") from error
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()[-3:]
        hint = ""
        if command[0] == "apt-get":
            hint = (f" The package {_PACKAGE} is in Debian 11 (bullseye) and later, "
                    f"section main: try `apt-get update`, or use --url with a base URL "
                    f"such as {fashion_mnist.UPSTREAM_URL}")
        raise FetchError(f"`{' '.join(command)}` failed (exit {result.returncode}): "
                         f"{' / '.join(said)}.{hint}")
    return result.stdout


def _download_url(base: str, staging: Path, say) -> Path:
    """Download the four files from ``base`` into ``staging``; returns ``staging``."""
    base = base if base.endswith("/") else base + "/"
    print(f"Fetching Fashion-MNIST: {len(FILE_NAMES)} files from {base}")
    for name in FILE_NAMES:
        url = base + name
        print(f"  {url}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, \
                    open(staging / name, "wb") as handle:
                shutil.copyfileobj(response, handle, _CHUNK)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise FetchError(f"cannot download {url}: {error}. Without internet, run "
                             f"`dnnstress data fetch fashion-mnist` without --url "
                             f"(Debian package {_PACKAGE}).") from error
        say(f"    {(staging / name).stat().st_size:,} bytes")
    return staging


def _verify(directory: Path) -> None:
    """Check the content checksums and the image counts; FetchError otherwise."""
    for name in FILE_NAMES:
        digest = _content_sha256(directory / name)
        if digest != CONTENT_SHA256[name]:
            raise FetchError(f"{name}: SHA-256 of the content is {digest}, expected "
                             f"{CONTENT_SHA256[name]}: the download is damaged or is not "
                             f"Fashion-MNIST")
    try:
        splits = fashion_mnist.open_fashion_mnist(directory)
    except ValueError as error:
        raise FetchError(f"the fetched files do not load: {error}") from error
    for split, expected in EXPECTED_SIZES.items():
        if len(splits[split]) != expected:
            raise FetchError(f"the fetched {split} split has {len(splits[split])} images, "
                             f"expected {expected}")


def _content_sha256(path: Path) -> str:
    try:
        digest = hashlib.sha256()
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()
    except (EOFError, OSError) as error:
        raise FetchError(f"{path.name}: not a valid gzip file ({error})") from error


def _holds_verified_copy(directory: Path) -> bool:
    if not all((directory / name).is_file() for name in FILE_NAMES):
        return False
    try:
        _verify(directory)
    except FetchError:
        return False
    return True
