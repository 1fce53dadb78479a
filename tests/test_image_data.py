"""Image data sources: every source on tiny files written in the real layout."""

import gzip
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from scoremix.data import files, images as im
from scoremix.data.images import ImageDataset, load_image_dataset, save_image_grid, tensor_to_uint8
from scoremix.errors import DataError


def to_unit(u):
    """Reference uint8 -> [-1, 1] mapping."""
    return torch.as_tensor(np.asarray(u, dtype=np.float64) / 127.5 - 1.0, dtype=torch.float32)


def check_interface(ds, n, shape, num_classes):
    assert isinstance(ds, ImageDataset)
    assert len(ds) == n
    assert ds.shape == shape
    assert ds.num_classes == num_classes
    assert isinstance(ds.name, str) and ds.name
    x, y = ds.get(np.arange(n))
    assert x.dtype == torch.float32 and tuple(x.shape) == (n, *shape)
    assert x.min() >= -1.0 and x.max() <= 1.0
    if num_classes:
        assert y.dtype == torch.int64 and tuple(y.shape) == (n,)
        assert int(y.min()) >= 0 and int(y.max()) < num_classes
    else:
        assert y is None
    return x, y


def rgb_image(h, w, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 255, size=(h, w, 3), dtype=np.uint8)
    a[0, 0] = (0, 255, 7)  # known pixel: R=0, G=255, B=7
    return a


