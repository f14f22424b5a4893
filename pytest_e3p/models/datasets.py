"""Datasets in their usual on-disk forms, and each model's evaluation transform.

`--e3p-dataset` takes a comma list of:
- `synthetic`: random images of the model's input size; energy and latency only, no accuracy.
- `imagenet=PATH`: the ILSVRC-2012 validation set, either one folder per synset (`n01440764/...`)
  or the flat folder of `ILSVRC2012_val_*.JPEG` beside the devkit (`ILSVRC2012_devkit_t12/data/`
  with `ILSVRC2012_validation_ground_truth.txt` and `meta.mat`). Class indices are in timm's order
  (sorted synset ids).
- `cifar10=PATH`: the official python batches (`cifar-10-batches-py/`), test split.
- `folder=PATH`: any labelled image folder, one sub-folder per class (sorted names = class indices).

`--e3p-limit N` evaluates N images evenly spaced over the set (indices floor(i * len / N)): the same
images every run, spread over all classes, so a quick run is a fair sample.

Class folders are listed as torchvision's ImageFolder lists them (its sorted classes and extensions,
its walk re-done with a loop check). timm's `create_dataset` is not used: its `ImageDataset` answers
an image it cannot decode with the next image (a logged warning), which changes top-1 silently, and
its folder reader orders classes by natural sort and drops empty class folders, which shifts class
indices; its CIFAR-10 is torchvision's. Why torchvision's ImageNet and CIFAR10 classes are not used
is said where ours are.

Datasets are untrusted input, and each limit is one line naming the file:
- a CIFAR-10 batch is unpickled with only the globals a real batch references (numpy's array
  reconstruction, `numpy.ndarray`, `numpy.dtype`, `_codecs.encode`); any other global is refused
  before it is called, so a batch cannot run code.
- an image above PIL's decompression-bomb limit (more than 2 x `PIL.Image.MAX_IMAGE_PIXELS`, about
  179 million pixels by default) is refused; one between 1x and 2x the limit is decoded with PIL's
  warning, and refused like the larger ones where warnings are errors.
- folders are walked following directory links, as ImageFolder walks them, but a link back to a
  folder above it (a loop, which made the walk endless) and an image name that is a looping or
  broken link are refused.
"""

from __future__ import annotations

import errno
import functools
import os
import pickle
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import Dataset, Subset

from ..text import error_line, first_line

SYNTHETIC, IMAGENET, CIFAR10, FOLDER = "synthetic", "imagenet", "cifar10", "folder"
KINDS = (SYNTHETIC, IMAGENET, CIFAR10, FOLDER)
DEVKIT_DIR = "ILSVRC2012_devkit_t12"
CIFAR_DIR = "cifar-10-batches-py"


class DatasetError(Exception):
    """A dataset path or file that is not what it should be; the message names the file."""


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.kind

    @property
    def has_labels(self) -> bool:
        return self.kind != SYNTHETIC

    @property
    def data_path(self) -> Path:
        """`path`, which parse_datasets gives every kind but synthetic."""
        assert self.path is not None, f"{self.kind} has no path"
        return self.path


def parse_datasets(spec: str) -> list[DatasetSpec]:
    specs = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        kind, _, path = part.partition("=")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise DatasetError(f"unknown dataset {kind!r}; accepted: synthetic, imagenet=PATH, cifar10=PATH, folder=PATH")
        if kind == SYNTHETIC:
            if path:
                raise DatasetError("synthetic takes no path")
            specs.append(DatasetSpec(SYNTHETIC))
            continue
        if not path:
            raise DatasetError(f"{kind} needs a path: {kind}=PATH")
        p = Path(path).expanduser()
        if not p.exists():
            raise DatasetError(f"{kind}: {p} does not exist")
        specs.append(DatasetSpec(kind, p))
    if not specs:
        raise DatasetError("no dataset given: use synthetic, imagenet=PATH, cifar10=PATH or folder=PATH")
    if len({s.kind for s in specs}) != len(specs):
        raise DatasetError("each dataset kind may be given once")
    return specs


class CorruptImage(Exception):
    """An image of the dataset that cannot be decoded; the message names the file and the fix."""


