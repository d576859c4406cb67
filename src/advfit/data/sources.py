"""Where the built-in datasets come from, and how a copy is proven to be the real one.

Each built-in dataset has canonical files with published checksums. A
download is streamed to a temporary file, checked, and renamed into place
only when it matches, so a failed or tampered download leaves nothing behind.
A user's own local copy is checked against the same checksums; a copy that
differs is refused unless the configuration vouches for it (``verify: false``,
or the user's own sha256 of each differing file), and then used with a
warning that names the difference.

Checksums are of the files as published. Gzipped files also carry the sha256
of their decompressed content, so a copy recompressed by someone else (the
Debian package of Fashion-MNIST has different gzip headers) or kept
decompressed (torchvision's ``raw/`` folders) is still recognised as canonical.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Mapping, TextIO

from advfit import __version__

from advfit.data import formats
from advfit.runtime.io import atomic_path, file_sha256  # noqa: F401  (file_sha256: part of this API)

log = logging.getLogger("advfit")

PathLike = str | os.PathLike
CHUNK_SIZE = 1 << 20  # 1 MiB: canonical tarballs are up to 2.6 GB, never read whole
ALGORITHMS = ("sha256", "md5")
HEX_LENGTHS = {"sha256": 64, "md5": 32}
# Some dataset hosts refuse urllib's default agent; say who is asking instead.
USER_AGENT = f"advfit/{__version__} (dataset download)"


class ChecksumError(ValueError):
    """A file whose checksum is not the one expected; names the file, expected and actual."""

    def __init__(self, path: PathLike, expected: Iterable[Checksum], actual: Mapping[str, str],
                 hint: str = ""):
        self.path = Path(path)
        self.expected = tuple(expected)
        self.actual = dict(actual)
        wanted = " or ".join(str(c) for c in self.expected)
        found = _found(self.actual)
        super().__init__(f"{self.path}: checksum mismatch: expected {wanted}; found {found}"
                         + (f". {hint}" if hint else ""))


class DownloadError(OSError):
    """A download that could not complete; says how to supply the file by hand."""


class ArchiveError(ValueError):
    """A tarball that is truncated, corrupt, or has members that could escape its target."""


@dataclass(frozen=True)
class Checksum:
    """One published checksum of a file.

    ``content=True``: the checksum of the decompressed content of a gzip file,
    which for a file that is not gzipped is the file itself.
    """

    algorithm: str
    hexdigest: str
    content: bool = False

    def __post_init__(self):
        if self.algorithm not in HEX_LENGTHS:
            raise ValueError(f"checksum algorithm must be one of {ALGORITHMS}, "
                             f"got {self.algorithm!r}")
        digest = self.hexdigest.lower()
        if (len(digest) != HEX_LENGTHS[self.algorithm]
                or any(c not in "0123456789abcdef" for c in digest)):
            raise ValueError(f"not a {self.algorithm} hex digest: {self.hexdigest!r}")
        object.__setattr__(self, "hexdigest", digest)

    @classmethod
    def parse(cls, value: str | Checksum) -> Checksum:
        """``"sha256:<hex>"``, ``"md5:<hex>"``, or bare hex (64 digits: sha256, 32: md5)."""
        if isinstance(value, Checksum):
            return value
        text = str(value).strip()
        if ":" in text:
            algorithm, digest = text.split(":", 1)
            return cls(algorithm.strip().lower(), digest.strip())
        by_length = {length: alg for alg, length in HEX_LENGTHS.items()}
        if len(text) not in by_length:
            raise ValueError(f"not a sha256 (64 hex digits) or md5 (32) checksum: {text!r}")
        return cls(by_length[len(text)], text)

    def __str__(self) -> str:
        of = " of the decompressed content" if self.content else ""
        return f"{self.algorithm}:{self.hexdigest}{of}"


def _as_checksums(expected) -> tuple[Checksum, ...]:
    if expected is None:
        raise ValueError("an expected checksum is required: files are never used unverified")
    if isinstance(expected, (str, Checksum)):
        expected = [expected]
    checksums = tuple(Checksum.parse(c) for c in expected)
    if not checksums:
        raise ValueError("an expected checksum is required: files are never used unverified")
    return checksums


# --------------------------------------------------------------------------- digests

def _new_hashers() -> dict[str, "hashlib._Hash"]:
    # usedforsecurity=False: md5 identifies published files here; FIPS builds refuse it otherwise.
    return {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}


def _digest_stream(read: Callable[[int], bytes]) -> dict[str, str]:
    hashers = _new_hashers()
    while chunk := read(CHUNK_SIZE):
        for hasher in hashers.values():
            hasher.update(chunk)
    return {alg: hasher.hexdigest() for alg, hasher in hashers.items()}


def file_digests(path: PathLike) -> dict[str, str]:
    """sha256 and md5 of a file in one streaming pass."""
    with open(path, "rb") as handle:
        return _digest_stream(handle.read)


def file_md5(path: PathLike) -> str:
    with open(path, "rb") as handle:
        hasher = hashlib.md5(usedforsecurity=False)
        while chunk := handle.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


def is_gzip(path: PathLike) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def content_digests(path: PathLike) -> dict[str, str] | None:
    """Digests of the decompressed content of a gzip file (of the file itself otherwise).

    None when the gzip stream is truncated or corrupt: it has no content to match.
    """
    if not is_gzip(path):
        return file_digests(path)
    try:
        with gzip.open(path, "rb") as handle:
            return _digest_stream(handle.read)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return None


def _match(checksums: Iterable[Checksum], file: Mapping[str, str],
           content: Callable[[], Mapping[str, str] | None]) -> Checksum | None:
    """The first checksum the file matches; decompresses only if no file checksum matched."""
    checksums = tuple(checksums)
    for checksum in checksums:
        if not checksum.content and file[checksum.algorithm] == checksum.hexdigest:
            return checksum
    if any(c.content for c in checksums):
        digests = content()
        for checksum in checksums:
            if checksum.content and digests and digests[checksum.algorithm] == checksum.hexdigest:
                return checksum
    return None


def match_checksum(path: PathLike, checksums: Iterable[Checksum],
                   digests: Mapping[str, str] | None = None) -> Checksum | None:
    """The checksum among ``checksums`` that ``path`` matches, or None."""
    digests = digests or file_digests(path)
    return _match(checksums, digests, lambda: content_digests(path))


def verify_file(path: PathLike, expected, hint: str = "") -> Checksum:
    """Check ``path`` against one or several accepted checksums; return the one it matches.

    ``expected``: a :class:`Checksum`, a string (``"sha256:<hex>"``, bare hex),
    or several of them (any one match is enough). Raises :class:`ChecksumError`.
    """
    path = Path(path)
    checksums = _as_checksums(expected)
    digests = file_digests(path)
    matched = match_checksum(path, checksums, digests)
    if matched is None:
        raise ChecksumError(path, checksums, digests, hint)
    return matched


# --------------------------------------------------------------------------- the canonical files

@dataclass(frozen=True)
class KnownFile:
    """A file of a dataset as published, with every checksum that identifies it."""

    name: str
    checksums: tuple[Checksum, ...]
    size: int | None = None  # bytes as published, when known: for progress reports


@dataclass(frozen=True)
class Download:
    """A canonical file and the URLs it is published at (mirrors, tried in order)."""

    file: KnownFile
    urls: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSource:
    """Everything needed to obtain a built-in dataset and to recognise a copy of it."""

    name: str
    folder: str                       # the folder the reader takes, as downloads lay it out
    reader: Callable                  # the advfit.data.formats reader of that folder
    files: tuple[KnownFile, ...]      # the files the reader needs, with their canonical checksums
    downloads: tuple[Download, ...]   # what to fetch: the files themselves, or one archive
    origin: str                       # the page that publishes the dataset and its checksums
    archive_members: tuple[str, ...] = ()  # extracted from the archive (paths inside it)
    # Reads and checks the label files alone, cheaply enough for the configuration check;
    # None where the labels sit inside the image files (CIFAR-10: checked when read).
    labels: Callable | None = None

    @property
    def is_archive(self) -> bool:
        return bool(self.archive_members)


def _sha(hexdigest: str, content: bool = False) -> Checksum:
    return Checksum("sha256", hexdigest, content)


def _md5(hexdigest: str) -> Checksum:
    return Checksum("md5", hexdigest)


def _idx_files(table) -> tuple[KnownFile, ...]:
    return tuple(KnownFile(name, (_sha(sha), _md5(md5), _sha(content_sha, content=True)), size)
                 for name, size, md5, sha, content_sha in table)


# name, bytes, md5, sha256 of the .gz as published, sha256 of its decompressed content.
# md5: yann.lecun.com (also torchvision); sha256: TensorFlow Datasets' url_checksums/mnist.txt and
# /work/shared/data/mnist (byte-identical); content sha256 computed from those files.
MNIST_FILES = _idx_files([
    ("train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    ("train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432",
     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ("t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3",
     "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
     "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    ("t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c",
     "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
     "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
])
# md5: the zalandoresearch/fashion-mnist README; sha256 and sizes: TensorFlow Datasets'
# url_checksums/fashion_mnist.txt. Content sha256: computed from Debian's dataset-fashion-mnist,
# whose .gz files hold the same deflate streams under a different header. Rebuilding the
# canonical header (FNAME set, mtime 2017-08-31 10:50:06/27 UTC) on those streams reproduces
# all four published md5 and sha256 values, which ties the content checksums to the originals
# (tests/test_sources.py repeats this).
FASHION_MNIST_FILES = _idx_files([
    ("train-images-idx3-ubyte.gz", 26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    ("train-labels-idx1-ubyte.gz", 29515, "25c81989df183df01b3e8a0aad5dffbe",
     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("t10k-images-idx3-ubyte.gz", 4422102, "bef4ecab320f06d8554ea6380940ec79",
     "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
     "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    ("t10k-labels-idx1-ubyte.gz", 5148, "bb300cfdad3c16e7a12a480ee83cd310",
     "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
     "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
])
# Members of the canonical tarball: md5 as published with torchvision's CIFAR10 (checked on
# every load there); batches.meta also matches /work/shared/data's byte-identical copy.
CIFAR10_FILES = tuple(KnownFile(name, (_md5(md5),)) for name, md5 in [
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
])
# Tarball md5: the CIFAR page; sha256: Keras' cifar10.load_data (file_hash).
CIFAR10_ARCHIVE = KnownFile("cifar-10-python.tar.gz", (
    _md5("c58f30108f718f92721af3b95e74349a"),
    _sha("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")), 170498071)
# Members of the canonical tarball: md5 as published with torchvision's STL10.
STL10_FILES = tuple(KnownFile(name, (_md5(md5),), size) for name, md5, size in [
    ("train_X.bin", "918c2871b30a85fa023e0c44e0bee87f", 5000 * formats.STL10_IMAGE_BYTES),
    ("train_y.bin", "5a34089d4802c674881badbb80307741", 5000),
    ("test_X.bin", "7f263ba9f9e0b06b93213547f721ac82", 8000 * formats.STL10_IMAGE_BYTES),
    ("test_y.bin", "36f9794fa4beb8a2c72628de14fa638e", 8000),
])
# Tarball md5: torchvision; sha256 and size: TensorFlow Datasets' url_checksums/stl10.txt.
STL10_ARCHIVE = KnownFile("stl10_binary.tar.gz", (
    _md5("91f7769df0f17e558f3565bffb0c7dfb"),
    _sha("f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866")), 2640397119)

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

SOURCES: dict[str, DatasetSource] = {
    "mnist": DatasetSource(
        name="mnist", folder="mnist", reader=formats.read_mnist_idx, files=MNIST_FILES,
        labels=formats.read_mnist_labels,
        downloads=tuple(Download(f, tuple(m + f.name for m in MNIST_MIRRORS)) for f in MNIST_FILES),
        # The originals; the site now often refuses automated downloads, hence the mirrors.
        origin="http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": DatasetSource(
        name="fashion_mnist", folder="fashion_mnist", reader=formats.read_mnist_idx,
        files=FASHION_MNIST_FILES, labels=formats.read_mnist_labels,
        downloads=tuple(Download(f, (FASHION_MNIST_URL + f.name,)) for f in FASHION_MNIST_FILES),
        origin="https://github.com/zalandoresearch/fashion-mnist"),
    "cifar10": DatasetSource(
        name="cifar10", folder="cifar-10-batches-py", reader=formats.read_cifar10,
        files=CIFAR10_FILES,
        downloads=(Download(CIFAR10_ARCHIVE,
                            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)),),
        origin="https://www.cs.toronto.edu/~kriz/cifar.html",
        archive_members=tuple(f"cifar-10-batches-py/{f.name}" for f in CIFAR10_FILES)),
    "stl10": DatasetSource(
        name="stl10", folder="stl10_binary", reader=formats.read_stl10_binary, files=STL10_FILES,
        labels=formats.read_stl10_labels,
        downloads=(Download(STL10_ARCHIVE,
                            ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",)),),
        origin="https://cs.stanford.edu/~acoates/stl10/",
        # The 2.7 GB of unlabelled images are never used: not extracted.
        archive_members=tuple(f"stl10_binary/{name}" for name in
                              (*(f.name for f in STL10_FILES), formats.STL10_CLASS_NAMES_FILE))),
}


def source(name: str) -> DatasetSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"no canonical files for dataset {name!r}; "
                         f"known: {sorted(SOURCES)}") from None


# --------------------------------------------------------------------------- downloading

class _Progress:
    """Reports a download every 10 % (every 10 MB when the size is unknown)."""

    def __init__(self, name: str, total: int | None, sink: logging.Logger | TextIO | None):
        self.name, self.total, self.sink = name, total, sink or log
        self.step = max(1, total // 10) if total else 10 * CHUNK_SIZE
        self.next_report = self.step
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        if isinstance(self.sink, logging.Logger):
            self.sink.info(message)
        else:
            self.sink.write(message + "\n")
            self.sink.flush()

    def update(self, received: int) -> None:
        if received < self.next_report:
            return
        while self.next_report <= received:
            self.next_report += self.step
        rate = received / max(time.monotonic() - self.started, 1e-6) / 1e6
        if self.total:
            self.say(f"{self.name}: {received / 1e6:.1f} of {self.total / 1e6:.1f} MB "
                     f"({100 * received // self.total}%, {rate:.1f} MB/s)")
        else:
            self.say(f"{self.name}: {received / 1e6:.1f} MB ({rate:.1f} MB/s)")


def _manual_hint(url: str, dest: Path, checksums: tuple[Checksum, ...]) -> str:
    return (f"Without network access, download it by hand from {url} and put it at {dest} "
            f"(it is checked against {' or '.join(str(c) for c in checksums)} before use)")


def download(url: str, dest: PathLike, expected, *, progress: logging.Logger | TextIO | None = None,
             timeout: float = 60.0, size: int | None = None) -> Path:
    """Stream ``url`` to ``dest``; ``dest`` appears only if the bytes match ``expected``.

    The bytes go to a temporary file next to ``dest`` and are hashed on the
    way; on a network failure, a short read or a checksum mismatch the
    temporary file is removed and nothing is left at ``dest``. ``progress``:
    a logger (info lines) or a text stream; the ``advfit`` logger by default.
    """
    dest = Path(dest)
    checksums = _as_checksums(expected)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                announced = response.length  # Content-Length; http.client counts it down as we read
                total = announced if announced is not None else size
                reporter = _Progress(dest.name, total, progress)
                reporter.say(f"downloading {dest.name} from {url}"
                             + (f" ({total / 1e6:.1f} MB)" if total else ""))
                digests, received = _stream_to(response, tmp, reporter)
            if announced is not None and received != announced:
                raise http.client.IncompleteRead(b"", announced - received)
            if _match(checksums, digests, lambda: content_digests(tmp)) is None:
                raise ChecksumError(dest, checksums, digests,
                                    f"downloaded from {url}; nothing was kept")
            reporter.say(f"{dest.name}: {received} bytes, checksum ok")
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not download {dest.name} from {url}: HTTP {error.code} "
                            f"{error.reason}. {_manual_hint(url, dest, checksums)}") from None
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
            TimeoutError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(error, http.client.IncompleteRead):
            reason = f"connection closed early, {error.expected} bytes missing"
        raise DownloadError(f"could not download {dest.name} from {url}: {reason}. "
                            f"{_manual_hint(url, dest, checksums)}") from None
    return dest


def _stream_to(response, tmp: Path, reporter: _Progress) -> tuple[dict[str, str], int]:
    hashers = _new_hashers()
    received = 0
    with open(tmp, "wb") as out:
        while chunk := response.read(CHUNK_SIZE):
            out.write(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
            received += len(chunk)
            reporter.update(received)
    return {alg: hasher.hexdigest() for alg, hasher in hashers.items()}, received


def download_any(item: Download, dest: PathLike, **kwargs) -> Path:
    """Try each mirror in turn; raise the last error, which says how to supply the file by hand."""
    error: Exception | None = None
    for url in item.urls:
        try:
            return download(url, dest, item.file.checksums, size=item.file.size, **kwargs)
        except (DownloadError, ChecksumError) as failure:
            log.warning("%s", failure)
            error = failure
    assert error is not None
    raise error


# --------------------------------------------------------------------------- extracting

def _safe_member_name(archive: Path, member: tarfile.TarInfo) -> str:
    """The member's path, refused if it is absolute or climbs out of the target folder."""
    name = member.name.removeprefix("./")
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ArchiveError(f"{archive}: refusing member {member.name!r}: "
                           f"it would be written outside the target folder")
    return str(path)


