"""Tests of spikeshield.data: real FashionMNIST, tiny files in every official format, downloads, clear errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import spikeshield.data as sd
from spikeshield.data import loaders

FASHION = sd.DEBIAN_FASHION_MNIST_DIR
needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="Debian package dataset-fashion-mnist not installed"
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache and no mirror overrides, so nothing touches ~/.cache or the network."""
    monkeypatch.setenv("SPIKESHIELD_DATA", str(tmp_path / "cache"))
    for source in sd.SOURCES.values():
        monkeypatch.delenv(source.env, raising=False)


# --- writers for tiny files in the official formats ----------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, data."""
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


def random_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` the way Python 2 cPickle wrote the official CIFAR files (protocol 2, byte strings, numpy's
    legacy ``numpy.core.multiarray._reconstruct``), so the loader is tested against that exact encoding."""
    out = io.BytesIO()

    def string(b: bytes) -> None:
        out.write(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def integer(i: int) -> None:
        out.write(b"J" + struct.pack("<i", i))

    def save(o: object) -> None:
        if isinstance(o, bytes):
            string(o)
        elif isinstance(o, bool):
            out.write(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            integer(o)
        elif isinstance(o, list):
            out.write(b"](")
            for item in o:
                save(item)
            out.write(b"e")
        elif isinstance(o, dict):
            out.write(b"}(")
            for k, v in o.items():
                save(k)
                save(v)
            out.write(b"u")
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.write(b"\x85")  # TUPLE1: shape (0,)
            string(b"b")
            out.write(b"\x87R(")  # TUPLE3, REDUCE, MARK for the state tuple
            integer(1)
            out.write(b"(")
            for d in o.shape:
                integer(d)
            out.write(b"tcnumpy\ndtype\n")
            string(b"u1")
            integer(0)
            integer(1)
            out.write(b"\x87R(")
            integer(3)
            string(b"|")
            out.write(b"NNN")
            integer(-1)
            integer(-1)
            integer(0)
            out.write(b"tb")  # dtype state, BUILD
            save(False)
            string(o.tobytes())
            out.write(b"tb")  # array state, BUILD
        else:
            raise TypeError(type(o))

    out.write(b"\x80\x02")
    save(obj)
    out.write(b".")
    return out.getvalue()


def cifar_batch(n: int, seed: int, label_key: bytes, num_classes: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch 1 of 5",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar10(folder: Path) -> dict[str, dict]:
    batches = {f"data_batch_{i}": cifar_batch(3, i, b"labels", 10) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(4, 9, b"labels", 10)
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(py2_pickle(batch))
    return batches


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- real FashionMNIST -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_train() -> sd.ImageDataset:
    return sd.load_dataset("fashion_mnist", "train", download=False)


@needs_fashion
def test_fashion_mnist_from_debian_package(fashion_train):
    test = sd.load_dataset("fashion-mnist", "test", download=False)
    for ds, n in ((fashion_train, 60000), (test, 10000)):
        assert len(ds) == n and ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
        assert torch.bincount(ds.labels).tolist() == [n // 10] * 10
        assert ds.info == sd.dataset_info("fashion_mnist") and ds.name == "fashion_mnist"
    assert int(fashion_train.images.min()) == 0 and int(fashion_train.images.max()) == 255
    assert fashion_train.classes[0] == "T-shirt/top" and fashion_train.classes[9] == "Ankle boot"
    x, y = fashion_train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y == 9  # the first training image of FashionMNIST is an ankle boot
    xb, yb = next(sd.batches(fashion_train, 256))
    assert xb.shape == (256, 1, 28, 28) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert 0 <= xb.min() and xb.max() <= 1
    assert torch.equal(xb[0], x) and torch.equal(yb, fashion_train.labels[:256])


@needs_fashion
def test_fashion_shuffling_is_deterministic_and_local(fashion_train):
    rng_state = torch.get_rng_state()
    a = [y for _, y in sd.batches(fashion_train, 1000, shuffle=True, seed=3, epoch=1)]
    b = [y for _, y in sd.batches(fashion_train, 1000, shuffle=True, seed=3, epoch=1)]
    c = [y for _, y in sd.batches(fashion_train, 1000, shuffle=True, seed=3, epoch=2)]
    assert torch.equal(torch.get_rng_state(), rng_state), "batches() must not touch the global RNG"
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    order = sd.epoch_indices(len(fashion_train), True, 3, 1)
    assert torch.equal(torch.cat(a), fashion_train.labels[order])
    assert torch.equal(torch.sort(order).values, torch.arange(60000))
    assert not torch.equal(order, sd.epoch_indices(60000, True, 4, 1))
    assert torch.equal(sd.epoch_indices(5, False, 3, 1), torch.arange(5))


@needs_fashion
def test_fashion_augment_keeps_shape_range_and_order(fashion_train):
    plain = list(sd.batches(fashion_train, 500, shuffle=True, seed=1, epoch=0, drop_last=True))[:4]
    aug = list(sd.batches(fashion_train, 500, shuffle=True, augment=True, seed=1, epoch=0, drop_last=True))[:4]
    again = list(sd.batches(fashion_train, 500, shuffle=True, augment=True, seed=1, epoch=0, drop_last=True))[:4]
    for (x, y), (xa, ya), (xb, _) in zip(plain, aug, again, strict=True):
        assert xa.shape == x.shape and xa.dtype == torch.float32 and 0 <= xa.min() and xa.max() <= 1
        assert torch.equal(ya, y), "augmentation must not change the sample order"
        assert torch.equal(xa, xb), "augmentation must be reproducible from (seed, epoch)"
        assert not torch.equal(xa, x)
    assert sd.default_augment(fashion_train.info) == sd.Augment(pad=2, flip=False)


# --- batching ----------------------------------------------------------------------------------------------------


def tiny_dataset(n: int = 10, size: int = 8) -> sd.ImageDataset:
    info = sd.DatasetInfo("toy", 1, size, 3, (0.5,), (0.5,))
    images = torch.arange(n * size * size, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(n, 1, size, size)
    return sd.ImageDataset(images, torch.arange(n) % 3, info)


def test_num_batches_and_drop_last():
    ds = tiny_dataset(10)
    assert [len(y) for _, y in sd.batches(ds, 4)] == [4, 4, 2] and sd.num_batches(ds, 4) == 3
    assert [len(y) for _, y in sd.batches(ds, 4, drop_last=True)] == [4, 4] and sd.num_batches(ds, 4, True) == 2
    assert sd.num_batches(12, 4, drop_last=True) == 3
    with pytest.raises(ValueError, match="batch_size"):
        next(sd.batches(ds, 0))


def test_random_crop_is_a_shift_of_the_padded_image():
    x = torch.randint(1, 256, (16, 2, 6, 6), dtype=torch.uint8)
    out = sd.augment_batch(x, sd.Augment(pad=2, flip=False), torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(x)):
        crops = {(dy, dx): padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)}
        matches = [offset for offset, crop in crops.items() if torch.equal(out[i], crop)]
        assert matches, f"sample {i} is not a crop of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 3


def test_flip_flips_about_half():
    x = torch.rand(64, 3, 4, 4)
    out = sd.augment_batch(x, sd.Augment(pad=0, flip=True), torch.Generator().manual_seed(0))
    same = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    assert all(s or f for s, f in zip(same, flipped, strict=True))
    assert 10 < sum(flipped) < 54


def test_dataset_validation_and_subset():
    ds = tiny_dataset(6)
    sub = ds.subset([4, 1])
    assert torch.equal(sub.images, ds.images[[4, 1]]) and sub.labels.tolist() == [1, 1]
    assert ds[-1][1] == ds[5][1]
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        sd.ImageDataset(ds.images, torch.full((6,), 3), ds.info)
    with pytest.raises(ValueError, match="uint8"):
        sd.ImageDataset(ds.images.float(), ds.labels, ds.info)


# --- tiny files in the official formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    train, test = random_mnist(7, 0), random_mnist(3, 1)
    write_idx_split(tmp_path, "train", *train, gz=gz)
    write_idx_split(tmp_path, "t10k", *test, gz=gz)
    for split, (images, labels) in (("train", train), ("test", test)):
        ds = sd.load_dataset("mnist", split, data_dir=tmp_path)
        assert ds.images.shape == (len(labels), 1, 28, 28) and ds.split == split
        assert np.array_equal(ds.images[:, 0].numpy(), images) and ds.labels.tolist() == labels.tolist()
    assert ds.classes == tuple("0123456789")


def test_cifar10_python_batches(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    train = sd.load_dataset("cifar10", "train", data_dir=tmp_path)
    test = sd.load_dataset("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py")
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert train.labels.tolist() == labels and test.labels.tolist() == batches["test_batch"][b"labels"]
    # Row layout: 1024 red values (row-major 32x32), then green, then blue.
    assert np.array_equal(train.images.reshape(15, -1).numpy(), data)
    assert train.images[2, 1, 0, 5] == data[2, 1024 + 5] and train.images[0, 2, 31, 31] == data[0, 3071]
    assert train.classes[0] == "airplane"


def test_cifar100_python_files_modern_pickle(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batch = cifar_batch(5, 0, b"fine_labels", 100)
    batch[b"coarse_labels"] = [0] * 5
    for name in ("train", "test"):
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))  # re-saved files from Python 3 also load
    names = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(py2_pickle({b"fine_label_names": names, b"coarse_label_names": names[:20]}))
    ds = sd.load_dataset("cifar100", "test", data_dir=tmp_path)
    assert ds.images.shape == (5, 3, 32, 32) and ds.labels.tolist() == batch[b"fine_labels"]
    assert ds.info.num_classes == 100 and ds.classes[7] == "class7"


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9], [5]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    ds = sd.load_dataset("svhn", "train", data_dir=tmp_path)
    assert ds.images.shape == (6, 3, 32, 32) and ds.labels.tolist() == [0, 1, 2, 0, 9, 5]
    assert ds.images[4, 2, 3, 7] == x[3, 7, 2, 4]
    assert sd.default_augment(ds.info) == sd.Augment(pad=4, flip=False)


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_is_lazy_and_batches(tmp_path):
    write_png(tmp_path / "dog" / "a.png", (255, 0, 0))
    write_png(tmp_path / "cat" / "b.png", (0, 255, 0))
    write_png(tmp_path / "cat" / "sub" / "c.PNG", (0, 0, 255))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = sd.load_image_folder(tmp_path)
    assert ds.is_lazy and ds.images is None and len(ds) == 3
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [0, 0, 1]
    assert ds.info.channels == 3 and ds.info.size == 8 and ds.info.num_classes == 2
    x, y = ds[2]
    assert y == 1 and x.shape == (3, 8, 8) and x[0].eq(1).all() and x[1:].eq(0).all()
    xs = [x for x, _ in sd.batches(ds, 2, shuffle=True, augment=True, seed=5)]
    assert [tuple(x.shape) for x in xs] == [(2, 3, 8, 8), (1, 3, 8, 8)]
    assert all(0 <= x.min() and x.max() <= 1 for x in xs)
    write_png(tmp_path / "dog" / "big.png", (9, 9, 9), size=(12, 10))
    with pytest.raises(ValueError, match="pass size="):
        sd.load_image_folder(tmp_path)[3]
    resized = sd.load_image_folder(tmp_path, size=6)
    assert resized[3][0].shape == (3, 6, 6) and torch.allclose(resized[3][0], torch.full((3, 6, 6), 9 / 255))


def test_tiny_imagenet_layouts(tmp_path):
    for i, wnid in enumerate(("n01", "n02")):
        write_png(tmp_path / "train" / wnid / "images" / f"{wnid}_0.JPEG.png", (i * 100, 0, 0), (64, 64))
    write_png(tmp_path / "val" / "images" / "val_0.png", (0, 0, 0), (64, 64))
    write_png(tmp_path / "val" / "images" / "val_1.png", (0, 0, 0), (64, 64))
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.png\tn02\t0\t0\t1\t1\nval_1.png\tn01\t0\t0\t1\t1\n")
    train = sd.load_dataset("tiny_imagenet", "train", data_dir=tmp_path)
    val = sd.load_dataset("tiny_imagenet", "test", data_dir=tmp_path)
    assert train.labels.tolist() == [0, 1] and train.classes == ("n01", "n02") and train.info.size == 64
    assert val.labels.tolist() == [1, 0] and val.split == "test" and val[0][0].shape == (3, 64, 64)
    x, y = next(sd.batches(train, 2, augment=True))
    assert x.shape == (2, 3, 64, 64) and y.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
        sd.load_dataset("imagenet", "test", data_dir=tmp_path / "nowhere")


# --- downloads from a local server ---------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1 (free port) from a thread; yields ``(folder, base_url)``."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_verifies_checksums_and_caches(http_server, tmp_path):
    www, url = http_server
    images, labels = random_mnist(5, 2)
    write_idx_split(www, "t10k", images, labels, gz=True)
    sums = {p.name: md5(p) for p in www.iterdir()}
    sums["t10k-labels-idx1-ubyte.gz"] = hashlib.sha256((www / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    ds = sd.load_dataset("mnist", "test", base_url=url, checksums=sums)  # with the progress bar
    assert np.array_equal(ds.images[:, 0].numpy(), images) and ds.labels.tolist() == labels.tolist()
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(sums)
    for p in www.iterdir():
        p.unlink()  # the cached copy is used from now on
    assert len(sd.load_dataset("mnist", "test", download=False)) == 5


def test_download_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    www, url = http_server
    write_idx_split(www, "t10k", *random_mnist(5, 2), gz=True)
    with pytest.raises(ValueError, match=r"checksum mismatch for t10k-images-idx3-ubyte\.gz.*discarded"):
        sd.load_dataset("mnist", "test", base_url=url, progress=False)  # official MD5s do not match the tiny files
    cache = tmp_path / "cache" / "mnist"
    assert list(cache.iterdir()) == [], "no partial or unverified file may stay behind"


def test_fashion_download_via_env_url(http_server, tmp_path, monkeypatch):
    www, url = http_server
    images, labels = random_mnist(4, 3)
    write_idx_split(www, "train", images, labels, gz=True)
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("SPIKESHIELD_FASHION_MNIST_URL", url)
    ds = sd.load_dataset("fashion_mnist", checksums={p.name: md5(p) for p in www.iterdir()}, progress=False)
    assert ds.labels.tolist() == labels.tolist() and (tmp_path / "cache" / "fashion_mnist").is_dir()


def test_cifar_archive_download_and_extract(http_server, tmp_path):
    www, url = http_server
    batches = write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(www / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    checksums = {"cifar-10-python.tar.gz": md5(www / "cifar-10-python.tar.gz")}
    ds = sd.load_dataset("cifar10", "test", base_url=url, checksums=checksums, progress=False)
    assert ds.labels.tolist() == batches["test_batch"][b"labels"]
    assert (tmp_path / "cache" / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_unreachable_mirror_is_a_clear_error(http_server):
    _, url = http_server
    with pytest.raises(FileNotFoundError, match=r"could not download t10k-images-idx3-ubyte\.gz.*404"):
        sd.load_dataset("mnist", "test", base_url=url, progress=False)


# --- clear errors ----------------------------------------------------------------------------------------------------


def test_missing_files_say_how_to_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*not found in .*empty"):
        sd.load_dataset("mnist", data_dir=tmp_path / "empty")
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    with pytest.raises(FileNotFoundError, match=r"dataset-fashion-mnist.*data_dir=.*download=True") as err:
        sd.load_dataset("fashion_mnist", "test", download=False)
    assert "t10k-images-idx3-ubyte" in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"svhn.*test_32x32\.mat"):
        sd.load_dataset("svhn", "test", download=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-10], "truncated"),
        (lambda b: b + b"\0", "trailing bytes"),
        (lambda b: b"\x00\x00\x07\x03" + b[4:], "bad IDX magic"),
        (lambda b: b"\x08\x03" + b[2:], "bad IDX magic"),
        (lambda b: b[:2], "too short"),
        (lambda b: gzip.compress(b)[:-30], "gzip"),
    ],
)
def test_corrupt_idx_is_a_clear_error(tmp_path, damage, message):
    write_idx_split(tmp_path, "train", *random_mnist(3, 0), gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as err:
        sd.load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value) and "download it again" in str(err.value)


def test_mismatched_idx_pair(tmp_path):
    images, labels = random_mnist(3, 0)
    write_idx_split(tmp_path, "train", images, labels[:2], gz=True)
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        sd.load_dataset("mnist", data_dir=tmp_path)


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    write_cifar10(tmp_path)
    pwned = tmp_path / "pwned"
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(pwned)}, protocol=4))
    with pytest.raises(ValueError, match=r"test_batch: unsafe pickle, refused to load global (posix|nt|os)\.system"):
        sd.load_dataset("cifar10", "test", data_dir=tmp_path)
    assert not pwned.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        sd.RestrictedUnpickler(io.BytesIO(b"cbuiltins\neval\n(S'1'\ntR.")).load()


def test_cifar_batch_with_wrong_content(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(py2_pickle({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"test_batch.*expected uint8 data \[N, 3072\]"):
        sd.load_dataset("cifar10", "test", data_dir=tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02}(")
    with pytest.raises(ValueError, match="unreadable pickle"):
        sd.load_dataset("cifar10", "test", data_dir=tmp_path)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar11'.*Did you mean 'cifar10'"):
        sd.load_dataset("cifar11")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        sd.load_dataset("mnist", "val")
