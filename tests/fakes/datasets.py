"""Tiny datasets in the real on-disk formats, written by the tests themselves."""

import pickle

import numpy as np
from PIL import Image

COLOURS = [(220, 30, 30), (30, 30, 220), (30, 200, 30)]


def image(path, colour, size=32, seed=0):
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour)[None, None, :] + rng.integers(-25, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def image_folder(root, per_class=6, classes=2):
    for c in range(classes):
        for i in range(per_class):
            image(root / f"class_{c}" / f"img_{i}.png", COLOURS[c], seed=100 * c + i)
    return root


def cifar_batch(path, n=20, seed=0, labels=None, protocol=2):
    """A batch as the official ones are: a protocol-2 pickle of a dict holding a uint8 numpy array
    (cs.toronto.edu/~kriz/cifar.html: "a 10000x3072 numpy array of uint8s", read with pickle.load)."""
    rng = np.random.default_rng(seed)
    labels = labels if labels is not None else [i % 10 for i in range(n)]
    data = rng.integers(0, 255, (len(labels), 3072)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}, fh, protocol=protocol)
    return data, labels


class _Call:
    """Pickles as a call of `fn(*args)`: what a hostile pickle's REDUCE opcode does on loading."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def hostile_cifar_batch(path, fn, *args, n=20):
    """A batch that looks right (every entry there) but whose b'batch_label' is the result of
    calling fn(*args) when unpickled."""
    labels = [i % 10 for i in range(n)]
    data = np.zeros((n, 3072), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": _Call(fn, *args), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}, fh, protocol=2)
    return path


def cifar_tree(root, n_test=20, n_train=10):
    base = root / "cifar-10-batches-py"
    cifar_batch(base / "test_batch", n_test)
    for i in range(1, 6):
        cifar_batch(base / f"data_batch_{i}", n_train, seed=i)
    return root


def imagenet_folders(root, synsets, images=None):
    """One folder per synset (all 1000); `images` maps synset -> count of images to write."""
    for s in synsets:
        (root / s).mkdir(parents=True, exist_ok=True)
    for s, n in (images or {}).items():
        for i in range(n):
            image(root / s / f"ILSVRC2012_val_{i:08d}.JPEG", COLOURS[i % 3], seed=i)
    return root


def imagenet_flat(root, synsets, truth_ids):
    """Flat val images + devkit (meta.mat with ILSVRC2012_ID -> WNID in the devkit's own order)."""
    from scipy.io import savemat

    # the devkit orders synsets differently from the sorted wnids: reverse them here
    devkit_order = list(reversed(synsets))
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = np.array([(i + 1, w, w, 0) for i, w in enumerate(devkit_order)], dtype=dtype)
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    savemat(str(data / "meta.mat"), {"synsets": rows})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(str(t) for t in truth_ids) + "\n")
    val = root / "val"
    for n in range(1, len(truth_ids) + 1):
        image(val / f"ILSVRC2012_val_{n:08d}.JPEG", COLOURS[n % 3], seed=n)
    return val, devkit_order
