"""Dataset loading: bundled/generated datasets, and folder formats faked in tmp_path."""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from a2qflow.models import data
from a2qflow.models.data import DATASETS, Dataset, DatasetError, load_dataset


# ----------------------------------------------------------------------------- general

def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError) as e:
        load_dataset("imagenet")
    msg = str(e.value)
    assert "imagenet" in msg
    for name in DATASETS:
        assert name in msg
    assert isinstance(e.value, ValueError)


def test_dataset_names():
    assert DATASETS == ("digits", "digits28", "mnist1d", "mnist", "cifar10", "bsd300", "photos")


@pytest.mark.parametrize("limit", [0, -3, 2.5])
def test_bad_limit(limit):
    with pytest.raises(DatasetError, match="limit"):
        load_dataset("digits", limit=limit)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "bsd300"])
def test_folder_dataset_without_root_says_what_is_needed(name):
    with pytest.raises(DatasetError) as e:
        load_dataset(name)
    msg = str(e.value)
    assert name in msg and "--data-dir" in msg
    expected = {"mnist": "train-images-idx3-ubyte", "cifar10": "data_batch_1",
                "bsd300": "images/train"}[name]
    assert expected in msg


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset("mnist", missing)


# ----------------------------------------------------------------------------- digits

def test_digits28_is_digits_resampled_to_mnist_size():
    small, big = load_dataset("digits"), load_dataset("digits28")
    assert big.input_shape == (1, 28, 28) and torch.equal(small.y_test, big.y_test)
    rows = torch.arange(28) * 8 // 28                    # nearest neighbour: each pixel a 3.5-pixel block
    assert torch.equal(big.x_test, small.x_test[:, :, rows][:, :, :, rows])
    codes = big.x_train * 16                             # still the integer codes 0..16 (UINT5 inputs)
    assert torch.equal(codes, codes.round()) and codes.max() == 16

def test_digits_shapes_ranges_split():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.task == "classification"
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and not ds.input_signed
    assert ds.upscale is None
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_test) == len(ds.y_test)
    assert 355 <= len(ds.x_test) <= 365
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    # pixels are k/16
    assert torch.equal(ds.x_test * 16, torch.round(ds.x_test * 16))
    # stratified: every class has ~20% of its samples in the test set
    tr, te = np.bincount(ds.y_train.numpy(), minlength=10), np.bincount(ds.y_test.numpy())
    assert len(te) == 10
    assert np.all(np.abs(te / (tr + te) - 0.2) < 0.01)
    # train and test are disjoint (no sample appears in both)
    train_rows = {r.tobytes() for r in ds.x_train.numpy().reshape(len(ds.x_train), -1)}
    test_rows = [r.tobytes() for r in ds.x_test.numpy().reshape(len(ds.x_test), -1)]
    assert sum(r in train_rows for r in test_rows) < 5  # digits has a few duplicate images


def test_digits_is_deterministic_and_ignores_seed():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=123)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    # golden: the split (fixed split seed 0) must not drift between versions
    assert (len(a.x_train), len(a.x_test)) == (1438, 359)
    assert a.y_train[:12].tolist() == [4, 2, 1, 4, 5, 3, 0, 1, 5, 0, 0, 3]
    assert a.y_test[:12].tolist() == [9, 3, 7, 1, 6, 9, 9, 9, 5, 1, 7, 3]
    small = load_dataset("digits", limit=50)
    assert len(small.x_train) == 50 and len(small.x_test) == 50
    assert torch.equal(small.x_train, a.x_train[:50]) and torch.equal(small.y_test, a.y_test[:50])
    assert len(set(small.y_train.tolist())) >= 8  # a limited run still sees most classes


def test_digits_matches_sklearn_load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    ds = load_dataset("digits")
    x = torch.cat([ds.x_train, ds.x_test]).numpy().reshape(-1, 64) * 16
    y = torch.cat([ds.y_train, ds.y_test]).numpy()
    ours = sorted(zip(map(bytes, x.astype(np.uint8)), y.tolist()))
    ref = sorted(zip(map(bytes, d.data.astype(np.uint8)), d.target.tolist()))
    assert ours == ref