def extract_tarball(archive: PathLike, dest_dir: PathLike,
                    members: Iterable[str] | None = None) -> list[Path]:
    """Extract regular files of ``archive`` (only ``members`` when given) into ``dest_dir``.

    Safe: member paths that are absolute or contain ``..`` make the whole
    archive refused, links and devices are never created, and the files are
    written by this code (not by tarfile) under paths it built. Atomic: they
    are extracted into a temporary folder in ``dest_dir`` and each top-level
    folder is renamed into place once complete. Returns those top-level paths.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(members) if members is not None else None
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".partial", dir=dest_dir))
    try:
        found = _extract_into(archive, staging, wanted)
        missing = sorted(wanted - found) if wanted is not None else []
        if missing:
            raise ArchiveError(f"{archive}: missing member(s) {', '.join(missing)}")
        tops = sorted({PurePosixPath(name).parts[0] for name in found})
        for top in tops:
            if (dest_dir / top).exists():
                raise FileExistsError(f"{dest_dir / top} already exists; remove it to extract "
                                      f"{archive.name} again")
        for top in tops:
            os.replace(staging / top, dest_dir / top)
        return [dest_dir / top for top in tops]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_into(archive: Path, staging: Path, wanted: set[str] | None) -> set[str]:
    found = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = _safe_member_name(archive, member)
                if (wanted is not None and name not in wanted) or member.isdir():
                    continue
                if not member.isfile():
                    raise ArchiveError(f"{archive}: refusing member {name!r}: only regular "
                                       f"files are extracted (it is a link or a device)")
                target = staging.joinpath(*PurePosixPath(name).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source_file, open(target, "wb") as out:
                    shutil.copyfileobj(source_file, out, CHUNK_SIZE)
                found.add(name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ArchiveError(f"{archive}: truncated or corrupt archive ({type(error).__name__}: "
                           f"{error}); download it again") from None
    return found


# --------------------------------------------------------------------------- local copies

@dataclass(frozen=True)
class VerifiedCopy:
    """A dataset folder that passed :func:`resolve_local`, with the provenance of each file."""

    folder: Path
    sha256: dict[str, str] = field(default_factory=dict)    # file name -> sha256 as found
    accepted: dict[str, str] = field(default_factory=dict)  # file name -> why it was accepted

    @property
    def canonical(self) -> bool:
        return all(reason == "canonical" for reason in self.accepted.values())


def _locate(folder: Path, known: KnownFile) -> Path | None:
    """The file in ``folder``: its name or, for a .gz, its decompressed twin."""
    for name in (known.name, known.name.removesuffix(".gz")):
        if (folder / name).is_file():
            return folder / name
    return None


def _dataset_folder(src: DatasetSource, path: Path) -> Path:
    """``path`` itself, or its subfolder of the canonical name when ``path`` is its parent."""
    if not path.exists():
        raise FileNotFoundError(f"{src.name}: {path} does not exist")
    if path.is_file():
        raise NotADirectoryError(
            f"{src.name}: {path} is a file; give the folder holding "
            f"{', '.join(f.name for f in src.files)}"
            + (f" (extract {path.name} first, or put it where the workflow downloads to)"
               if src.is_archive else ""))
    if not any(_locate(path, f) for f in src.files) and (path / src.folder).is_dir():
        return path / src.folder
    return path


def _check_user_sha256(src: DatasetSource, sha256: Mapping[str, str] | None) -> dict[str, str]:
    checked = {}
    for name, digest in (sha256 or {}).items():
        try:
            checked[name] = Checksum("sha256", str(digest)).hexdigest
        except ValueError as error:
            raise ValueError(f"{src.name}: sha256 of {name}: {error}") from None
    sha256 = checked
    allowed = {n for f in src.files for n in (f.name, f.name.removesuffix(".gz"))}
    unknown = sorted(set(sha256) - allowed)
    if unknown:
        raise ValueError(f"{src.name}: sha256 given for unknown file(s) {unknown}; "
                         f"its files are {[f.name for f in src.files]}")
    return sha256


def _found(digests: Mapping[str, str]) -> str:
    return ", ".join(f"{alg}:{digest}" for alg, digest in digests.items())


def _accept(src: DatasetSource, known: KnownFile, path: Path, verify: bool,
            own: str | None) -> tuple[str, str]:
    """(sha256 of ``path``, why it is accepted), or ChecksumError."""
    digests = file_digests(path)
    canonical = match_checksum(path, known.checksums, digests) is not None
    if own is not None:
        if digests["sha256"] != own:
            raise ChecksumError(path, [Checksum("sha256", own)], digests,
                                "the expected sha256 is the one given in the configuration")
        if canonical:
            return digests["sha256"], "canonical"
        log.warning("%s: %s is not the canonical file (expected %s; found %s); using it "
                    "because its sha256 matches the one given in the configuration",
                    src.name, path, " or ".join(map(str, known.checksums)), _found(digests))
        return digests["sha256"], "sha256 given in the configuration"
    if canonical:
        return digests["sha256"], "canonical"
    if not verify:
        log.warning("%s: %s is not the canonical file (expected %s; found %s); using it "
                    "anyway because verify is false", src.name, path,
                    " or ".join(map(str, known.checksums)), _found(digests))
        return digests["sha256"], "verify false"
    raise ChecksumError(path, known.checksums, digests,
                        f"It is not the canonical {src.name} file (see {src.origin}). To use this "
                        f"copy anyway, set verify: false or give its sha256 "
                        f"({known.name}: {digests['sha256']}) in the dataset configuration")


def local_folder(src: DatasetSource | str, path: PathLike) -> Path:
    """The folder of a local copy that holds every file ``src`` needs (checksums unchecked).

    Cheap (no file is read), so that the configuration check can refuse a
    folder with missing files before any job runs; FileNotFoundError lists them.
    """
    src = source(src) if isinstance(src, str) else src
    folder = _dataset_folder(src, Path(path))
    missing = [f.name for f in src.files if _locate(folder, f) is None]
    if missing:
        raise FileNotFoundError(f"{src.name}: {folder} lacks {', '.join(missing)}; "
                                f"the folder must hold {', '.join(f.name for f in src.files)}")
    return folder


def resolve_local(name: str, path: PathLike, verify: bool = True,
                  sha256: Mapping[str, str] | None = None) -> VerifiedCopy:
    """Check a user's local copy of built-in dataset ``name``; return its folder and provenance.

    ``path``: the folder the reader takes (or its parent holding it under the
    canonical folder name). Every file must match a canonical checksum; a
    file that does not is refused with :class:`ChecksumError`, unless
    ``sha256`` (file name -> sha256) vouches for it, or ``verify`` is False;
    then it is used with a warning naming the mismatch. A sha256 given for a
    file must always match, canonical or not.
    """
    return resolve_source(source(name), path, verify, sha256)


def resolve_source(src: DatasetSource, path: PathLike, verify: bool = True,
                   sha256: Mapping[str, str] | None = None) -> VerifiedCopy:
    """:func:`resolve_local` for a :class:`DatasetSource` given directly."""
    folder = local_folder(src, path)
    own = _check_user_sha256(src, sha256)
    digests, accepted = {}, {}
    for known in src.files:
        path_found = _locate(folder, known)
        user = own.get(known.name, own.get(path_found.name))
        digests[path_found.name], accepted[path_found.name] = _accept(src, known, path_found,
                                                                      verify, user)
    return VerifiedCopy(folder, digests, accepted)


def fetch(name: str, cache_dir: PathLike, *,
          progress: logging.Logger | TextIO | None = None) -> VerifiedCopy:
    """The canonical files of ``name`` under ``cache_dir``, downloaded only if absent.

    Files already there (a manual copy, an earlier run) are verified, never
    trusted; a mismatch is an error that says to remove the file. Archives
    are kept next to the folder they are extracted into.
    """
    return fetch_source(source(name), cache_dir, progress=progress)


def fetch_source(src: DatasetSource, cache_dir: PathLike, *,
                 progress: logging.Logger | TextIO | None = None) -> VerifiedCopy:
    """:func:`fetch` for a :class:`DatasetSource` given directly."""
    cache_dir = Path(cache_dir)
    folder = cache_dir / src.folder
    if folder.is_dir() and all(_locate(folder, f) for f in src.files):
        return resolve_source(src, folder)
    if src.is_archive:
        (item,) = src.downloads
        archive = _obtain(item, cache_dir / item.file.name, progress)
        log.info("%s: extracting %s", src.name, archive)
        extract_tarball(archive, cache_dir, src.archive_members)
    else:
        for item in src.downloads:
            _obtain(item, folder / item.file.name, progress)
    return resolve_source(src, folder)


def _obtain(item: Download, dest: Path, progress) -> Path:
    if dest.is_file():
        verify_file(dest, item.file.checksums,
                    f"Remove {dest} to download it again from {item.urls[0]}")
        return dest
    return download_any(item, dest, progress=progress)