def save_png(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


# ----------------------------------------------------------------------------- built-in sources


def test_digits():
    from sklearn.datasets import load_digits

    ds = load_image_dataset("digits")
    x, y = check_interface(ds, 1797, (1, 8, 8), 10)
    ref = load_digits()
    assert torch.equal(y, torch.as_tensor(ref.target, dtype=torch.int64))
    expected = torch.as_tensor(ref.images / 8.0 - 1.0, dtype=torch.float32)
    assert torch.equal(x[:, 0], expected)
    assert x.min() == -1.0 and x.max() == 1.0
    assert load_image_dataset("digits", resolution=16).shape == (1, 16, 16)
    assert load_image_dataset("digits", use_labels=False).num_classes == 0


def test_mnist():
    ds = load_image_dataset("mnist")
    x, y = check_interface(ds, 5000, (1, 32, 32), 10)
    assert np.bincount(y.numpy(), minlength=10).tolist() == [500] * 10
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert bool((x[:, 0][:, border] == -1.0).all())  # padding is the background value
    # first row of the csv: 784 pixels then the label (last column)
    with gzip.open(im._mnist_5k_path(), "rt") as f:
        row = np.array(f.readline().strip().split(","), dtype=np.int64)
    assert y[0] == row[-1]
    assert torch.equal(x[0, 0, 2:30, 2:30], to_unit(row[:784].reshape(28, 28)))
    assert x[0].max() == 1.0 and row[:784].max() == 255

    ds28 = load_image_dataset("mnist", resolution=28)
    assert ds28.shape == (1, 28, 28)
    assert torch.equal(ds28.get([0])[0][0], x[0, :, 2:30, 2:30])
    ds14 = load_image_dataset("mnist", resolution=14, channels=3, use_labels=False)
    x14, y14 = ds14.get([0, 1])
    assert ds14.shape == (3, 14, 14) and tuple(x14.shape) == (2, 3, 14, 14) and y14 is None
    assert torch.equal(x14[:, 0], x14[:, 2])
    # box filter 28 -> 14 averages 2x2 blocks
    ref = x[0, 0, 2:30, 2:30].reshape(14, 2, 14, 2).mean(dim=(1, 3))
    assert torch.allclose(x14[0, 0], ref, atol=1e-5)


# ----------------------------------------------------------------------------- folder


def test_folder_unlabelled_round_trip(tmp_path):
    arrays = [rgb_image(4, 5, s) for s in range(3)]
    for i, a in enumerate(arrays):
        save_png(str(tmp_path / f"img{i}.png"), a)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_image_dataset("folder", str(tmp_path))
    x, y = check_interface(ds, 3, (3, 4, 5), 0)
    for i, a in enumerate(arrays):
        assert torch.equal(x[i], to_unit(a).permute(2, 0, 1))
    assert x[0, 0, 0, 0] == -1.0 and x[0, 1, 0, 0] == 1.0 and x[0, 2, 0, 0] == pytest.approx(7 / 127.5 - 1)
    # arbitrary order and repeats
    x2, _ = ds.get(np.array([2, 0, 2]))
    assert torch.equal(x2, x[[2, 0, 2]])
    with pytest.raises(IndexError):
        ds.get([3])


def test_folder_class_subfolders(tmp_path):
    save_png(str(tmp_path / "dog" / "a.png"), rgb_image(6, 6, 1))
    save_png(str(tmp_path / "cat" / "b.png"), rgb_image(6, 6, 2))
    save_png(str(tmp_path / "cat" / "nested" / "c.jpg"), rgb_image(6, 6, 3))
    ds = load_image_dataset("folder", str(tmp_path))
    _, y = check_interface(ds, 3, (3, 6, 6), 2)
    assert ds.files == ["cat/b.png", "cat/nested/c.jpg", "dog/a.png"]
    assert y.tolist() == [0, 0, 1]  # class ids from sorted sub-folder names
    ds = load_image_dataset("folder", str(tmp_path), use_labels=False)
    assert ds.num_classes == 0 and ds.get([0])[1] is None


def test_folder_resize_and_channels(tmp_path):
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 17
    save_png(str(tmp_path / "a.png"), grey)
    save_png(str(tmp_path / "b.png"), np.full((8, 4), 255, np.uint8))  # tall: centre-cropped
    ds = load_image_dataset("folder", str(tmp_path), resolution=2, channels=3)
    x, _ = check_interface(ds, 2, (3, 2, 2), 0)
    ref = to_unit(grey).reshape(2, 2, 2, 2).mean(dim=(1, 3))
    for c in range(3):
        assert torch.allclose(x[0, c], ref, atol=1e-6)
    assert torch.equal(x[1], torch.ones(3, 2, 2))
    # greyscale stays 1 channel; RGB -> grey uses luma weights
    save_png(str(tmp_path / "rgb" / "c.png"), np.tile(np.array([255, 0, 0], np.uint8), (2, 2, 1)))
    ds = load_image_dataset("folder", str(tmp_path / "rgb"), channels=1)
    assert ds.shape == (1, 2, 2)
    assert ds.get([0])[0][0, 0, 0, 0] == pytest.approx(0.299 * 2 - 1, abs=1e-6)


def test_folder_upsizing_bilinear(tmp_path):
    save_png(str(tmp_path / "a.png"), np.full((4, 4, 3), 128, np.uint8))
    ds = load_image_dataset("folder", str(tmp_path), resolution=8)
    x, _ = check_interface(ds, 1, (3, 8, 8), 0)
    assert torch.allclose(x, torch.full_like(x, 128 / 127.5 - 1), atol=1e-6)


def test_folder_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=r"dataset path '.*nope' does not exist: pass data.path="):
        load_image_dataset("folder", str(missing))
    with pytest.raises(DataError, match=r"needs a path: pass data.path="):
        load_image_dataset("folder", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no images found in '.*empty'"):
        load_image_dataset("folder", str(empty))

    bad = tmp_path / "bad"
    save_png(str(bad / "good.png"), rgb_image(4, 4, 0))
    (bad / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"cannot read image '.*broken\.png'.*remove or replace"):
        load_image_dataset("folder", str(bad))

    mixed = tmp_path / "mixed"
    save_png(str(mixed / "a.png"), rgb_image(4, 4, 0))
    save_png(str(mixed / "b.png"), rgb_image(8, 6, 0))
    with pytest.raises(
        DataError, match=r"different sizes: '.*a\.png' is 4x4 but '.*b\.png' is 6x8.*data\.resolution=N"
    ):
        load_image_dataset("folder", str(mixed))
    assert load_image_dataset("folder", str(mixed), resolution=4).shape == (3, 4, 4)

    chans = tmp_path / "chans"
    save_png(str(chans / "a.png"), rgb_image(4, 4, 0))
    save_png(str(chans / "b.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(
        DataError, match=r"different channel counts: .*'.*b\.png' is greyscale \(1 channel\).*data\.channels="
    ):
        load_image_dataset("folder", str(chans))
    ds = load_image_dataset("folder", str(chans), channels=3)
    x, _ = ds.get([1])
    assert ds.shape == (3, 4, 4) and torch.equal(x, -torch.ones(1, 3, 4, 4))

    classes = tmp_path / "classes"
    save_png(str(classes / "a" / "x.png"), rgb_image(4, 4, 0))
    (classes / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder '.*b' has no images"):
        load_image_dataset("folder", str(classes))

    save_png(str(tmp_path / "file.png"), rgb_image(4, 4, 0))
    with pytest.raises(DataError, match=r"is not a folder"):
        load_image_dataset("folder", str(tmp_path / "file.png"))


def test_folder_checks_unscanned_images_on_get(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "HEADER_SCAN_LIMIT", 1)  # the constant lives in the folder/zip module
    save_png(str(tmp_path / "a.png"), rgb_image(4, 4, 0))
    save_png(str(tmp_path / "b.png"), rgb_image(5, 5, 0))
    ds = load_image_dataset("folder", str(tmp_path))
    ds.get([0])
    with pytest.raises(DataError, match=r"different sizes.*b\.png' is 5x5"):
        ds.get([1])


# ----------------------------------------------------------------------------- npy / npz


def test_npy_layouts(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    nhwc[0, 1, 2] = (0, 255, 9)
    np.save(tmp_path / "nhwc.npy", nhwc)
    np.save(tmp_path / "nchw.npy", np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)))
    ds = load_image_dataset("npy", str(tmp_path / "nhwc.npy"))
    x, _ = check_interface(ds, 5, (3, 6, 7), 0)
    assert isinstance(ds.array, np.memmap)  # streamed, not loaded
    assert torch.equal(x, to_unit(nhwc).permute(0, 3, 1, 2))
    assert x[0, 0, 1, 2] == -1.0 and x[0, 1, 1, 2] == 1.0
    ds2 = load_image_dataset("npz", str(tmp_path / "nchw.npy"))
    assert torch.equal(ds2.get(np.arange(5))[0], x)

    # pickling a memory-mapped dataset does not copy the data
    blob = pickle.dumps(ds)
    assert len(blob) < nhwc.nbytes
    assert torch.equal(pickle.loads(blob).get([4, 0])[0], x[[4, 0]])

    grey = rng.integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    np.save(tmp_path / "grey.npy", grey)
    ds = load_image_dataset("npy", str(tmp_path / "grey.npy"), resolution=6)
    check_interface(ds, 2, (1, 6, 6), 0)


def test_npy_float_ranges(tmp_path):
    unit = np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.float32)
    np.save(tmp_path / "u.npy", unit)
    x, _ = load_image_dataset("npy", str(tmp_path / "u.npy")).get([0, 1])
    assert torch.allclose(x, torch.as_tensor(unit * 2 - 1).permute(0, 3, 1, 2), atol=1e-6)
    sym = unit * 2 - 1
    np.save(tmp_path / "s.npy", sym)
    x, _ = load_image_dataset("npy", str(tmp_path / "s.npy")).get([0, 1])
    assert torch.equal(x, torch.as_tensor(sym).permute(0, 3, 1, 2))
    np.save(tmp_path / "big.npy", unit * 255)
    with pytest.raises(
        DataError, match=r"float images must lie in \[0, 1\] or \[-1, 1\]; found values 0\.\.255: convert them to uint8"
    ):
        load_image_dataset("npy", str(tmp_path / "big.npy"))


def test_npz_labels_and_compression(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(4, 3, 2, 5), dtype=np.uint8)  # NCHW
    y = np.array([3, 0, 2, 3])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "b.npz", images=x, labels=y)
    ref = to_unit(x)
    for name, mapped in (("a.npz", True), ("b.npz", False)):
        ds = load_image_dataset("npz", str(tmp_path / name))
        xs, ys = check_interface(ds, 4, (3, 2, 5), 4)
        assert isinstance(ds.array, np.memmap) == mapped
        assert torch.equal(xs, ref) and ys.tolist() == y.tolist()
        assert torch.equal(pickle.loads(pickle.dumps(ds)).get([1])[0], ref[[1]])
    assert load_image_dataset("npz", str(tmp_path / "a.npz"), use_labels=False).num_classes == 0


