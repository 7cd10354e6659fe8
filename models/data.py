"""Datasets for training and evaluating the quantized networks, loaded without any network access.

Two datasets work out of the box so every stage runs offline and in CI: `digits` (scikit-learn's
bundled 8x8 digits) for classification and `photos` (scikit-image's bundled photographs) for
super-resolution. `mnist1d` is generated on the fly by the mnist1d package. The larger datasets
(`mnist`, `cifar10`, `bsd300`) are read from a folder the user already has (`--data-dir`), in
their standard distribution formats; nothing is ever downloaded. Every file is validated
(magic numbers, sizes, counts) and a broken or missing one raises `DatasetError` naming the
dataset, the folder and the file, because a silently truncated dataset shows up much later as
an accuracy puzzle.

Classification: inputs are float32 in [0, 1] (signed, zero-centred for `mnist1d`), labels int64.
Super-resolution (ESPCN-style, as brevitas' example): the Y channel of YCbCr
(`skimage.color.rgb2ycbcr / 255`, so Y lies in [16/255, 235/255]); HR = a `crop` x `crop`
patch, LR = HR downscaled by `upscale` with an anti-aliased bicubic resize; x = LR, y = HR.
"""
from __future__ import annotations

import gzip
import pickle
import random
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from a2qflow.errors import A2qflowError

from .catalog import DATASET_NAMES

__all__ = ["DATASETS", "Dataset", "DatasetError", "EXPECTED_FILES", "NATIVE_INPUTS", "load_dataset", "read_idx",
           "sr_pair", "stratified_split", "to_y"]

DATASETS: tuple[str, ...] = DATASET_NAMES

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

#: What each folder-based dataset expects under `--data-dir` (used in error messages and help).
EXPECTED_FILES: dict[str, str] = {
    "mnist": ", ".join(f"{f}[.gz]" for f in _MNIST_FILES),
    "cifar10": ", ".join(_CIFAR_FILES) + " (the CIFAR-10 python batches, or their parent "
               "folder holding cifar-10-batches-py/)",
    "bsd300": "images/train/*.jpg and images/test/*.jpg (or BSDS300/images/...)",
}

# Fixed split seed for `digits`: the test set must not change with the training seed.
_DIGITS_SPLIT_SEED = 0
# Random training crops per image for the super-resolution datasets.
_BSD300_TRAIN_CROPS = 8
_PHOTOS_TRAIN_CROPS = 64
# Test crops per held-out photo (a fixed grid, independent of the seed).
_PHOTOS_TEST_GRID = 4  # 4 x 4 = up to 16 crops per image
# skimage.data photos that ship inside the wheel (no pooch, no network); `cat` is `chelsea`.
_PHOTOS_TRAIN = ("astronaut", "camera", "coffee", "rocket", "hubble_deep_field",
                 "motorcycle", "moon", "brick", "grass", "gravel", "text")
_PHOTOS_TEST = ("chelsea", "coins", "page")


# The integers each dataset's inputs come from (x = code * scale), where they do: an
# accelerator can take these codes and absorb the scale into its first thresholds, as FINN's
# examples take UINT8 pixels. mnist1d (signed floats) and the super-resolution sets (the Y
# channel of a colour conversion) have none, and keep float inputs.
NATIVE_INPUTS: dict[str, dict] = {
    "digits": {"dtype": "UINT5", "scale": 1 / 16},     # scikit-learn's 8x8 digits: 0..16
    "digits28": {"dtype": "UINT5", "scale": 1 / 16},   # the same pixels, repeated to 28x28
    "mnist": {"dtype": "UINT8", "scale": 1 / 255},
    "cifar10": {"dtype": "UINT8", "scale": 1 / 255},
}


class DatasetError(A2qflowError, ValueError):
    """A dataset cannot be loaded; the message names the dataset, folder and file at fault."""


