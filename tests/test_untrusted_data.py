"""Datasets, checkpoints and image sizes from outside: a hostile or oversized file is refused in one
line naming it, before it runs code, hangs the listing or allocates what the machine does not have."""

import builtins
import os
import re
import threading
import warnings

import fakes.datasets as make
import pytest
import timm
import timm.layers.config
import torch
from PIL import Image

from pytest_e3p.models import build
from pytest_e3p.models import datasets as data
from pytest_e3p.models.build import ImageSizeError, WeightsError, build_model
from pytest_e3p.models.datasets import DatasetError
from pytest_e3p.models.zoo import parse_model

# --- CIFAR-10 batches: unpickled with only the globals a real batch references


@pytest.mark.parametrize(
    ("call", "refused"),
    [
        (lambda marker: (os.system, f"touch {marker}"), "posix.system"),
        # protocol 2 names Python 2's module, as the file's references are named
        (lambda marker: (builtins.exec, f"open({str(marker)!r}, 'w').close()"), "__builtin__.exec"),
    ],
    ids=["os.system", "exec"],
)
def test_a_cifar_batch_that_would_run_code_is_refused_before_it_runs(tmp_path, call, refused):
    marker = tmp_path / "ran"
    batch = make.hostile_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", *call(marker))
    with pytest.raises(DatasetError) as info:
        data.open_cifar10(tmp_path)
    assert str(info.value) == (
        f"cifar10: refused to load {batch}: it references {refused}, which a CIFAR-10 batch never holds; replace it with the official download"
    )
    assert not marker.exists()  # refused before the call, not after it


def test_the_training_batches_that_finetune_reads_are_refused_alike(tmp_path):
    # pytest_e3p.finetune opens the train split through open_cifar10, batch by batch
    make.cifar_tree(tmp_path)
    marker = tmp_path / "ran"
    make.hostile_cifar_batch(tmp_path / "cifar-10-batches-py" / "data_batch_3", os.system, f"touch {marker}")
    with pytest.raises(DatasetError, match=r"refused to load .*data_batch_3: it references posix\.system"):
        data.open_cifar10(tmp_path, "train")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5], ids=["protocol 2, as the official batches", "protocol 5, a batch Python 3 wrote again"])
def test_a_real_format_cifar_batch_still_loads(tmp_path, protocol):
    written, labels = make.cifar_batch(tmp_path / "test_batch", n=12, protocol=protocol)
    images, read_labels = data.read_cifar_batch(tmp_path / "test_batch")
    assert read_labels == labels
    assert (images == written.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)).all()