def test_npz_errors(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(
        DataError,
        match=r"expected images of shape \(N, H, W, C\) or \(N, C, H, W\) with C in \{1, 3\}.*got \(4, 5, 6, 7\)",
    ):
        load_image_dataset("npy", str(tmp_path / "bad.npy"))
    np.save(tmp_path / "flat.npy", np.zeros((4, 12), np.uint8))
    with pytest.raises(DataError, match=r"expected images of shape.*got \(4, 12\)"):
        load_image_dataset("npy", str(tmp_path / "flat.npy"))
    np.savez(tmp_path / "nokey.npz", pixels=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"no image array: expected a key 'x', 'images' or 'data'"):
        load_image_dataset("npz", str(tmp_path / "nokey.npz"))
    np.savez(tmp_path / "neg.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, -1]))
    with pytest.raises(DataError, match=r"label -1 in .* is out of range"):
        load_image_dataset("npz", str(tmp_path / "neg.npz"))
    np.savez(tmp_path / "count.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, 1, 1]))
    with pytest.raises(DataError, match=r"3 labels for 2 images"):
        load_image_dataset("npz", str(tmp_path / "count.npz"))
    np.savez(tmp_path / "onehot.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.eye(2))
    with pytest.raises(DataError, match=r"integer class ids of shape \(N,\)"):
        load_image_dataset("npz", str(tmp_path / "onehot.npz"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"pickled Python objects"):
        load_image_dataset("npy", str(tmp_path / "obj.npy"))
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"is not a \.npy/\.npz file"):
        load_image_dataset("npy", str(tmp_path / "junk.npy"))
    with pytest.raises(DataError, match=r"does not exist"):
        load_image_dataset("npz", str(tmp_path / "missing.npz"))


# ----------------------------------------------------------------------------- EDM zip


def write_edm_zip(path, arrays, labels):
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(len(arrays))]
    with zipfile.ZipFile(path, "w") as zf:
        for n, a in zip(names, arrays):
            buf = __import__("io").BytesIO()
            Image.fromarray(a).save(buf, format="PNG")
            zf.writestr(n, buf.getvalue())
        meta = {"labels": None if labels is None else [[n, int(label)] for n, label in zip(names, labels)]}
        zf.writestr("dataset.json", json.dumps(meta))
    return names


def test_zip_edm_layout(tmp_path):
    arrays = [rgb_image(4, 4, s) for s in range(3)]
    path = tmp_path / "ds.zip"
    write_edm_zip(path, arrays, [6, 0, 9])
    ds = load_image_dataset("zip", str(path))
    x, y = check_interface(ds, 3, (3, 4, 4), 10)
    assert y.tolist() == [6, 0, 9]
    assert ds.files[0] == "00000/img00000000.png"
    assert torch.equal(x, torch.stack([to_unit(a).permute(2, 0, 1) for a in arrays]))
    assert x[1, 0, 0, 0] == -1.0 and x[1, 1, 0, 0] == 1.0
    # pickle and a changed process id reopen the handle lazily
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._zip is None
    assert torch.equal(clone.get([2])[0], x[[2]])
    ds._zip_pid = -1
    old = ds._zip
    assert torch.equal(ds.get([0])[0], x[[0]]) and ds._zip is not old
    old.close()
    ds.close()

    write_edm_zip(tmp_path / "nolab.zip", arrays, None)
    ds = load_image_dataset("zip", str(tmp_path / "nolab.zip"), resolution=2, channels=1)
    check_interface(ds, 3, (1, 2, 2), 0)


def test_zip_errors(tmp_path):
    arrays = [rgb_image(4, 4, s) for s in range(2)]
    names = write_edm_zip(tmp_path / "a.zip", arrays, [1, 2])
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        with zipfile.ZipFile(tmp_path / "a.zip") as src:
            zf.writestr(names[0], src.read(names[0]))
            zf.writestr(names[1], src.read(names[1]))
        zf.writestr("dataset.json", json.dumps({"labels": [[names[0], 1]]}))
    with pytest.raises(DataError, match=r"no label for '00000/img00000001\.png'"):
        load_image_dataset("zip", str(tmp_path / "b.zip"))
    assert load_image_dataset("zip", str(tmp_path / "b.zip"), use_labels=False).num_classes == 0
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as zf:
        zf.writestr("00000/img00000000.png", b"not a png")
    with pytest.raises(DataError, match=r"cannot read image '00000/img00000000\.png' in '.*c\.zip'"):
        load_image_dataset("zip", str(tmp_path / "c.zip"))
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(DataError, match=r"no images found in zip"):
        load_image_dataset("zip", str(tmp_path / "d.zip"))
    (tmp_path / "e.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"is not a zip file"):
        load_image_dataset("zip", str(tmp_path / "e.zip"))
    write_edm_zip(tmp_path / "f.zip", arrays, [1, -3])
    with pytest.raises(DataError, match=r"label -3 .* out of range"):
        load_image_dataset("zip", str(tmp_path / "f.zip"))


# ----------------------------------------------------------------------------- CIFAR-10


def cifar_rows(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar(root, n=2, labels=None):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        rows = cifar_rows(n, k)
        lab = list(labels) if labels is not None else [(k + j) % 10 for j in range(n)]
        batches[name] = (rows, lab)
        obj = {
            b"batch_label": b"training batch",
            b"labels": lab,
            b"data": rows,
            b"filenames": [b"f%d.png" % j for j in range(n)],
        }
        with open(d / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n}, f, protocol=2)
    return d, batches


def test_cifar10(tmp_path):
    d, batches = write_cifar(tmp_path)
    rows = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    rows[0, 0] = 0  # R plane, pixel (0, 0)
    rows[0, 1024 + 32 * 3 + 5] = 255  # G plane, pixel (3, 5)
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": rows[:2], b"labels": batches["data_batch_1"][1]}, f, protocol=2)
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    for p in (d, tmp_path):  # the batches folder or its parent
        ds = load_image_dataset("cifar10", str(p))
        x, y = check_interface(ds, 10, (3, 32, 32), 10)
        assert y.tolist() == labels
        assert torch.equal(x, to_unit(rows.reshape(-1, 3, 32, 32)))
        assert x[0, 0, 0, 0] == -1.0 and x[0, 1, 3, 5] == 1.0
    test = load_image_dataset("cifar10", str(d), split="test", resolution=16, channels=1)
    check_interface(test, 2, (1, 16, 16), 10)
    assert test.name == "cifar10-test"


def py2_cifar_pickle(rows, labels):
    """Bytes of a batch as Python 2 cPickle (protocol 2) writes it: str keys/data as
    SHORT_BINSTRING / BINSTRING, numpy.core.multiarray._reconstruct."""

    def sbs(s):
        return b"U" + bytes([len(s)]) + s

    def i4(v):
        return b"J" + struct.pack("<i", v)

    out = b"\x80\x02}(" + sbs(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + sbs(b"b") + b"\x87R"
    out += b"(K\x01(" + i4(rows.shape[0]) + i4(rows.shape[1]) + b"t"
    out += b"cnumpy\ndtype\n(" + sbs(b"u1") + b"K\x00K\x01tR(K\x03" + sbs(b"|") + b"NNN" + i4(-1) + i4(-1) + b"K\x00tb"
    out += b"\x89T" + struct.pack("<i", rows.nbytes) + rows.tobytes() + b"tb"
    out += sbs(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu."
    return out


def test_cifar10_python2_pickles(tmp_path):
    d, batches = write_cifar(tmp_path)
    rows = cifar_rows(3, 42)
    (d / "test_batch").write_bytes(py2_cifar_pickle(rows, [4, 5, 9]))
    ds = load_image_dataset("cifar10", str(d), split="test")
    x, y = check_interface(ds, 3, (3, 32, 32), 10)
    assert y.tolist() == [4, 5, 9]
    assert torch.equal(x, to_unit(rows.reshape(3, 3, 32, 32)))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_cifar10_refuses_malicious_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d, _ = write_cifar(tmp_path)
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump({b"data": cifar_rows(2, 0), b"labels": [0, 1], b"x": Evil()}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_3' contains disallowed objects \((posix|nt|os)\.system\)"):
        load_image_dataset("cifar10", str(d))
    assert not (tmp_path / "pwned_marker").exists()
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump(
            {b"data": cifar_rows(2, 0), b"labels": [0, 1], b"x": __import__("collections").OrderedDict()}, f, protocol=4
        )
    with pytest.raises(DataError, match=r"disallowed objects \(collections\.OrderedDict\)"):
        load_image_dataset("cifar10", str(d))


def test_cifar10_errors(tmp_path):
    d, _ = write_cifar(tmp_path / "a", labels=[3, 10])
    with pytest.raises(DataError, match=r"label 10 in '.*data_batch_1' is out of range: labels must be 0\.\.9"):
        load_image_dataset("cifar10", str(d))
    d, _ = write_cifar(tmp_path / "b")
    os.remove(d / "data_batch_4")
    with pytest.raises(DataError, match=r"incomplete: missing data_batch_4"):
        load_image_dataset("cifar10", str(d))
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match=r"no CIFAR-10 batches in"):
        load_image_dataset("cifar10", str(tmp_path / "c"))
    d, _ = write_cifar(tmp_path / "d")
    with open(d / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DataError, match=r"not a CIFAR-10 batch: expected b'data' uint8 of shape \(N, 3072\)"):
        load_image_dataset("cifar10", str(d))
    with pytest.raises(DataError, match=r"unknown split"):
        load_image_dataset("cifar10", str(d), split="dev")


# ----------------------------------------------------------------------------- ImageNet 64x64


def write_imagenet(root, sizes, compressed=(), val=3):
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for k, n in enumerate(sizes, start=1):
        data = np.random.default_rng(k).integers(0, 256, size=(n, 12288), dtype=np.uint8)
        labels = [((k * 7 + j * 13) % 1000) + 1 for j in range(n)]
        save = np.savez_compressed if k in compressed else np.savez
        save(root / f"train_data_batch_{k}.npz", data=data, labels=labels, mean=np.zeros(12288))
        out.append((data, labels))
    data = np.random.default_rng(99).integers(0, 256, size=(val, 12288), dtype=np.uint8)
    np.savez(root / "val_data.npz", data=data, labels=[1000, 1, 500][:val])
    return out, data


def test_imagenet64(tmp_path):
    batches, val = write_imagenet(tmp_path, [3, 2, 4], compressed=(2, 3))
    batches[0][0][0, 0] = 0
    batches[0][0][0, 2 * 4096 + 64 * 10 + 20] = 255  # B plane, pixel (10, 20)
    np.savez(tmp_path / "train_data_batch_1.npz", data=batches[0][0], labels=batches[0][1])
    ds = im.ImageNet64Dataset(str(tmp_path), cache_files=1)
    x, y = check_interface(ds, 9, (3, 64, 64), 1000)
    rows = np.concatenate([b[0] for b in batches])
    labels = sum((b[1] for b in batches), [])
    assert y.tolist() == [v - 1 for v in labels]  # 1-based on disk, 0-based here
    assert torch.equal(x, to_unit(rows.reshape(-1, 3, 64, 64)))
    assert x[0, 0, 0, 0] == -1.0 and x[0, 2, 10, 20] == 1.0
    # random access across files: stored files are memory-mapped, compressed ones cached (LRU 1)
    order = np.array([8, 0, 4, 3, 8, 1])
    xs, ys = ds.get(order)
    assert torch.equal(xs, x[order]) and torch.equal(ys, y[order])
    assert list(ds._maps) == [0] and len(ds._cache) == 1
    assert pickle.loads(pickle.dumps(ds)).get([5])[1].item() == y[5].item()

    vds = load_image_dataset("imagenet64", str(tmp_path), split="val", resolution=32)
    xv, yv = check_interface(vds, 3, (3, 32, 32), 1000)
    assert yv.tolist() == [999, 0, 499]
    ref = to_unit(val.reshape(-1, 3, 64, 64)).reshape(3, 3, 32, 2, 32, 2).mean(dim=(3, 5))
    assert torch.allclose(xv, ref, atol=1e-5)


def test_imagenet64_errors(tmp_path):
    np.savez(tmp_path / "train_data_batch_1.npz", data=np.zeros((2, 12288), np.uint8), labels=[0, 5])
    with pytest.raises(
        DataError, match=r"label 0 in '.*train_data_batch_1\.npz'.*out of range: labels must be 1\.\.1000"
    ):
        load_image_dataset("imagenet64", str(tmp_path))
    np.savez(tmp_path / "train_data_batch_1.npz", data=np.zeros((2, 1000), np.uint8), labels=[1, 5])
    with pytest.raises(DataError, match=r"expected 'data' uint8 of shape \(N, 3\*S\*S\)"):
        load_image_dataset("imagenet64", str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no train_data_batch_\*\.npz files"):
        load_image_dataset("imagenet64", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"no val_data\.npz"):
        load_image_dataset("imagenet64", str(tmp_path / "empty"), split="val")


# ----------------------------------------------------------------------------- options


def test_option_errors():
    with pytest.raises(DataError, match=r"unknown image source 'png'.*data\.source"):
        load_image_dataset("png", "x")
    with pytest.raises(DataError, match=r"channels must be 1 or 3; got 4"):
        load_image_dataset("digits", channels=4)
    with pytest.raises(DataError, match=r"resolution must be a positive integer; got 0"):
        load_image_dataset("digits", resolution=0)
    with pytest.raises(DataError, match=r"built in and takes no path"):
        load_image_dataset("mnist", "/tmp/mnist")
    with pytest.raises(DataError, match=r"has no 'test' split"):
        load_image_dataset("digits", split="test")


def test_get_accepts_tensors_and_empty():
    ds = load_image_dataset("digits")
    x, y = ds.get(torch.tensor([5, 1]))
    assert torch.equal(x, ds.get(np.array([5, 1]))[0]) and y.shape == (2,)
    x, y = ds.get(np.array([], dtype=np.int64))
    assert tuple(x.shape) == (0, 1, 8, 8) and tuple(y.shape) == (0,)
    with pytest.raises(IndexError):
        ds.get([-1])


# ----------------------------------------------------------------------------- pictures


def test_tensor_to_uint8_round_trip():
    u = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = to_unit(u.numpy())
    assert torch.equal(tensor_to_uint8(x), u)
    assert tensor_to_uint8(torch.tensor([-3.0, 3.0, float("nan")])).tolist() == [0, 255, 0]


def test_save_image_grid(tmp_path):
    x = torch.rand(5, 3, 4, 6) * 2 - 1
    x[1, :, 0, 0] = torch.tensor([1.0, -1.0, 1.0])
    size = save_image_grid(x, tmp_path / "sub" / "grid.png", nrow=3)
    img = Image.open(tmp_path / "sub" / "grid.png")
    assert img.size == size == (3 * (6 + 2) + 2, 2 * (4 + 2) + 2)
    assert img.mode == "RGB"
    a = np.array(img)
    assert a[2, 2 + 8].tolist() == [255, 0, 255]  # image 1, pixel (0, 0)
    assert a[0].max() == 0  # padding is black
    assert torch.equal(torch.as_tensor(a[2:6, 2:8]).permute(2, 0, 1), tensor_to_uint8(x[0]))

    save_image_grid(torch.zeros(4, 1, 8, 8), tmp_path / "grey.png", padding=1)
    img = Image.open(tmp_path / "grey.png")
    assert img.size == (2 * 9 + 1, 2 * 9 + 1) and img.mode == "L"