@dataclass(frozen=True)
class Dataset:
    """A whole dataset in memory as tensors (all datasets here are small enough)."""

    name: str
    task: str  # "classification" or "superres"
    x_train: torch.Tensor
    y_train: torch.Tensor  # int64 labels, or HR images for superres
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None
    input_signed: bool  # inputs can be negative -> the first layer needs a signed input quantizer
    upscale: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape, e.g. (1, 8, 8): what the network and exporter are built for."""
        return tuple(self.x_train.shape[1:])


def load_dataset(name: str, root: str | Path | None = None, *, limit: int | None = None,
                 upscale: int = 3, crop: int = 48, seed: int = 0) -> Dataset:
    """Load dataset `name` into memory, offline.

    `root` is the folder for `mnist`, `cifar10` and `bsd300` (ignored by the others). `limit`
    keeps the first `limit` train and test samples (deterministic; for quick runs). `upscale` and
    `crop` (HR side, a multiple of `upscale`) shape the super-resolution datasets; `seed` picks
    their random training crops. Classification splits never depend on `seed`.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"{name}: limit must be a positive integer, got {limit!r}")
    if name == "digits":
        ds = _load_digits()
    elif name == "digits28":
        ds = _load_digits(side=28)
    elif name == "mnist1d":
        ds = _load_mnist1d()
    elif name == "mnist":
        ds = _load_mnist(_require_root(name, root))
    elif name == "cifar10":
        ds = _load_cifar10(_require_root(name, root))
    else:
        _check_sr_args(name, upscale, crop)
        if name == "bsd300":
            return _load_bsd300(_require_root(name, root), upscale, crop, seed, limit)
        return _load_photos(upscale, crop, seed, limit)
    return _limited(ds, limit)


# ----------------------------------------------------------------------------- helpers

def _limited(ds: Dataset, limit: int | None) -> Dataset:
    if limit is None:
        return ds
    return Dataset(ds.name, ds.task, ds.x_train[:limit], ds.y_train[:limit], ds.x_test[:limit],
                   ds.y_test[:limit], ds.num_classes, ds.input_signed, ds.upscale)


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DatasetError(f"{name}: needs --data-dir pointing to a folder with "
                           f"{EXPECTED_FILES[name]}; nothing is downloaded")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name}: data folder {path} does not exist or is not a folder "
                           f"(expected {EXPECTED_FILES[name]})")
    return path


def _classification(name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
                    y_te: np.ndarray, num_classes: int, signed: bool = False) -> Dataset:
    def t(a: np.ndarray, dtype: type) -> torch.Tensor:  # own, writable, contiguous memory
        return torch.from_numpy(np.require(a, dtype, ["C", "W", "O"]))

    return Dataset(name, "classification", t(x_tr, np.float32), t(y_tr, np.int64),
                   t(x_te, np.float32), t(y_te, np.int64), num_classes, signed)


def _unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]; a correctly rounded p/255, so values round-trip."""
    out = pixels.astype(np.float32)
    out /= np.float32(255)  # in place: CIFAR-10 as float32 is already 600 MB
    return out


def _check_labels(name: str, where: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{name}: {where}: labels must lie in 0..{num_classes - 1}, "
                           f"found {int(labels.min())}..{int(labels.max())}")


# ----------------------------------------------------------------------------- digits, mnist1d

def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as (images 0..16, labels).

    Reads the CSV that `sklearn.datasets.load_digits()` reads, located without importing
    scikit-learn (whose import pulls in pandas and scipy.stats and costs seconds); falls back to
    `load_digits()` if the file has moved.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    if csv is not None and csv.is_file():
        with gzip.open(csv, "rt") as f:
            data = np.loadtxt(f, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices holding `test_fraction` of every class out, both shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _load_digits(side: int = 8) -> Dataset:
    """`digits`, or with `side` 28 `digits28`: the same images and split, nearest-neighbour
    resampled to MNIST's 28x28 (pixels stay the integers 0..16), so a TFC sees MNIST's 784
    inputs, where a datatype-bound accumulator is far wider than a trained P, offline."""
    images, labels = _digits_arrays()
    if side != 8:
        rows = np.arange(side) * 8 // side
        images = images[:, rows][:, :, rows]
    x = (images / 16.0).astype(np.float32)[:, None]  # (N, 1, side, side) in [0, 1]
    tr, te = stratified_split(labels, 0.2, _DIGITS_SPLIT_SEED)
    return _classification("digits" if side == 8 else f"digits{side}", x[tr], labels[tr], x[te], labels[te], 10)


@lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    """Generate MNIST-1D with the package's default (published) arguments, seed 42.

    `make_dataset` generates locally; `get_dataset` would try a download, so it is not used.
    It reseeds the global `random`/`np.random` generators, so their state is restored after.
    Generation takes a few seconds, hence the in-process cache.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    arrays = (d["x"][:, None], d["y"], d["x_test"][:, None], d["y_test"])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _load_mnist1d() -> Dataset:
    x_tr, y_tr, x_te, y_te = _mnist1d_arrays()
    return _classification("mnist1d", x_tr, y_tr, x_te, y_te, 10, signed=True)