class LabelledImages(Dataset):
    """(image path, class index) pairs, loaded with PIL as RGB and transformed.

    Ours rather than ImageFolder's pil_loader: an image that cannot be decoded is one line naming the
    file (CorruptImage, which the session finds even in a loader process's traceback), where
    pil_loader raises PIL's error as it comes; and an RGB image is not copied by a convert().
    An image above PIL's decompression-bomb limit is such an image too: PIL raises
    DecompressionBombError beyond 2 x Image.MAX_IMAGE_PIXELS, which is no OSError. Between 1x and 2x
    PIL only warns, and the image is decoded (PIL's own judgement, and it names no file); where
    warnings are errors that warning is raised, and refused in the same line."""

    def __init__(self, items: list[tuple[Path, int]], transform=None):
        self.items, self.transform = items, transform
        self.targets = [label for _, label in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.items[i]
        try:
            with Image.open(path) as img:
                img.load()  # decode now, while the file is open; no copy when it is RGB already
                img = img if img.mode == "RGB" else img.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise CorruptImage(
                f"{path} cannot be decoded within PIL's decompression-bomb limit ({first_line(exc, 160)}); "
                "remove it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for truncated or foreign files
            raise CorruptImage(f"{path} cannot be decoded ({error_line(exc, 120)}); remove or replace it") from None
        return (self.transform(img) if self.transform else img), label


class Cifar10(Dataset):
    """The official CIFAR-10 python batches, as PIL images: what torchvision's CIFAR10 returns.

    torchvision's CIFAR10 (even with download=False, which keeps it off the network) is not used: it
    opens only the byte-exact official download, checking the md5 of all five train batches, the test
    batch and batches.meta (163 MB hashed on every open, even for the test split), and answers any
    other copy with "Dataset not found or corrupted. You can use download=True", naming no file.
    `read_cifar_batch` reads the test batch alone and names the file and the fix."""

    def __init__(self, images, labels: list[int], transform=None):
        self.images, self.targets, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), self.targets[i]


def _image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def _images_in(folder: Path) -> list[Path]:
    """The images directly in `folder` (the flat ImageNet layout), by ImageFolder's extensions."""
    from torchvision.datasets.folder import is_image_file

    return sorted(p for p in folder.iterdir() if is_image_file(p.name))


def _class_folders(root: Path) -> list[str]:
    """Sorted sub-folder names: ImageFolder's classes, so its checkpoints' class indices hold."""
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(root)[0]
    except FileNotFoundError:  # no sub-folder at all
        return []


def _stat_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk(top: str, above: dict[tuple[int, int], str], kind: str) -> list[tuple[str, list[str]]]:
    """(folder, names of its non-folders) for `top` and every folder under it, directory links
    followed as ImageFolder's os.walk(followlinks=True) follows them; an unreadable folder is
    skipped, as os.walk skips it.

    os.walk has no loop check: a link to a folder above it is walked until the path grows too long
    (each image listed 40 times over), two such links double the walk at each level (endless). Here
    a folder met again on its own path (same st_dev, st_ino) is refused, naming the link; so is a
    link with an image's name that cannot be resolved (a loop or a missing target): ImageFolder
    lists it, and it would fail only when decoded."""
    exts = _image_extensions()
    listing: list[tuple[str, list[str]]] = []
    stack = [(top, above)]
    while stack:
        folder, ancestors = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        names = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links, as os.walk's does
            except OSError:
                is_dir = False
            if not is_dir:
                if entry.is_symlink() and entry.name.lower().endswith(exts) and not os.path.exists(entry.path):
                    try:
                        os.stat(entry.path)
                    except OSError as exc:
                        what = "a symlink loop" if exc.errno == errno.ELOOP else "a broken symlink"
                        raise DatasetError(f"{kind}: {entry.path} is {what} ({exc.strerror}); remove it or point it at an image") from None
                names.append(entry.name)
                continue
            key = _stat_key(entry.path)
            if key in ancestors:
                raise DatasetError(f"{kind}: {entry.path} is a symlink loop: it leads back to {ancestors[key]}, which holds it; remove the link")
            stack.append((entry.path, {**ancestors, key: entry.path}))
        listing.append((folder, names))
    return listing


def _class_folder_items(root: Path, classes: list[str], kind: str = FOLDER) -> list[tuple[Path, int]]:
    """(image, index of its class in `classes`) under root/<class>/, as ImageFolder lists them
    (torchvision's make_dataset: classes in sorted order, folders walked and sorted by path, files
    sorted, ImageFolder's extensions); a class folder may be empty. A symlink loop is a DatasetError
    (see _walk)."""
    exts = _image_extensions()
    index = {cls: idx for idx, cls in enumerate(classes)}
    root_key = _stat_key(str(root))
    items = []
    for cls in sorted(index):
        target = os.path.join(str(root), cls)
        if not os.path.isdir(target):
            continue
        key = _stat_key(target)
        if key == root_key:
            raise DatasetError(f"{kind}: {target} is a symlink loop: it leads back to {root}, which holds it; remove the link")
        for folder, names in sorted(_walk(target, {root_key: str(root), key: target}, kind)):
            items += [(Path(folder, name), index[cls]) for name in sorted(names) if name.lower().endswith(exts)]
    return items


# The globals a CIFAR-10 python batch references. The official batches are protocol-2 pickles that
# Python 2's cPickle wrote of a dict (b'batch_label', b'labels': list of ints, b'data': a 10000 x 3072
# uint8 numpy array, b'filenames'); the array is rebuilt by numpy.core.multiarray._reconstruct from
# numpy.ndarray and numpy.dtype. The same batch written by Python 3 also references _codecs.encode
# (bytes at protocol 2, a pure conversion), numpy 2 names numpy._core.multiarray, and protocol 5
# rebuilds the array with _frombuffer. None of these runs anything but a constructor.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _RefusedGlobal(Exception):
    """A global outside _CIFAR_GLOBALS; its message is the global's dotted name."""


class _CifarUnpickler(pickle.Unpickler):
    """pickle's Unpickler that resolves only _CIFAR_GLOBALS: pickle.load calls whatever global a
    file names (a batch reducing to os.system ran the command), so anything else is refused before
    it is imported."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        if module.startswith("numpy.core.") and _numpy_major() >= 2:
            module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 2's name, without its deprecation warning
        return super().find_class(module, name)


@functools.cache
def _numpy_major() -> int:
    import numpy as np

    return int(np.__version__.split(".")[0])


def read_cifar_batch(path: Path) -> tuple[Any, list[int]]:
    """One official CIFAR-10 batch file -> (N x 32 x 32 x 3 uint8 array, labels). Unpickled with
    _CifarUnpickler: a file referencing any other global is refused, naming it."""
    import numpy as np

    try:
        with open(path, "rb") as fh:
            batch = _CifarUnpickler(fh, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DatasetError(
            f"cifar10: refused to load {path}: it references {exc}, which a CIFAR-10 batch never holds; replace it with the official download"
        ) from None
    except FileNotFoundError:
        raise DatasetError(f"cifar10: {path} does not exist (expected the official {CIFAR_DIR}/ folder)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, ImportError, AttributeError) as exc:  # ImportError: numpy 2's names in numpy 1.25
        raise DatasetError(f"cifar10: {path} is truncated or not a CIFAR batch ({exc.__class__.__name__}: {exc}); download it again") from None
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = [int(x) for x in batch[b"labels"]]
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"cifar10: {path} has no b'data'/b'labels' entries ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
        raise DatasetError(f"cifar10: {path} holds data of shape {data.shape} for {len(labels)} labels; expected N x 3072 for N labels")
    bad = [x for x in labels if not 0 <= x < 10]
    if bad:
        raise DatasetError(f"cifar10: {path} has labels out of range 0-9 (first: {bad[0]})")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_dir(path: Path) -> Path:
    return path / CIFAR_DIR if (path / CIFAR_DIR).is_dir() else path


def open_cifar10(path: Path, split: str = "test", transform=None) -> Cifar10:
    import numpy as np

    root = _cifar_dir(path)
    files = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    arrays, labels = [], []
    for name in files:
        data, lab = read_cifar_batch(root / name)
        arrays.append(data)
        labels += lab
    return Cifar10(np.concatenate(arrays), labels, transform)


def _imagenet_synsets() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def _devkit_dir(path: Path) -> Path | None:
    for candidate in (path / DEVKIT_DIR / "data", path.parent / DEVKIT_DIR / "data", path / "data"):
        if (candidate / "ILSVRC2012_validation_ground_truth.txt").is_file():
            return candidate
    return None


def _imagenet_flat_items(path: Path, devkit: Path) -> list[tuple[Path, int]]:
    """Flat ILSVRC2012_val_NNNNNNNN.JPEG files, labelled from the devkit.

    The ground-truth file holds ILSVRC2012_IDs (1-1000, the devkit's own order); meta.mat maps each
    to its synset id, and timm's class index is the synset's place in sorted order."""
    from scipy.io import loadmat

    meta_file = devkit / "meta.mat"
    try:
        synsets = loadmat(str(meta_file), squeeze_me=True)["synsets"]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except FileNotFoundError:
        raise DatasetError(f"imagenet: {meta_file} is missing; the devkit's data/ folder must hold meta.mat") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise DatasetError(f"imagenet: {meta_file} is not the devkit's meta.mat ({exc})") from None
    index = {wnid: i for i, wnid in enumerate(_imagenet_synsets())}
    truth = (devkit / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
    items = []
    for img in _images_in(path):
        try:
            n = int(img.stem.rsplit("_", 1)[1])
            label = index[id_to_wnid[int(truth[n - 1])]]
        except (IndexError, ValueError, KeyError):
            raise DatasetError(f"imagenet: no ground truth for {img.name} in {devkit / 'ILSVRC2012_validation_ground_truth.txt'}") from None
        items.append((img, label))
    return items


def open_imagenet(path: Path, transform=None) -> LabelledImages:
    """Either layout of the validation set, labelled in timm's class order.

    torchvision's ImageNet class reads neither: it needs the devkit *tarball*
    (ILSVRC2012_devkit_t12.tar.gz, md5-checked) or the meta.bin it writes into the dataset folder from
    it, and PATH/val/ in synset folders, else it unpacks ILSVRC2012_img_val.tar there and moves the
    images. Its meta.mat and ground-truth parsers are private to its tarball function, and it does not
    check that all 1000 synset folders are there (a missing one shifts every later class index)."""
    synsets = _imagenet_synsets()
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.startswith("n") and p.name[1:].isdigit())
    if folders:
        missing = sorted(set(synsets) - set(folders))
        unknown = sorted(set(folders) - set(synsets))
        if unknown:
            raise DatasetError(f"imagenet: {path} has folders that are not ImageNet-1k synsets: {', '.join(unknown[:3])}")
        if missing:
            raise DatasetError(
                f"imagenet: {path} has {len(folders)} synset folders, expected 1000; missing {len(missing)} "
                f"(first: {', '.join(missing[:3])}). Class indices would shift: restore them (empty folders are fine)"
            )
        return LabelledImages(_class_folder_items(path, synsets, IMAGENET), transform)
    devkit = _devkit_dir(path)
    if devkit is not None and _images_in(path):
        return LabelledImages(_imagenet_flat_items(path, devkit), transform)
    raise DatasetError(
        f"imagenet: {path} is in neither layout: expected one folder per synset (n01440764/, ...) or the flat "
        f"ILSVRC2012_val_*.JPEG files with {DEVKIT_DIR}/data/ (ground truth and meta.mat) beside them"
    )


def open_folder(path: Path, transform=None) -> LabelledImages:
    classes = _class_folders(path)
    if not classes:
        raise DatasetError(f"folder: {path} has no class sub-folders (expected PATH/<class>/<image>)")
    items = _class_folder_items(path, classes)
    if not items:
        raise DatasetError(f"folder: {path} has class folders but no images ({', '.join(_image_extensions())})")
    return LabelledImages(items, transform)


def validate(spec: DatasetSpec) -> None:
    """Open a dataset and decode its first image, before anything is measured: a wrong layout, an
    empty folder or an unreadable file is a DatasetError now, not a traceback after an hour."""
    if not spec.has_labels:
        return
    dataset = open_dataset(spec)
    if len(cast(Sized, dataset)) == 0:
        raise DatasetError(f"{spec.name}: {spec.path} holds no images")
    try:
        dataset[0]
    except CorruptImage as exc:
        raise DatasetError(f"{spec.name}: the first image {exc}") from None
    if spec.kind == FOLDER and len(_class_folders(spec.data_path)) < 2:
        raise DatasetError(f"folder: {spec.path} has one class folder; top-1 over one class says nothing (expected PATH/<class>/<image> for 2 or more classes)")


def num_classes(spec: DatasetSpec) -> int | None:
    if spec.kind == IMAGENET:
        return 1000
    if spec.kind == CIFAR10:
        return 10
    if spec.kind == FOLDER:
        return len(_class_folders(spec.data_path))
    return None


@dataclass(frozen=True)
class EvalTransform:
    """A model's eval transform, split where timm's own fast loader splits it (`use_prefetcher`).

    `per_image` (decode, resize, crop -> uint8 C x H x W) runs in the loader; `normalize` runs on
    whole batches on the device, so loaders move a quarter of the bytes and GPUs do the arithmetic.
    `normalize` applies ToTensor's and Normalize's float operations in their order (x / 255, - mean,
    / std), so its output is bit-identical to the unsplit transform's; calling the object on one
    image gives exactly what timm's `create_transform` gives."""

    per_image: Callable[[Any], torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        mean, std = _channel_stats(self.mean, self.std, str(batch.device))
        return batch.to(torch.float32).div_(255).sub_(mean).div_(std).to(dtype)

    def __call__(self, img) -> torch.Tensor:
        return self.normalize(self.per_image(img)[None])[0]


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a host-to-device copy inside the loop would wait for the queued batches.
    def column(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    return column(mean), column(std)


def eval_transform(spec: DatasetSpec, model: torch.nn.Module, input_size: tuple[int, int, int] | None = None) -> EvalTransform:
    """The model's own eval transform (timm data config); CIFAR-10 as the paper ran it.
    `input_size` (C, H, W) replaces the model's own resolution (an image-size case)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform, resolve_data_config
    from torchvision import transforms as T

    cfg = resolve_data_config({"input_size": input_size} if input_size else {}, model=model)
    if spec.kind == CIFAR10:
        # The paper: resize 32x32 images to the model's input size, ImageNet normalisation.
        resize = T.Resize(cfg["input_size"][1:], interpolation=T.InterpolationMode.BICUBIC)
        return EvalTransform(T.Compose([resize, T.PILToTensor()]), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    per_image = create_transform(**cfg, is_training=False, use_prefetcher=True)
    return EvalTransform(per_image, tuple(cfg["mean"]), tuple(cfg["std"]))


def sample_images(spec: DatasetSpec, model: torch.nn.Module, input_size: tuple[int, int, int], n: int) -> torch.Tensor:
    """The first n images of a dataset as the model sees them (fp32, normalised), repeated from the
    start where the dataset holds fewer: for calibrating and checking an optimised variant."""
    transform = eval_transform(spec, model, input_size)
    dataset = open_dataset(spec, transform.per_image)
    total = len(cast(Sized, dataset))
    batch = torch.stack([dataset[i % total][0] for i in range(n)])
    return transform.normalize(batch)


def open_dataset(spec: DatasetSpec, transform=None) -> Dataset:
    if spec.kind == IMAGENET:
        return open_imagenet(spec.data_path, transform)
    if spec.kind == CIFAR10:
        return open_cifar10(spec.data_path, "test", transform)
    if spec.kind == FOLDER:
        return open_folder(spec.data_path, transform)
    raise DatasetError("the synthetic dataset has no images to evaluate")


def subset_indices(total: int, limit: int | None) -> list[int]:
    """N indices evenly spaced over `total`: floor(i * total / N); all of them without a limit."""
    if not limit or limit >= total:
        return list(range(total))
    return [int(i * total / limit) for i in range(limit)]


def limited(dataset: Dataset, limit: int | None) -> Dataset:
    total = len(cast(Sized, dataset))
    indices = subset_indices(total, limit)
    return dataset if len(indices) == total else Subset(dataset, indices)
