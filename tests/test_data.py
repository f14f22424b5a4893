import pytest
import timm
import torch

import datasets as make
from pytest_e3p import data
from pytest_e3p.data import DatasetError


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
    with pytest.raises(DatasetError, match="labels out of range 0-9"):
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
    with pytest.raises(DatasetError, match="neither layout"):
        data.open_imagenet(tmp_path)


def test_image_folder_classes_are_sorted_subfolders(tmp_path):
    make.image_folder(tmp_path, per_class=3)
    ds = data.open_folder(tmp_path)
    assert ds.targets == [0, 0, 0, 1, 1, 1]
    assert data.num_classes(data.DatasetSpec("folder", tmp_path)) == 2


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
    from pytest_e3p.accuracy import default_workers, make_loader

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