# ----------------------------------------------------------------------------- mnist (IDX)

def _find_file(name: str, folder: Path, fname: str, allow_gz: bool) -> Path:
    for cand in (folder / fname, folder / (fname + ".gz")) if allow_gz else (folder / fname,):
        if cand.is_file():
            return cand
    raise DatasetError(f"{name}: missing {fname}{'[.gz]' if allow_gz else ''} in {folder} "
                       f"(expected {EXPECTED_FILES[name]})")


def _read_bytes(name: str, path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{name}: cannot read {path}: {e}") from e


def read_idx(path: str | Path, ndim: int, name: str = "mnist") -> np.ndarray:
    """Parse an unsigned-byte IDX file (optionally gzipped), checking magic, dims and size.

    Why by hand: the format is four lines of numpy, and torchvision must not be a dependency.
    """
    path = Path(path)
    raw = _read_bytes(name, path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name}: {path} is truncated: {len(raw)} bytes, shorter than the "
                           f"{header}-byte IDX header")
    magic = int.from_bytes(raw[:4], "big")
    expected = 0x0800 | ndim  # 0x08 = unsigned byte, then the number of dimensions
    if magic != expected:
        raise DatasetError(f"{name}: bad magic 0x{magic:08x} in {path.name} ({path.parent}), "
                           f"expected 0x{expected:08x} (unsigned-byte IDX, {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != size:
        what = "truncated" if len(raw) < size else "has trailing bytes"
        raise DatasetError(f"{name}: {path} {what}: {len(raw)} bytes, but its header "
                           f"(dims {dims}) needs {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_mnist(root: Path) -> Dataset:
    folder = root
    if not any((root / f).is_file() or (root / (f + ".gz")).is_file() for f in _MNIST_FILES):
        alt = root / "MNIST" / "raw"  # the layout other tools leave behind
        if alt.is_dir():
            folder = alt
    arrays = []
    for split in ("train", "t10k"):
        img_path = _find_file("mnist", folder, f"{split}-images-idx3-ubyte", True)
        lbl_path = _find_file("mnist", folder, f"{split}-labels-idx1-ubyte", True)
        images, labels = read_idx(img_path, 3), read_idx(lbl_path, 1)
        if len(images) != len(labels):
            raise DatasetError(f"mnist: image/label count mismatch in {folder}: {img_path.name} "
                               f"has {len(images)} images, {lbl_path.name} {len(labels)} labels")
        _check_labels("mnist", lbl_path, labels, 10)
        arrays.append((images, labels, img_path))
    (x_tr, y_tr, p_tr), (x_te, y_te, p_te) = arrays
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"mnist: image size differs between {p_tr.name} {x_tr.shape[1:]} "
                           f"and {p_te.name} {x_te.shape[1:]} in {folder}")
    return _classification("mnist", _unit(x_tr[:, None]), y_tr, _unit(x_te[:, None]), y_te, 10)


# ----------------------------------------------------------------------------- cifar10

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and plain containers: a data folder must not run code."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core"):  # pickles written by numpy 1.x
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # pickle raises many kinds for a broken file
        raise DatasetError(f"cifar10: {path} is not a readable CIFAR-10 python batch: "
                           f"{type(e).__name__}: {e}") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"cifar10: {path} lacks b'data'/b'labels' (found {keys})")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"cifar10: {path}: b'data' must be uint8 N x 3072, got "
                           f"{data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError(f"cifar10: image/label count mismatch in {path}: {len(data)} images, "
                           f"{labels.size} labels")
    _check_labels("cifar10", path, labels, 10)
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(root: Path) -> Dataset:
    folder = root
    if not (root / "test_batch").is_file() and (root / "cifar-10-batches-py").is_dir():
        folder = root / "cifar-10-batches-py"
    paths = [_find_file("cifar10", folder, f, False) for f in _CIFAR_FILES]
    batches = [_load_cifar_batch(p) for p in paths]
    x_tr = np.concatenate([b[0] for b in batches[:5]])
    y_tr = np.concatenate([b[1] for b in batches[:5]])
    x_te, y_te = batches[5]
    return _classification("cifar10", _unit(x_tr), y_tr, _unit(x_te), y_te, 10)