def test_dataset_is_frozen():
    ds = load_dataset("digits", limit=4)
    assert isinstance(ds, Dataset) and ds.x_train.shape == (4, 1, 8, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"


# ----------------------------------------------------------------------------- mnist1d

def test_mnist1d_generated_offline_deterministic(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    data._mnist1d_arrays.cache_clear()
    np.random.seed(123)
    state = np.random.get_state()
    ds = load_dataset("mnist1d")
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2] == state[2]

    assert ds.task == "classification" and ds.input_signed and ds.num_classes == 10
    assert ds.input_shape == (1, 40)
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert float(ds.x_train.min()) < -1 and float(ds.x_train.max()) > 1  # signed, ~unit std
    assert abs(float(ds.x_train.std()) - 1) < 0.05
    # golden values: the generator (mnist1d defaults, seed 42) must not drift
    assert ds.y_train[:10].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]
    assert ds.y_test[:10].tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2]
    np.testing.assert_allclose(ds.x_train[0, 0, :4].numpy(),
                               [-0.332006, -0.47191, -0.778697, -1.009741], atol=1e-5)

    small = load_dataset("mnist1d", limit=7, seed=5)
    assert torch.equal(small.x_train, ds.x_train[:7]) and torch.equal(small.y_test, ds.y_test[:7])
    small.x_train[0] = 1e6  # callers own their tensors: the cache stays intact
    assert float(load_dataset("mnist1d").x_train.max()) < 100


# ----------------------------------------------------------------------------- mnist (IDX)

def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def _write(path, payload: bytes, gz: bool = False):
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_mnist(folder, gz=False, n_train=5, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
              "t10k": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))}
    arrays["train"][0][0, 0, :2] = (0, 255)  # both extremes present
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in arrays.items():
        _write(folder / f"{split}-images-idx3-ubyte", _idx(images), gz)
        _write(folder / f"{split}-labels-idx1-ubyte", _idx(labels), gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path, gz):
    arrays = _fake_mnist(tmp_path, gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and not ds.input_signed
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    for x, y, (images, labels) in ((ds.x_train, ds.y_train, arrays["train"]),
                                   (ds.x_test, ds.y_test, arrays["t10k"])):
        expected = images.astype(np.float32)[:, None] / np.float32(255)
        assert np.array_equal(x.numpy(), expected)  # exact, bit for bit
        assert np.array_equal(np.round(x.numpy() * 255).astype(np.int64), images[:, None])
        assert y.tolist() == labels.tolist() and y.dtype == torch.int64
    assert float(ds.x_train[0, 0, 0, 0]) == 0.0 and float(ds.x_train[0, 0, 0, 1]) == 1.0
    small = load_dataset("mnist", tmp_path, limit=2)
    assert torch.equal(small.x_train, ds.x_train[:2]) and torch.equal(small.y_test, ds.y_test[:2])


def test_mnist_raw_subfolder_layout(tmp_path):
    _fake_mnist(tmp_path / "MNIST" / "raw")
    assert load_dataset("mnist", tmp_path).x_train.shape == (5, 1, 28, 28)


def test_mnist_bad_magic(tmp_path):
    _fake_mnist(tmp_path)
    labels = np.arange(5) % 10
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(labels, magic=0x0803))
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "bad magic 0x00000803" in msg and "train-labels-idx1-ubyte" in msg
    assert "expected 0x00000801" in msg


def test_mnist_truncated_file(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)


def test_mnist_truncated_header(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)


def test_mnist_trailing_bytes(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.*trailing"):
        load_dataset("mnist", tmp_path)


def test_mnist_count_mismatch(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(4, np.uint8)))
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "image/label count mismatch" in msg and "t10k-images-idx3-ubyte" in msg
    assert "3 images" in msg and "4 labels" in msg


def test_mnist_label_out_of_range(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.array([0, 1, 2, 3, 12])))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.*0\.\.9"):
        load_dataset("mnist", tmp_path)


def test_mnist_missing_file(tmp_path):
    _fake_mnist(tmp_path, gz=True)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_mnist_corrupt_gzip(tmp_path):
    _fake_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz"):
        load_dataset("mnist", tmp_path)


# ----------------------------------------------------------------------------- cifar10

