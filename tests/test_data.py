import re

import fakes.datasets as make
import pytest
import timm
import torch

from pytest_e3p.models import datasets as data
from pytest_e3p.models.datasets import DatasetError


@pytest.fixture(scope="module")
def synsets():
    return data._imagenet_synsets()


def test_dataset_specs_parse_and_bad_ones_say_what_is_accepted(tmp_path):
    assert data.parse_datasets("synthetic") == [data.DatasetSpec("synthetic")]
    specs = data.parse_datasets(f"synthetic,cifar10={tmp_path}")
    assert [s.kind for s in specs] == ["synthetic", "cifar10"] and specs[1].path == tmp_path
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'; accepted: synthetic, imagenet=PATH"):
        data.parse_datasets("mnist")
    with pytest.raises(DatasetError, match="does not exist"):
        data.parse_datasets(f"imagenet={tmp_path / 'nope'}")
    with pytest.raises(DatasetError, match="needs a path"):
        data.parse_datasets("cifar10")


def test_cifar10_reads_the_official_python_batches(tmp_path):
    make.cifar_tree(tmp_path)
    ds = data.open_cifar10(tmp_path)
    assert len(ds) == 20 and ds.targets[:3] == [0, 1, 2]
    img, label = ds[3]
    assert img.size == (32, 32) and label == 3
    assert len(data.open_cifar10(tmp_path / "cifar-10-batches-py", "train")) == 50