# ----------------------------------------------------------------------------- super-resolution

def _check_sr_args(name: str, upscale: int, crop: int) -> None:
    if not isinstance(upscale, int) or upscale < 1:
        raise DatasetError(f"{name}: upscale must be a positive integer, got {upscale!r}")
    if not isinstance(crop, int) or crop < upscale or crop % upscale:
        raise DatasetError(f"{name}: crop {crop!r} must be a positive multiple of "
                           f"upscale {upscale}")


def to_y(image: np.ndarray) -> np.ndarray:
    """Luma of an RGB(A)/grey image as float64 in [16/255, 235/255] (rgb2ycbcr's Y / 255)."""
    from skimage.color import gray2rgb, rgb2ycbcr
    from skimage.util import img_as_float

    image = img_as_float(image)
    if image.ndim == 2:
        image = gray2rgb(image)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    return rgb2ycbcr(image)[..., 0] / 255.0


def sr_pair(hr: np.ndarray, upscale: int) -> np.ndarray:
    """LR image for an HR patch: anti-aliased bicubic downscale (clipped to HR's range)."""
    from skimage.transform import resize

    h, w = hr.shape
    return resize(hr, (h // upscale, w // upscale), order=3, anti_aliasing=True)


class _Images:
    """Y-channel images loaded on first use, so `limit` runs skip images they never crop."""

    def __init__(self, name: str, labels: list[str], loader):
        self.name, self.labels, self.loader, self.cache = name, labels, loader, {}

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, i: int, crop: int) -> np.ndarray:
        if i not in self.cache:
            self.cache[i] = self.loader(i)
        y = self.cache[i]
        if min(y.shape) < crop:
            raise DatasetError(f"{self.name}: image {self.labels[i]} is {y.shape[0]}x{y.shape[1]},"
                               f" smaller than the {crop}x{crop} crop")
        return y


def _sr_tensors(images: _Images, boxes: list[tuple[int, int, int]], crop: int,
                upscale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut (image, top, left) boxes and build the (LR, HR) float32 tensors."""
    lr = np.empty((len(boxes), 1, crop // upscale, crop // upscale), np.float32)
    hr = np.empty((len(boxes), 1, crop, crop), np.float32)
    for k, (i, top, left) in enumerate(boxes):
        patch = images.get(i, crop)[top:top + crop, left:left + crop]
        hr[k, 0], lr[k, 0] = patch, sr_pair(patch, upscale)
    return torch.from_numpy(lr), torch.from_numpy(hr)


def _random_boxes(images: _Images, per_image: int, crop: int, seed: int,
                  limit: int | None) -> list[tuple[int, int, int]]:
    """Seeded random crops, ordered round-robin over images so a `limit` still spans images.

    Each box's generator is keyed by (seed, image, round), so a box never depends on `limit`.
    """
    total = len(images) * per_image if limit is None else min(limit, len(images) * per_image)
    boxes = []
    for k in range(total):
        rnd, i = divmod(k, len(images))
        h, w = images.get(i, crop).shape
        rng = np.random.default_rng([seed, i, rnd])
        boxes.append((i, int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))))
    return boxes


def _superres(name: str, train: _Images, test_boxes: list[tuple[int, int, int]], test: _Images,
              per_image: int, upscale: int, crop: int, seed: int, limit: int | None) -> Dataset:
    x_tr, y_tr = _sr_tensors(train, _random_boxes(train, per_image, crop, seed, limit), crop,
                             upscale)
    x_te, y_te = _sr_tensors(test, test_boxes[:limit], crop, upscale)
    return Dataset(name, "superres", x_tr, y_tr, x_te, y_te, None, False, upscale)


def _jpgs(folder: Path, split: str) -> list[Path]:
    d = folder / split
    if not d.is_dir():
        raise DatasetError(f"bsd300: missing folder images/{split} in {folder.parent} "
                           f"(expected {EXPECTED_FILES['bsd300']})")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise DatasetError(f"bsd300: no *.jpg under images/{split} in {folder.parent}")
    return files


def _read_y(path: Path) -> np.ndarray:
    from skimage.io import imread

    try:
        return to_y(imread(path))
    except Exception as e:  # imageio/PIL raise assorted errors for a broken file
        raise DatasetError(f"bsd300: cannot read image {path}: {type(e).__name__}: {e}") from e


def _load_bsd300(root: Path, upscale: int, crop: int, seed: int, limit: int | None) -> Dataset:
    folder = root / "images"
    if not folder.is_dir() and (root / "BSDS300" / "images").is_dir():
        folder = root / "BSDS300" / "images"
    train_files, test_files = _jpgs(folder, "train"), _jpgs(folder, "test")
    train = _Images("bsd300", [str(p) for p in train_files], lambda i: _read_y(train_files[i]))
    test = _Images("bsd300", [str(p) for p in test_files], lambda i: _read_y(test_files[i]))
    boxes = []
    for i in range(len(test_files) if limit is None else min(limit, len(test_files))):
        h, w = test.get(i, crop).shape
        boxes.append((i, (h - crop) // 2, (w - crop) // 2))  # centre crop
    return _superres("bsd300", train, boxes, test, _BSD300_TRAIN_CROPS, upscale, crop, seed,
                     limit)


@lru_cache(maxsize=None)
def _photo_y(label: str) -> np.ndarray:
    """Y channel of one of skimage's bundled photos (cached: conversion is the slow part)."""
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if label == "motorcycle" else \
        getattr(skimage.data, label)()
    y = to_y(image)
    y.setflags(write=False)
    return y


def _grid_boxes(images: _Images, crop: int, n: int) -> list[tuple[int, int, int]]:
    """A fixed n x n grid of crops per image (evenly spaced, seed-independent)."""
    boxes = []
    for i in range(len(images)):
        h, w = images.get(i, crop).shape
        tops = sorted(set(np.linspace(0, h - crop, n).astype(int).tolist()))
        lefts = sorted(set(np.linspace(0, w - crop, n).astype(int).tolist()))
        boxes += [(i, t, l) for t in tops for l in lefts]
    return boxes


def _load_photos(upscale: int, crop: int, seed: int, limit: int | None) -> Dataset:
    train = _Images("photos", list(_PHOTOS_TRAIN), lambda i: _photo_y(_PHOTOS_TRAIN[i]))
    test = _Images("photos", list(_PHOTOS_TEST), lambda i: _photo_y(_PHOTOS_TEST[i]))
    boxes = _grid_boxes(test, crop, _PHOTOS_TEST_GRID)
    return _superres("photos", train, boxes, test, _PHOTOS_TRAIN_CROPS, upscale, crop, seed,
                     limit)