def _fake_cifar(folder, n=2, protocol=pickle.DEFAULT_PROTOCOL):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    batches = {}
    for i, fname in enumerate(data._CIFAR_FILES):
        images = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        labels = [(i + k) % 10 for k in range(n)]
        batches[fname] = (images, labels)
        with open(folder / fname, "wb") as f:
            pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": images,
                         b"filenames": [b"x.png"] * n}, f, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_round_trip(tmp_path, protocol):
    batches = _fake_cifar(tmp_path, protocol=protocol)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = train.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    assert np.array_equal(ds.x_train.numpy(), expected)
    # channel-major layout: the first 1024 bytes are the red plane
    assert np.array_equal(np.round(ds.x_test[1, 0].numpy() * 255).reshape(-1),
                          batches["test_batch"][0][1, :1024])
    assert ds.y_train.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.y_test.tolist() == batches["test_batch"][1]


def test_cifar10_parent_folder(tmp_path):
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    assert load_dataset("cifar10", tmp_path, limit=3).x_train.shape == (3, 3, 32, 32)


def test_cifar10_missing_batch(tmp_path):
    _fake_cifar(tmp_path)
    os.remove(tmp_path / "test_batch")
    with pytest.raises(DatasetError, match="missing test_batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_count_mismatch(tmp_path):
    _fake_cifar(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2, 3]}, f)
    with pytest.raises(DatasetError, match=r"count mismatch.*data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_wrong_shape(tmp_path):
    _fake_cifar(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 1000), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(DatasetError, match=r"data_batch_2.*3072"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_garbage_file(tmp_path):
    _fake_cifar(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="data_batch_5"):
        load_dataset("cifar10", tmp_path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    _fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Exploit(str(marker)), b"labels": [0]}, f)
    with pytest.raises(DatasetError, match=r"data_batch_1.*refusing"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- bsd300

def _imsave(path, image):
    import imageio.v3 as iio

    iio.imwrite(path, image, quality=95)


def _fake_bsd(root, n_train=3, n_test=2, size=(60, 70)):
    rng = np.random.default_rng(2)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / "images" / split).mkdir(parents=True)
        for k in range(n):
            image = rng.integers(0, 256, (*size, 3)).astype(np.uint8)
            _imsave(root / "images" / split / f"{k:03d}.jpg", image)


def _expected_y(path):
    from skimage.color import rgb2ycbcr
    from skimage.io import imread

    return rgb2ycbcr(imread(path))[..., 0] / 255


def test_bsd300_center_crop_and_downscale(tmp_path):
    from skimage.transform import resize

    _fake_bsd(tmp_path)
    ds = load_dataset("bsd300", tmp_path, upscale=3, crop=48)
    assert ds.task == "superres" and ds.upscale == 3 and ds.num_classes is None
    assert ds.input_shape == (1, 16, 16)
    assert ds.x_train.shape == (3 * 8, 1, 16, 16) and ds.y_train.shape == (3 * 8, 1, 48, 48)
    assert ds.x_test.shape == (2, 1, 16, 16) and ds.y_test.shape == (2, 1, 48, 48)
    assert ds.y_train.dtype == torch.float32
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert float(t.min()) >= 16 / 255 - 1e-6 and float(t.max()) <= 235 / 255 + 1e-6
    # test HR = centre crop of the Y channel; image is 60x70 -> top 6, left 11
    y = _expected_y(tmp_path / "images" / "test" / "001.jpg")
    hr = y[6:54, 11:59]
    np.testing.assert_allclose(ds.y_test[1, 0].numpy(), hr, atol=1e-6)
    lr = resize(hr, (16, 16), order=3, anti_aliasing=True)
    np.testing.assert_allclose(ds.x_test[1, 0].numpy(), lr, atol=1e-6)
    # every training HR crop is a window of its source image
    for k in range(3):  # round-robin: samples 0..2 come from images 0..2
        src = _expected_y(tmp_path / "images" / "train" / f"{k:03d}.jpg").astype(np.float32)
        hr_k = ds.y_train[k, 0].numpy()
        windows = np.lib.stride_tricks.sliding_window_view(src, (48, 48))
        assert np.any(np.all(np.abs(windows - hr_k) < 1e-6, axis=(-2, -1)))


def test_bsd300_constant_image_values(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "BSDS300" / "images" / split).mkdir(parents=True)
        _imsave(tmp_path / "BSDS300" / "images" / split / "a.jpg",
                np.full((50, 50, 3), 128, np.uint8))
    ds = load_dataset("bsd300", tmp_path, upscale=2, crop=24)
    expected = (16 + 219 * 128 / 255) / 255  # rgb2ycbcr's Y of grey 128, scaled to [0, 1]
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert abs(float(t.min()) - expected) < 2 / 255 and abs(float(t.max()) - expected) < 2 / 255
    assert ds.x_test.shape == (1, 1, 12, 12) and ds.y_test.shape == (1, 1, 24, 24)


def test_bsd300_seed_moves_train_crops_only(tmp_path):
    _fake_bsd(tmp_path)
    a = load_dataset("bsd300", tmp_path, seed=0)
    b = load_dataset("bsd300", tmp_path, seed=0)
    c = load_dataset("bsd300", tmp_path, seed=1)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.y_train, c.y_train)
    assert torch.equal(a.y_test, c.y_test)
    small = load_dataset("bsd300", tmp_path, seed=0, limit=4)
    assert torch.equal(small.y_train, a.y_train[:4]) and len(small.y_test) == 2