def test_a_batch_naming_numpy_1s_module_as_the_official_files_do_loads_without_warnings(tmp_path):
    # The official batches were pickled by Python 2's cPickle with numpy 1.x: their array is rebuilt
    # by the global "numpy.core.multiarray _reconstruct" from "numpy ndarray" and "numpy dtype", as in
    # the old Python 2 pickles numpy keeps in numpy/_core/tests/test_multiarray.py (GLOBAL opcode:
    # module and name, newline-ended); numpy 2 writes numpy._core. Same bytes otherwise.
    written, labels = make.cifar_batch(tmp_path / "test_batch", n=4)
    raw = (tmp_path / "test_batch").read_bytes()
    assert b"cnumpy._core.multiarray\n_reconstruct\n" in raw
    (tmp_path / "test_batch").write_bytes(raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy 2 deprecates importing numpy.core: not imported
        images, read_labels = data.read_cifar_batch(tmp_path / "test_batch")
    assert read_labels == labels and images.shape == (4, 32, 32, 3)


# --- checkpoints: a refused global is named, and loading it unsafely is never suggested


class Custom:
    """An object a checkpoint may hold besides tensors: a class of the code that saved it."""


class RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_holding_a_custom_object_names_the_global_and_no_unsafe_advice(tmp_path):
    path = tmp_path / "test_vit_cifar10.pth"
    torch.save({"state_dict": timm.create_model("test_vit").state_dict(), "extra": Custom()}, path)
    with pytest.raises(WeightsError) as info:
        build_model(parse_model("test_vit"), checkpoint=path)
    assert str(info.value) == (
        f"checkpoint {path} references the global '{Custom.__module__}.Custom', which weights-only loading refuses; "
        "save a plain state_dict of tensors with torch.save(model.state_dict(), path)"
    )


def test_a_checkpoint_calling_a_blocked_module_names_it_and_no_unsafe_advice(tmp_path):
    # torch/_weights_only_unpickler.py blocks os/posix/nt/sys; torch/serialization.py then leads its
    # message with "Re-running `torch.load` with `weights_only` set to `False` will likely succeed"
    path, marker = tmp_path / "evil.pth", tmp_path / "ran"
    torch.save({"w": torch.zeros(2), "x": RunsCommand(marker)}, path)
    with pytest.raises(WeightsError) as info:
        build_model(parse_model("test_vit"), checkpoint=path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} references the global 'posix.system', which weights-only loading refuses; ")
    assert "False" not in message and "likely succeed" not in message and "\n" not in message
    assert not marker.exists()


# --- images above PIL's decompression-bomb limit


@pytest.fixture
def small_limit(monkeypatch):
    """PIL's limit lowered so a 64 x 64 image (4096 pixels) crosses it: PIL raises
    DecompressionBombError above 2 x MAX_IMAGE_PIXELS and warns above 1 x (PIL/Image.py)."""

    def set_limit(pixels):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels)

    return set_limit