def test_truncated_cifar_batch_and_bad_labels_name_the_file(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    make.cifar_batch(base / "test_batch")
    raw = (base / "test_batch").read_bytes()
    (base / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="test_batch is truncated"):
        data.open_cifar10(tmp_path)
    make.cifar_batch(base / "test_batch", labels=[0, 1, 12])
    with pytest.raises(DatasetError, match=r"cifar10: .*test_batch has labels out of range 0-9 \(first: 12\)"):
        data.open_cifar10(tmp_path)
    (base / "test_batch").unlink()
    with pytest.raises(DatasetError, match=r"test_batch does not exist \(expected the official cifar-10-batches-py/ folder\)"):
        data.open_cifar10(tmp_path)


def test_imagenet_synset_folders_use_timms_class_order(tmp_path, synsets):
    make.imagenet_folders(tmp_path, synsets, {synsets[0]: 2, synsets[999]: 1})
    ds = data.open_imagenet(tmp_path)
    assert ds.targets == [0, 0, 999]


def test_imagenet_with_missing_classes_is_refused(tmp_path, synsets):
    make.imagenet_folders(tmp_path, synsets[:998], {synsets[0]: 1})
    with pytest.raises(DatasetError, match="998 synset folders, expected 1000; missing 2"):
        data.open_imagenet(tmp_path)


def test_imagenet_flat_folder_with_the_devkit_maps_ids_through_meta_mat(tmp_path, synsets):
    # ground truth in the devkit's ILSVRC2012_IDs: 1 is the devkit's first synset = the last sorted one
    val, devkit_order = make.imagenet_flat(tmp_path, synsets, [1, 1000, 2])
    ds = data.open_imagenet(val)
    assert ds.targets == [999, 0, 998]


def test_a_folder_in_neither_layout_says_what_was_expected(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    expected = (
        f"imagenet: {tmp_path} is in neither layout: expected one folder per synset (n01440764/, ...) or the flat "
        "ILSVRC2012_val_*.JPEG files with ILSVRC2012_devkit_t12/data/ (ground truth and meta.mat) beside them"
    )
    with pytest.raises(DatasetError) as info:
        data.open_imagenet(tmp_path)
    assert str(info.value) == expected


def test_image_folder_classes_are_sorted_subfolders(tmp_path):
    make.image_folder(tmp_path, per_class=3)
    ds = data.open_folder(tmp_path)
    assert ds.targets == [0, 0, 0, 1, 1, 1]
    assert data.num_classes(data.DatasetSpec("folder", tmp_path)) == 2


def test_image_folder_images_and_class_indices_are_torchvisions_image_folders(tmp_path):
    # a checkpoint fine-tuned on torchvision's ImageFolder keeps its class indices here
    from torchvision.datasets import ImageFolder

    make.image_folder(tmp_path, per_class=2, classes=3)
    make.image(tmp_path / "class_1" / "nested" / "deep.png", make.COLOURS[1])  # sub-folders are walked
    (tmp_path / "class_0" / "notes.txt").write_text("not an image")
    ours = data.open_folder(tmp_path)
    theirs = ImageFolder(str(tmp_path))
    assert [(str(p), label) for p, label in ours.items] == theirs.samples
    assert ours.targets == theirs.targets == [0, 0, 1, 1, 1, 2, 2]


def truncated_png(path):
    make.image(path, make.COLOURS[0])
    path.write_bytes(path.read_bytes()[:80])
    return path


def test_an_image_that_cannot_be_decoded_is_one_line_naming_it(tmp_path):
    make.image_folder(tmp_path, per_class=2)
    bad = truncated_png(tmp_path / "class_1" / "img_1.png")
    ds = data.open_folder(tmp_path)
    with pytest.raises(data.CorruptImage) as info:
        ds[3]
    message = str(info.value)
    assert message.startswith(f"{bad} cannot be decoded (") and message.endswith("); remove or replace it")
    assert "\n" not in message
    assert ds[2][1] == 1  # the others still load


def test_validate_opens_the_set_and_decodes_its_first_image_before_anything_runs(tmp_path):
    data.validate(data.DatasetSpec("synthetic"))  # nothing to open
    make.image_folder(tmp_path / "good", per_class=1)
    data.validate(data.DatasetSpec("folder", tmp_path / "good"))
    make.image_folder(tmp_path / "bad", per_class=1)
    bad = truncated_png(tmp_path / "bad" / "class_0" / "img_0.png")
    with pytest.raises(DatasetError, match=f"^folder: the first image {re.escape(str(bad))} cannot be decoded .*; remove or replace it$"):
        data.validate(data.DatasetSpec("folder", tmp_path / "bad"))
    make.image_folder(tmp_path / "one", per_class=1, classes=1)
    with pytest.raises(DatasetError, match="has one class folder; top-1 over one class says nothing"):
        data.validate(data.DatasetSpec("folder", tmp_path / "one"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DatasetError, match="has class folders but no images"):
        data.validate(data.DatasetSpec("folder", tmp_path / "empty"))
    (tmp_path / "flat").mkdir()
    make.image(tmp_path / "flat" / "x.png", make.COLOURS[0])
    with pytest.raises(DatasetError, match=r"has no class sub-folders \(expected PATH/<class>/<image>\)"):
        data.validate(data.DatasetSpec("folder", tmp_path / "flat"))


def test_limit_is_a_fixed_evenly_spaced_subset():
    assert data.subset_indices(10, 4) == [0, 2, 5, 7]
    assert data.subset_indices(10, None) == list(range(10))
    assert data.subset_indices(50000, 1000)[:3] == [0, 50, 100]


@pytest.mark.parametrize("arch", ["levit_128s", "deit_tiny_patch16_224", "efficientvit_b0"])
def test_eval_transform_is_timms_own_for_the_model(tmp_path, arch):
    model = timm.create_model(arch, pretrained=False)
    ours = data.eval_transform(data.DatasetSpec("imagenet", tmp_path), model)
    theirs = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    img = make.image(tmp_path / "x.png", (120, 60, 30), size=300)
    from PIL import Image

    with Image.open(img) as im:
        assert torch.equal(ours(im.convert("RGB")), theirs(im.convert("RGB")))


def test_cifar_transform_resizes_to_the_input_size_with_imagenet_normalisation(tmp_path):
    model = timm.create_model("levit_128s", pretrained=False)
    t = data.eval_transform(data.DatasetSpec("cifar10", tmp_path), model)
    make.cifar_tree(tmp_path)
    x = t(data.open_cifar10(tmp_path)[0][0])
    assert x.shape == (3, 224, 224)
    assert -2.2 < float(x.min()) and float(x.max()) < 2.7  # normalised, not [0, 1]


def test_in_process_threaded_loading_keeps_images_and_labels_in_order(tmp_path):
    from pytest_e3p.measure.accuracy import default_workers, make_loader

    model = timm.create_model("test_vit", pretrained=False)
    transform = data.eval_transform(data.DatasetSpec("folder", tmp_path), model)
    ds = data.limited(data.open_folder(make.image_folder(tmp_path, per_class=5), transform.per_image), 7)
    expected = [ds[i] for i in range(len(ds))]
    batches = list(make_loader(ds, 3, num_workers=0))  # a decode thread per CPU
    assert [len(labels) for _, labels in batches] == [3, 3, 1]
    assert torch.equal(torch.cat([x for x, _ in batches]), torch.stack([x for x, _ in expected]))
    assert torch.cat([labels for _, labels in batches]).tolist() == [label for _, label in expected]
    assert batches[0][0].dtype == torch.uint8  # normalised on the device, not in the loader
    assert default_workers("cpu") == 0 and default_workers("cuda:0") >= 1