def test_bsd300_missing_test_folder(tmp_path):
    _fake_bsd(tmp_path)
    for p in (tmp_path / "images" / "test").iterdir():
        p.unlink()
    (tmp_path / "images" / "test").rmdir()
    with pytest.raises(DatasetError, match=r"images/test"):
        load_dataset("bsd300", tmp_path)


def test_bsd300_empty_test_folder(tmp_path):
    _fake_bsd(tmp_path, n_test=0)
    with pytest.raises(DatasetError, match=r"no \*\.jpg under images/test"):
        load_dataset("bsd300", tmp_path)


def test_bsd300_broken_and_small_images(tmp_path):
    _fake_bsd(tmp_path)
    (tmp_path / "images" / "test" / "000.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DatasetError, match=r"000\.jpg"):
        load_dataset("bsd300", tmp_path)
    _imsave(tmp_path / "images" / "test" / "000.jpg", np.zeros((30, 90, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"000\.jpg.*30x90.*48x48"):
        load_dataset("bsd300", tmp_path)


@pytest.mark.parametrize("upscale,crop", [(3, 50), (0, 48), (4, 2)])
def test_superres_bad_crop(upscale, crop):
    with pytest.raises(DatasetError, match="crop|upscale"):
        load_dataset("photos", upscale=upscale, crop=crop)


# ----------------------------------------------------------------------------- photos

def test_photos_default_offline(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("photos tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    ds = load_dataset("photos")
    assert ds.task == "superres" and ds.upscale == 3 and not ds.input_signed
    n_train = len(data._PHOTOS_TRAIN) * data._PHOTOS_TRAIN_CROPS
    assert ds.x_train.shape == (n_train, 1, 16, 16) and ds.y_train.shape == (n_train, 1, 48, 48)
    assert len(ds.x_test) == len(ds.y_test) >= 3 * 9
    assert ds.x_test.shape[1:] == (1, 16, 16) and ds.y_test.shape[1:] == (1, 48, 48)
    assert not set(data._PHOTOS_TRAIN) & set(data._PHOTOS_TEST)
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert t.dtype == torch.float32
        assert float(t.min()) >= 16 / 255 - 1e-6 and float(t.max()) <= 235 / 255 + 1e-6
    # LR is a smoothed HR: its mean matches the HR patch mean closely
    diff = (ds.x_train.mean(dim=(1, 2, 3)) - ds.y_train.mean(dim=(1, 2, 3))).abs()
    assert float(diff.max()) < 0.02
    assert float(ds.y_train.std()) > 0.05  # real image content, not a constant


def test_photos_deterministic_and_options():
    a = load_dataset("photos", limit=20, seed=3)
    b = load_dataset("photos", limit=20, seed=3)
    c = load_dataset("photos", limit=20, seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train) and torch.equal(a.y_test, c.y_test)
    assert len(a.x_train) == 20 and len(a.x_test) == 20
    full = load_dataset("photos", seed=3)
    assert torch.equal(full.y_train[:20], a.y_train)
    x2 = load_dataset("photos", limit=5, upscale=2, crop=32)
    assert x2.x_train.shape == (5, 1, 16, 16) and x2.y_train.shape == (5, 1, 32, 32)
    assert x2.upscale == 2 and x2.input_shape == (1, 16, 16)