def test_an_image_above_the_decompression_bomb_limit_is_one_line_naming_it(tmp_path, small_limit):
    make.image_folder(tmp_path, per_class=1)
    big = make.image(tmp_path / "class_1" / "big.png", make.COLOURS[1], size=64)
    small_limit(1500)
    ds = data.open_folder(tmp_path)
    with pytest.raises(data.CorruptImage) as info:
        ds[[str(p) for p, _ in ds.items].index(str(big))]
    assert str(info.value) == (
        f"{big} cannot be decoded within PIL's decompression-bomb limit (Image size (4096 pixels) exceeds limit of 3000 pixels, "
        "could be decompression bomb DOS attack.); remove it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    )
    first = make.image(tmp_path / "first" / "class_0" / "a.png", make.COLOURS[0], size=64)
    make.image(tmp_path / "first" / "class_1" / "a.png", make.COLOURS[1], size=8)
    with pytest.raises(DatasetError, match=f"^folder: the first image {re.escape(str(first))} cannot be decoded within PIL's decompression-bomb limit"):
        data.validate(data.DatasetSpec("folder", tmp_path / "first"))


def test_an_image_between_one_and_two_times_the_limit_loads_with_pils_warning_or_is_refused_where_warnings_are_errors(tmp_path, small_limit):
    make.image_folder(tmp_path, per_class=1, classes=1)
    big = make.image(tmp_path / "class_0" / "big.png", make.COLOURS[0], size=64)
    small_limit(3000)  # 4096 pixels: above the limit, below twice it
    ds = data.open_folder(tmp_path)
    index = [str(p) for p, _ in ds.items].index(str(big))
    with pytest.warns(Image.DecompressionBombWarning):
        img, _ = ds[index]
    assert img.size == (64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under pytest -W error: the warning is raised
        with pytest.raises(
            data.CorruptImage, match=f"^{re.escape(str(big))} cannot be decoded within PIL's decompression-bomb limit .*exceeds limit of 3000 pixels"
        ):
            ds[index]


# --- symlink loops in a folder dataset


def listing_of(path, timeout_s=60.0):
    """open_folder(path) in a thread: a listing that never ends fails the test instead of hanging it
    (the thread is left behind: a walk cannot be stopped)."""
    outcome = {}

    def run():
        try:
            outcome["items"] = data.open_folder(path).items
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"listing {path} did not finish in {timeout_s:.0f} s")
    return outcome


def test_two_directory_links_to_their_own_folder_are_refused_not_walked_forever(tmp_path):
    # os.walk(followlinks=True), which torchvision's make_dataset uses, doubles its walk at each level
    make.image_folder(tmp_path, per_class=1)
    os.symlink(".", tmp_path / "class_0" / "x")
    os.symlink(".", tmp_path / "class_0" / "y")
    error = listing_of(tmp_path).get("error")
    assert isinstance(error, DatasetError)
    assert re.fullmatch(
        f"folder: {re.escape(str(tmp_path / 'class_0'))}/[xy] is a symlink loop: it leads back to {re.escape(str(tmp_path / 'class_0'))}, "
        "which holds it; remove the link",
        str(error),
    )


def test_a_link_to_a_folder_above_is_refused_not_listed_forty_times(tmp_path):
    make.image_folder(tmp_path, per_class=1)
    os.symlink("..", tmp_path / "class_0" / "up")
    error = listing_of(tmp_path).get("error")
    assert str(error) == f"folder: {tmp_path / 'class_0' / 'up'} is a symlink loop: it leads back to {tmp_path}, which holds it; remove the link"
    (tmp_path / "class_0" / "up").unlink()
    os.symlink(".", tmp_path / "class_2")  # a class folder that is the dataset folder itself
    error = listing_of(tmp_path).get("error")
    assert str(error) == f"folder: {tmp_path / 'class_2'} is a symlink loop: it leads back to {tmp_path}, which holds it; remove the link"


def test_looping_and_broken_image_links_are_reported_not_listed(tmp_path):
    make.image_folder(tmp_path, per_class=1)
    os.symlink("b.png", tmp_path / "class_0" / "a.png")
    os.symlink("a.png", tmp_path / "class_0" / "b.png")
    error = listing_of(tmp_path).get("error")
    assert re.fullmatch(
        f"folder: {re.escape(str(tmp_path / 'class_0'))}/[ab].png is a symlink loop \\(Too many levels of symbolic links\\); remove it or point it at an image",
        str(error),
    )
    for name in ("a.png", "b.png"):
        (tmp_path / "class_0" / name).unlink()
    os.symlink("gone.png", tmp_path / "class_1" / "c.png")
    error = listing_of(tmp_path).get("error")
    assert str(error) == f"folder: {tmp_path / 'class_1' / 'c.png'} is a broken symlink (No such file or directory); remove it or point it at an image"


def test_linked_folders_without_a_loop_are_listed_as_image_folder_lists_them(tmp_path):
    from torchvision.datasets import ImageFolder

    root = make.image_folder(tmp_path / "set", per_class=2)
    make.image(tmp_path / "elsewhere" / "z.png", make.COLOURS[2])
    os.symlink(tmp_path / "elsewhere", root / "class_1" / "more")  # a link out of the set: followed
    os.symlink("../class_1", root / "class_0" / "sibling")  # a link across classes: no loop, followed
    ours = listing_of(root)["items"]
    assert [(str(p), label) for p, label in ours] == ImageFolder(str(root)).samples
    assert len(ours) == 8  # class_0: 2 + class_1 linked (2 + z.png); class_1: 2 + z.png


# --- image sizes: bounded by the model's patch size and by the memory the device has


@pytest.fixture
def meminfo(tmp_path, monkeypatch):
    """/proc/meminfo under E3P_SYSFS_ROOT, in the kernel's layout (Documentation/filesystems/proc.rst)."""

    def available(kib):
        proc = tmp_path / "root" / "proc"
        proc.mkdir(parents=True, exist_ok=True)
        (proc / "meminfo").write_text(f"MemTotal:       16303312 kB\nMemFree:          523412 kB\nMemAvailable:   {kib:>8} kB\nBuffers:          123456 kB\n")
        monkeypatch.setenv("E3P_SYSFS_ROOT", str(tmp_path / "root"))

    return available


def test_a_size_timm_would_crop_unseen_is_one_line_before_anything_is_built(meminfo):
    meminfo(64 * 1024 * 1024)
    # timm builds deit for 225 px and runs it: its strict PatchEmbed checks the input is 225 px, and
    # the stride-16 convolution leaves the last pixel row and column out of every patch
    with pytest.raises(ImageSizeError) as info:
        build_model(parse_model("deit_tiny_patch16_224"), "random", image_size=225)
    assert str(info.value) == (
        "image size 225 is not a multiple of deit_tiny_patch16_224's patch size 16 (timm would drop the last 1 pixel rows and columns unseen); "
        "use 224 or 240 for --e3p-image-size"
    )
    with pytest.raises(ImageSizeError, match="^image size 8 is not a multiple of deit_tiny_patch16_224's patch size 16 .*; use 16 for"):
        build_model(parse_model("deit_tiny_patch16_224"), "random", image_size=8)
    with pytest.raises(ImageSizeError, match=r"^image size -224 is not a number of pixels; use a positive --e3p-image-size$"):
        build_model(parse_model("deit_tiny_patch16_224"), "random", image_size=-224)
    net, _ = build_model(parse_model("deit_tiny_patch16_224"), "random", image_size=240)
    assert net.patch_embed.grid_size == (15, 15)
    # test_vit's PatchEmbed is not strict: it asserts divisibility when run, the caller's check
    # (a skipped case, tests/test_profile.py)
    build_model(parse_model("test_vit"), "random", image_size=161)


def test_a_size_whose_weights_and_activations_exceed_the_hosts_memory_is_refused_before_they_are_allocated(meminfo):
    # test_vit at 16000 px: 1000 x 1000 patches + 1 class token = 1,000,001 tokens of 64 dims, its
    # MLP 192 wide: a position embedding of 1,000,001 x 64 x 4 bytes = 0.24 GiB, one block's input,
    # output and MLP hidden layer 1,000,001 x (64 + 64 + 192) x 4 bytes = 1.19 GiB; 128 MiB available
    meminfo(128 * 1024)
    with pytest.raises(ImageSizeError) as info:
        build_model(parse_model("test_vit"), "random", image_size=16000)
    assert str(info.value) == (
        "image size 16000 needs about 1.4 GiB for test_vit (parameters and buffers 0.2 GiB, one block's activations for 1 image 1.2 GiB, "
        "an estimate) but the host has 0.1 GiB available; use a smaller --e3p-image-size"
    )
    need = build.image_size_need(build._meta_model("test_vit", 16000))
    tokens = 1000 * 1000 + 1
    assert tokens * 64 * 4 < need.weights_bytes < tokens * 64 * 4 * 1.01
    assert need.activation_bytes == tokens * (64 + 64 + 192) * 4 and need.attention_bytes == 0


def test_a_gpu_without_room_for_the_attention_map_is_named(meminfo, monkeypatch):
    meminfo(64 * 1024 * 1024)
    # timm's Attention reads use_fused_attn() when built: unfused, it holds tokens^2 x heads scores
    monkeypatch.setattr(timm.layers.config, "_USE_FUSED_ATTN", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * 1024**3, 80 * 1024**3))  # free, total
    # 1600 px: 10,001 tokens; 10,001^2 x 2 heads x 8 images x 4 bytes = 5.96 GiB of attention map,
    # 10,001 x 320 x 8 x 4 bytes = 0.10 GiB of one block's activations
    with pytest.raises(ImageSizeError) as info:
        build.check_image_size("test_vit", 1600, "cuda:0", batch_size=8)
    assert str(info.value) == (
        "image size 1600 needs about 6.1 GiB for test_vit (parameters and buffers 0.0 GiB, one block's activations for 8 images 0.1 GiB, "
        "one block's attention map for 8 images 6.0 GiB, an estimate) but the GPU cuda:0 has 1.0 GiB available; use a smaller --e3p-image-size"
    )
    build.check_image_size("test_vit", 1600, "cpu", batch_size=8)  # the host has 64 GiB
    monkeypatch.setattr(timm.layers.config, "_USE_FUSED_ATTN", 1)
    build.check_image_size("test_vit", 1600, "cuda:0", batch_size=8)  # fused attention holds no map
