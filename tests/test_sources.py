"""Checksums, local copies, downloads and extraction, on real files and a real HTTP server
on 127.0.0.1 (no other network traffic)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import logging
import os
import shutil
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from advfit.data import formats

from advfit.data import sources
from advfit.data.sources import (ArchiveError, Checksum, ChecksumError, DatasetSource, Download,
                                 DownloadError, KnownFile)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
CIFAR_DIR = SHARED / "cifar-10-batches-py"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(),
                                 reason=f"real MNIST copy not found at {MNIST_DIR}")
needs_cifar = pytest.mark.skipif(not CIFAR_DIR.is_dir(),
                                 reason=f"real CIFAR-10 copy not found at {CIFAR_DIR}")
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"Fashion-MNIST not found at {FASHION_DIR} (apt-get install dataset-fashion-mnist)")

# ../shared/data/README.md
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
CIFAR_LOCAL_SHA256 = {  # the rebuilt, non-canonical batch files
    "data_batch_1": "1712cbf145be7fecf9a43a6ca2243f357856da0e3875e47ed4275db86a1d8cbe",
    "data_batch_2": "2be931fe1231970fc146961005a2736b1d8e31b6ab247354c20bde8698ad49b8",
    "data_batch_3": "815333795f162daac77c65a1242a7596086d85a0cf23766a210e64d7c1b9a951",
    "data_batch_4": "14187a74a835d429629ea24e5e901697ed7173da286800fdd0c42abee7df04f1",
    "data_batch_5": "ad3104ef453697af0847997031d9e65b36f7169f2f8e1edfe5f59437e9096795",
    "test_batch": "9518a6a6f70c6a889843032d38c237f47914a05d006556f5372ff97bc4659fee",
}


# --------------------------------------------------------------------------- checksums

def test_checksum_parsing():
    digest = "ab" * 32
    assert Checksum.parse(f"sha256:{digest.upper()}") == Checksum("sha256", digest)
    assert Checksum.parse(digest) == Checksum("sha256", digest)
    assert Checksum.parse("cd" * 16) == Checksum("md5", "cd" * 16)
    with pytest.raises(ValueError, match="not a sha256"):
        Checksum.parse("sha256:1234")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        Checksum.parse(f"sha1:{'0' * 40}")


def test_streaming_digests_match_hashlib(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 3 * sources.CHUNK_SIZE + 17, np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sources.file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert sources.file_md5(path) == hashlib.md5(data).hexdigest()
    assert sources.file_digests(path) == {"sha256": hashlib.sha256(data).hexdigest(),
                                          "md5": hashlib.md5(data).hexdigest()}


@needs_mnist
def test_mnist_copy_is_canonical_to_the_byte():
    for name, sha256 in MNIST_SHA256.items():
        assert sources.file_sha256(MNIST_DIR / name) == sha256
    copy = sources.resolve_local("mnist", MNIST_DIR)
    assert copy.canonical and copy.sha256 == MNIST_SHA256
    assert copy.folder == MNIST_DIR


@needs_mnist
def test_corrupted_file_fails_its_checksum(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray((MNIST_DIR / path.name).read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    known = sources.SOURCES["mnist"].files[3]
    with pytest.raises(ChecksumError) as caught:
        sources.verify_file(path, known.checksums)
    message = str(caught.value)
    assert str(path) in message
    assert f"sha256:{MNIST_SHA256[path.name]}" in message  # expected
    assert f"sha256:{hashlib.sha256(bytes(data)).hexdigest()}" in message  # actual
    assert caught.value.actual["sha256"] == hashlib.sha256(bytes(data)).hexdigest()


@needs_mnist
def test_truncated_gz_fails_its_checksum_cleanly(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes((MNIST_DIR / path.name).read_bytes()[:2000])
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        sources.verify_file(path, sources.SOURCES["mnist"].files[3].checksums)


@needs_mnist
def test_decompressed_copy_is_recognised_by_its_content(tmp_path):
    """torchvision keeps MNIST decompressed: the content checksum identifies it."""
    for name in MNIST_SHA256:
        os.symlink(MNIST_DIR / name, tmp_path / name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    raw = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw)
    copy = sources.resolve_local("mnist", tmp_path)
    assert copy.canonical and "t10k-labels-idx1-ubyte" in copy.accepted
    assert formats.read_mnist_idx(tmp_path)["y_test"][:3].tolist() == [7, 2, 1]


# --------------------------------------------------------------------------- Fashion-MNIST (Debian)

FASHION_MTIME = {"train": 1504176606, "t10k": 1504176627}  # 2017-08-31 10:50:06 / 10:50:27 UTC


@needs_fashion
def test_debian_fashion_mnist_is_canonical_by_content():
    for known in sources.FASHION_MNIST_FILES:
        path = FASHION_DIR / known.name
        assert sources.match_checksum(path, [c for c in known.checksums if not c.content]) is None
    copy = sources.resolve_local("fashion_mnist", FASHION_DIR)
    assert copy.canonical  # every file matched through its decompressed content
    assert copy.sha256["t10k-labels-idx1-ubyte.gz"] == (
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")  # Debian's own .gz


@needs_fashion
def test_debian_deflate_streams_rebuild_the_published_files():
    """Debian's .gz differ only in the header: with the original header (file name, mtime of
    2017-08-31) the same deflate streams give back the published md5 and sha256, which ties
    the decompressed-content checksums to the canonical files."""
    for known in sources.FASHION_MNIST_FILES:
        debian = (FASHION_DIR / known.name).read_bytes()
        assert debian[3] == 0  # no file name in Debian's header
        inner = known.name.removesuffix(".gz")
        header = (b"\x1f\x8b\x08\x08" + struct.pack("<I", FASHION_MTIME[inner.split("-")[0]])
                  + bytes([0, 3]) + inner.encode() + b"\x00")
        rebuilt = header + debian[10:]
        assert len(rebuilt) == known.size
        published = {c.algorithm: c.hexdigest for c in known.checksums if not c.content}
        assert hashlib.md5(rebuilt).hexdigest() == published["md5"]
        assert hashlib.sha256(rebuilt).hexdigest() == published["sha256"]


# --------------------------------------------------------------------------- CIFAR-10 local copy

@needs_cifar
def test_noncanonical_cifar_copy_is_refused_by_default():
    with pytest.raises(ChecksumError) as caught:
        sources.resolve_local("cifar10", CIFAR_DIR)
    message = str(caught.value)
    assert "data_batch_1" in message and "md5:c99cafc152244af753f735de768cd75f" in message
    assert CIFAR_LOCAL_SHA256["data_batch_1"] in message and "verify: false" in message


@needs_cifar
def test_noncanonical_cifar_copy_accepted_with_warnings_when_verify_false(caplog):
    with caplog.at_level(logging.WARNING, logger="advfit"):
        copy = sources.resolve_local("cifar10", SHARED, verify=False)  # the parent works too
    assert copy.folder == CIFAR_DIR and not copy.canonical
    assert copy.accepted["batches.meta"] == "canonical"  # byte-identical to the tarball's
    assert {n for n, why in copy.accepted.items() if why == "verify false"} == set(CIFAR_LOCAL_SHA256)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    assert all("is not the canonical file" in w and "verify is false" in w for w in warnings)
    assert copy.sha256 == {**CIFAR_LOCAL_SHA256, "batches.meta":
                           "f962466ef690d46b226450fb9aadc74ba4bc64a76aa526b5827fe4bc5c7125cb"}


@needs_cifar
def test_noncanonical_cifar_copy_accepted_with_the_users_sha256(caplog):
    with caplog.at_level(logging.WARNING, logger="advfit"):
        copy = sources.resolve_local("cifar10", CIFAR_DIR, sha256=CIFAR_LOCAL_SHA256)
    assert copy.accepted["test_batch"] == "sha256 given in the configuration"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6 and "sha256 matches the one given" in warnings[0]


@needs_cifar
def test_users_sha256_must_match_even_without_verification():
    wrong = {**CIFAR_LOCAL_SHA256, "data_batch_1": "0" * 64}
    with pytest.raises(ChecksumError, match=r"data_batch_1: checksum mismatch: expected sha256:0{64}"):
        sources.resolve_local("cifar10", CIFAR_DIR, verify=False, sha256=wrong)
    with pytest.raises(ValueError, match=r"sha256 given for unknown file\(s\) \['data_batch_9'\]"):
        sources.resolve_local("cifar10", CIFAR_DIR, sha256={"data_batch_9": "0" * 64})


def test_local_copy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sources.resolve_local("cifar10", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="lacks data_batch_1, .* test_batch, batches.meta"):
        sources.resolve_local("cifar10", tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="extract cifar-10-python.tar.gz first"):
        sources.resolve_local("cifar10", tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(ValueError, match="no canonical files for dataset 'npz'"):
        sources.resolve_local("npz", tmp_path)


# --------------------------------------------------------------------------- downloads from 127.0.0.1

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the fixture's folder; /short announces more bytes than it sends."""

    def do_GET(self):
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 500)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real HTTP server on 127.0.0.1, an ephemeral port, in a thread; yields (base URL, folder)."""
    folder = tmp_path_factory.mktemp("served")
    handler = lambda *a, **k: _Handler(*a, directory=str(folder), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    # A CI proxy must not intercept the loopback server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def payload(server):
    _, folder = server
    data = np.random.default_rng(1).integers(0, 256, 2_500_000, np.uint8).tobytes()
    (folder / "payload.bin").write_bytes(data)
    return data


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on exit: nothing listens there


def test_download_streams_verifies_and_reports_progress(server, payload, tmp_path):
    url, _ = server
    stream = io.StringIO()
    dest = sources.download(f"{url}/payload.bin", tmp_path / "data" / "payload.bin",
                            f"sha256:{hashlib.sha256(payload).hexdigest()}", progress=stream)
    assert dest.read_bytes() == payload
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"downloading payload.bin from {url}/payload.bin (2.5 MB)"
    assert lines[-1] == "payload.bin: 2500000 bytes, checksum ok"
    # one line per 1 MiB chunk read that crosses a 10 % step, ending at the whole file
    percents = [int(line.split("(")[1].split("%")[0]) for line in lines[1:-1]]
    assert len(percents) >= 2 and percents == sorted(set(percents)) and percents[-1] == 100
    assert all(line.startswith("payload.bin: ") and " of 2.5 MB " in line for line in lines[1:-1])
    assert sorted(p.name for p in dest.parent.iterdir()) == ["payload.bin"]


def test_download_progress_goes_to_a_logger(server, payload, tmp_path, caplog):
    url, _ = server
    with caplog.at_level(logging.INFO, logger="advfit"):
        sources.download(f"{url}/payload.bin", tmp_path / "p.bin",
                         Checksum("md5", hashlib.md5(payload).hexdigest()))
    assert any("100%" in r.getMessage() for r in caplog.records)


def test_checksum_mismatch_during_download_leaves_nothing(server, payload, tmp_path):
    url, _ = server
    with pytest.raises(ChecksumError, match=r"payload\.bin: checksum mismatch: expected sha256:0{64}.*"
                                            r"downloaded from .*nothing was kept"):
        sources.download(f"{url}/payload.bin", tmp_path / "payload.bin", "0" * 64)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary file


@pytest.mark.parametrize("where, reason", [
    ("closed", "Connection refused"),
    ("missing", "HTTP 404"),
    ("short", "connection closed early, 500 bytes missing"),
])
def test_failed_download_says_how_to_supply_the_file(server, tmp_path, where, reason):
    url, _ = server
    source_url = {"closed": f"http://127.0.0.1:{_closed_port()}/x.tar.gz",
                  "missing": f"{url}/absent.tar.gz", "short": f"{url}/short"}[where]
    dest = tmp_path / "x.tar.gz"
    with pytest.raises(DownloadError) as caught:
        sources.download(source_url, dest, "ab" * 32, timeout=10)
    message = str(caught.value)
    assert f"could not download x.tar.gz from {source_url}" in message and reason in message
    assert f"download it by hand from {source_url} and put it at {dest}" in message
    assert f"sha256:{'ab' * 32}" in message
    assert list(tmp_path.iterdir()) == []


def test_mirrors_are_tried_in_order(server, payload, tmp_path, caplog):
    url, _ = server
    known = KnownFile("payload.bin", (Checksum("sha256", hashlib.sha256(payload).hexdigest()),))
    item = Download(known, (f"http://127.0.0.1:{_closed_port()}/payload.bin", f"{url}/payload.bin"))
    with caplog.at_level(logging.WARNING, logger="advfit"):
        sources.download_any(item, tmp_path / "payload.bin")
    assert (tmp_path / "payload.bin").read_bytes() == payload
    assert "could not download payload.bin" in caplog.records[0].getMessage()


# --------------------------------------------------------------------------- tarballs

def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def test_extract_selected_members_atomically(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {"top/keep.bin": b"k", "top/sub/also.bin": b"a",
                                           "top/skip.bin": b"s"})
    out = tmp_path / "out"
    tops = sources.extract_tarball(archive, out, ["top/keep.bin", "top/sub/also.bin"])
    assert tops == [out / "top"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "top", "top/keep.bin", "top/sub", "top/sub/also.bin"]
    with pytest.raises(FileExistsError, match="already exists"):
        sources.extract_tarball(archive, out)
    assert sorted(p.name for p in out.iterdir()) == ["top"]  # no staging folder left


@pytest.mark.parametrize("members, links, message", [
    ({"top/../../escape.txt": b"x"}, None, "refusing member 'top/../../escape.txt'"),
    ({"/tmp/absolute.txt": b"x"}, None, "refusing member '/tmp/absolute.txt'"),
    ({"top/a.txt": b"x"}, {"top/link": "/etc/passwd"}, "refusing member 'top/link': only regular files"),
])
def test_unsafe_archives_are_refused(tmp_path, members, links, message):
    archive = _tar(tmp_path / "evil.tar.gz", members, links)
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message):
        sources.extract_tarball(archive, out)
    assert list(out.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_truncated_archive_and_missing_member(tmp_path):
    data = np.random.default_rng(2).integers(0, 256, 200_000, np.uint8).tobytes()
    archive = _tar(tmp_path / "a.tar.gz", {"top/big.bin": data})
    with pytest.raises(ArchiveError, match=r"a\.tar\.gz: missing member\(s\) top/none"):
        sources.extract_tarball(archive, tmp_path / "out", ["top/none"])
    archive.write_bytes(archive.read_bytes()[:100_000])
    with pytest.raises(ArchiveError, match="truncated or corrupt archive"):
        sources.extract_tarball(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------- fetch, end to end

def _tiny_stl_source(server, tmp_path) -> tuple[DatasetSource, dict]:
    """An STL-10-layout dataset published as a tarball on the local server."""
    url, folder = server
    rng = np.random.default_rng(3)
    members = {"train_X.bin": rng.integers(0, 256, 4 * 27648, np.uint8).tobytes(),
               "train_y.bin": bytes([1, 2, 10, 2]),
               "test_X.bin": rng.integers(0, 256, 2 * 27648, np.uint8).tobytes(),
               "test_y.bin": bytes([3, 10])}
    archive = _tar(folder / "tiny_stl.tar.gz",
                   {f"tiny_stl/{n}": d for n, d in members.items()} | {"tiny_stl/unlabeled_X.bin": b"u"})
    files = tuple(KnownFile(n, (Checksum("md5", hashlib.md5(d).hexdigest()),))
                  for n, d in members.items())
    tarball = KnownFile(archive.name, (Checksum("sha256", sources.file_sha256(archive)),),
                        archive.stat().st_size)
    src = DatasetSource(name="tiny_stl", folder="tiny_stl", reader=formats.read_stl10_binary,
                        files=files, downloads=(Download(tarball, (f"{url}/{archive.name}",)),),
                        origin=url, archive_members=tuple(f"tiny_stl/{n}" for n in members))
    return src, members


def test_fetch_downloads_extracts_verifies_and_reuses(server, tmp_path):
    src, _ = _tiny_stl_source(server, tmp_path)
    stream = io.StringIO()
    copy = sources.fetch_source(src, tmp_path / "cache", progress=stream)
    assert copy.canonical and copy.folder == tmp_path / "cache" / "tiny_stl"
    assert "checksum ok" in stream.getvalue()
    assert sorted(p.name for p in copy.folder.iterdir()) == sorted(f.name for f in src.files)
    arrays = src.reader(copy.folder)
    assert arrays["y_train"].tolist() == [0, 1, 9, 1] and arrays["x_test"].shape == (2, 96, 96, 3)
    # a second fetch verifies what is there and downloads nothing
    again = io.StringIO()
    assert sources.fetch_source(src, tmp_path / "cache", progress=again).canonical
    assert again.getvalue() == ""


def test_fetch_uses_a_manual_copy_and_refuses_a_bad_one(server, tmp_path):
    src, _ = _tiny_stl_source(server, tmp_path)
    url, folder = server
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(folder / "tiny_stl.tar.gz", cache / "tiny_stl.tar.gz")  # "put it at ..."
    stream = io.StringIO()
    assert sources.fetch_source(src, cache, progress=stream).canonical
    assert "downloading" not in stream.getvalue()
    shutil.rmtree(cache / "tiny_stl")
    (cache / "tiny_stl.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ChecksumError, match=r"tiny_stl\.tar\.gz: checksum mismatch.*Remove .* to "
                                            r"download it again"):
        sources.fetch_source(src, cache)


def test_builtin_sources_are_consistent():
    assert sorted(sources.SOURCES) == ["cifar10", "fashion_mnist", "mnist", "stl10"]
    for src in sources.SOURCES.values():
        for item in src.downloads:
            assert item.urls and all(u.startswith(("http://", "https://")) for u in item.urls)
            assert {c.algorithm for c in item.file.checksums} >= {"md5", "sha256"}
        if src.is_archive:
            assert {m.split("/", 1)[1] for m in src.archive_members} >= {f.name for f in src.files}
    assert sources.SOURCES["cifar10"].downloads[0].file.checksums[0] == Checksum(
        "md5", "c58f30108f718f92721af3b95e74349a")
    assert sources.SOURCES["stl10"].downloads[0].file.checksums[0] == Checksum(
        "md5", "91f7769df0f17e558f3565bffb0c7dfb")


@needs_mnist
def test_fetch_of_mnist_from_a_manual_copy_needs_no_network(tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in MNIST_SHA256:
        os.symlink(MNIST_DIR / name, tmp_path / "mnist" / name)
    copy = sources.fetch("mnist", tmp_path)
    assert copy.canonical and copy.folder == tmp_path / "mnist"
