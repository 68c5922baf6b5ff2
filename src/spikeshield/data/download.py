"""Where dataset files live and how they are fetched: cache directory, official sources, verified atomic downloads."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from spikeshield.validation import unknown_name

CACHE_ENV = "SPIKESHIELD_DATA"
DEFAULT_CACHE = Path("~/.cache/spikeshield")
_CHUNK = 1 << 20


def cache_dir(name: str) -> Path:
    """Return the cache folder of dataset ``name``: ``$SPIKESHIELD_DATA/<name>`` or ``~/.cache/spikeshield/<name>``."""
    root = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser() / name


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, its checksum (32 hex digits: MD5, 64: SHA-256), and whether to untar it."""

    filename: str
    checksum: str
    extract: bool = False


@dataclass(frozen=True)
class Source:
    """Where a dataset's official files come from: mirror base URLs (tried in order), the env variable that
    overrides them, and the files each split needs."""

    base_urls: tuple[str, ...]
    env: str
    files: Mapping[str, tuple[RemoteFile, ...]]


def _idx_files(md5: Mapping[str, str]) -> dict[str, tuple[RemoteFile, ...]]:
    return {
        split: tuple(
            RemoteFile(f"{prefix}-{kind}-ubyte.gz", md5[f"{prefix}-{kind}"]) for kind in ("images-idx3", "labels-idx1")
        )
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


# Official MD5s of the files as their publishers serve them.
SOURCES: dict[str, Source] = {
    "fashion_mnist": Source(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "SPIKESHIELD_FASHION_MNIST_URL",
        _idx_files(
            {
                "train-images-idx3": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1": "bb300cfdad3c16e7a12a480ee83cd310",
            }
        ),
    ),
    "mnist": Source(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        "SPIKESHIELD_MNIST_URL",
        _idx_files(
            {
                "train-images-idx3": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1": "ec29112dd5afa0611ce80d1b7f02629c",
            }
        ),
    ),
    "cifar10": Source(
        ("https://www.cs.toronto.edu/~kriz/",),
        "SPIKESHIELD_CIFAR10_URL",
        dict.fromkeys(
            ("train", "test"), (RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", True),)
        ),
    ),
    "cifar100": Source(
        ("https://www.cs.toronto.edu/~kriz/",),
        "SPIKESHIELD_CIFAR100_URL",
        dict.fromkeys(
            ("train", "test"), (RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", True),)
        ),
    ),
    "svhn": Source(
        ("http://ufldl.stanford.edu/housenumbers/",),
        "SPIKESHIELD_SVHN_URL",
        {
            "train": (RemoteFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d0373"),),
            "test": (RemoteFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),),
        },
    ),
}


def _hasher(checksum: str) -> hashlib._Hash:
    lengths = {32: "md5", 64: "sha256"}
    if len(checksum) not in lengths:
        raise ValueError(f"checksum {checksum!r} must be 32 (MD5) or 64 (SHA-256) hex digits")
    return hashlib.new(lengths[len(checksum)])


def file_checksum(path: Path, algorithm: str = "sha256") -> str:
    """Return the hex digest of a file (``"md5"`` or ``"sha256"``), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download_file(
    url: str, dest: Path, checksum: str | None = None, *, progress: bool = True, timeout: float = 60
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``checksum`` (MD5 or SHA-256 hex) when given.

    The data goes to a temporary file beside ``dest`` that is renamed into place only once complete and verified;
    on any failure it is removed, so ``dest`` is either absent or whole. A mismatch raises ``ValueError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = _hasher(checksum.lower()) if checksum else None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    if h is not None:
                        h.update(chunk)
                    bar.update(len(chunk))
        if h is not None and h.hexdigest() != checksum.lower():
            raise ValueError(
                f"checksum mismatch for {dest.name} downloaded from {url}: expected {h.name} {checksum.lower()}, got "
                f"{h.hexdigest()}. The download was discarded; retry, or check the mirror URL"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        root = dest.resolve()
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or (target != root and root not in target.parents):
                raise ValueError(f"{archive}: refusing to extract unsafe member {member.name!r}; delete the archive")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without tarfile filters; members were checked above
            tar.extractall(dest)


def fetch(
    name: str,
    split: str,
    root: Path | None = None,
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> Path:
    """Download the official files that ``split`` of dataset ``name`` needs into ``root`` (default: the cache).

    Files already present are kept. ``base_url`` (else the source's env variable, else the official mirrors) says
    where to download from; ``checksums`` maps file names to MD5/SHA-256 hex digests that replace the official ones
    (for mirrors or test files). Archives are extracted into ``root``. Returns ``root``.
    """
    if name not in SOURCES:
        raise unknown_name("downloadable dataset", name, SOURCES)
    source = SOURCES[name]
    if split not in source.files:
        raise unknown_name(f"{name} split", split, source.files)
    root = Path(root) if root is not None else cache_dir(name)
    env_url = os.environ.get(source.env)
    bases = (base_url,) if base_url else (env_url,) if env_url else source.base_urls
    for remote in source.files[split]:
        dest = root / remote.filename
        if not dest.exists():
            checksum = (checksums or {}).get(remote.filename, remote.checksum)
            errors = []
            for base in bases:
                url = base.rstrip("/") + "/" + remote.filename
                try:
                    download_file(url, dest, checksum, progress=progress)
                    break
                except (urllib.error.URLError, OSError) as err:
                    errors.append(f"{url}: {err}")
            else:
                raise FileNotFoundError(
                    f"could not download {remote.filename} for {name} ({'; '.join(errors)}). Put the file in {root} "
                    f"yourself, or point {source.env} (or base_url=) at a mirror"
                )
        if remote.extract:
            _safe_extract(dest, root)
    return root
