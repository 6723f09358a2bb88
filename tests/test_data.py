import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.datasets import cifar10_batches, flat_folder, image_folder
from robustbench_vit.data.decode import apply_geometry
from robustbench_vit.data.labels import get_label_space
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.data.registry import open_dataset
from robustbench_vit.data.subset import read_subset, stratified_limit
from robustbench_vit.errors import DataError
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_imagenet

DC32 = DataConfig((3, 32, 32), 1.0, "bilinear", (0.5,) * 3, (0.5,) * 3)


def _folder(tmp_path, classes=("cat", "dog"), per=3, size=(40, 50)):
    rng = np.random.default_rng(0)
    for c in classes:
        (tmp_path / c).mkdir(parents=True)
        for i in range(per):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    return tmp_path


def test_image_folder_and_label_mapping(tmp_path):
    ds = image_folder(_folder(tmp_path))
    assert ds.classes == ("cat", "dog") and len(ds) == 6 and list(ds.targets) == [0, 0, 0, 1, 1, 1]
    cifar = get_label_space("cifar10")
    assert [cifar.index_of(c) for c in ds.classes] == [3, 5]
    assert ds.read(0).dtype == torch.uint8 and ds.read(0).shape == (3, 40, 50)


def test_a_class_name_two_classes_share_is_refused_never_resolved_to_the_first():
    """ImageNet-1k names two classes "crane" (the bird n02012849, the machine n03126707): a folder or label
    naming "crane" would have scored every machine crane as a bird; it is refused, naming both wnids."""
    from robustbench_vit.errors import ConfigError, DataError

    space = get_label_space("imagenet1k")
    with pytest.raises(DataError, match=r"'crane' names 2 classes .*n02012849, n03126707.*wnid"):
        space.index_of("crane")
    assert space.index_of("n03126707") == 517 and space.index_of("Tench, Tinca tinca") == 0
    with pytest.raises(DataError, match="is a number: labels name classes by wnid"):
        space.index_of("65")  # caffe's val.txt label: its order is not the devkit's
    with pytest.raises(ConfigError, match="names one class twice"):
        get_label_space(["cat", "dog", "Cat"])


def test_images_in_sub_folders_of_a_class_are_named_in_a_warning(tmp_path, caplog):
    """torchvision's ImageFolder walks into <class>/<sub>/; rbvit reads <class>/<image> only and says so,
    instead of evaluating fewer images than the user expects in silence. Hidden folders are not named."""
    root = _folder(tmp_path)
    (root / "dog" / "more").mkdir()
    (root / "cat" / ".ipynb_checkpoints").mkdir()
    assert len(image_folder(root)) == 6
    assert "1 class folders hold sub-folders (e.g. dog/more) whose images are not evaluated" in caplog.text
    caplog.clear()
    (root / "dog" / "more").rmdir()
    image_folder(root)
    assert "sub-folders" not in caplog.text


def test_unreadable_image_names_the_file(tmp_path):
    root = _folder(tmp_path)
    (root / "cat" / "broken.png").write_bytes(b"not an image")
    ds = image_folder(root)
    i = ds.items.index("cat/broken.png")
    with pytest.raises(DataError, match="broken.png"):
        ds.read(i)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "nope")


def test_flat_folder_with_label_file(tmp_path):
    (tmp_path / "img").mkdir()
    for i, _wnid in enumerate(["n01440764", "n01443537"]):
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "labels.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000000,n01440764 1 2 3 4\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\n"
    )
    name, ds = open_dataset(tmp_path / "img", labels=tmp_path / "labels.csv")
    assert name == "imagenet-val" and ds.classes == ("n01440764", "n01443537")
    assert list(ds.targets) == [0, 1]
    (tmp_path / "bad.txt").write_text("ILSVRC2012_val_00000000 n01440764\n")
    with pytest.raises(DataError, match="no label"):
        flat_folder(tmp_path / "img", tmp_path / "bad.txt")
    (tmp_path / "twice.txt").write_text(
        "ILSVRC2012_val_00000000 n01440764\nILSVRC2012_val_00000001 n01443537\nILSVRC2012_val_00000000 n01443537\n"
    )
    with pytest.raises(DataError, match="two labels"):  # never the last line silently winning
        flat_folder(tmp_path / "img", tmp_path / "twice.txt")
    # a file saved by a Windows editor (byte-order mark, CRLF) reads like any other
    (tmp_path / "bom.txt").write_bytes(
        "\ufeffILSVRC2012_val_00000000 n01440764\r\nILSVRC2012_val_00000001 n01443537\r\n".encode()
    )
    assert list(flat_folder(tmp_path / "img", tmp_path / "bom.txt").targets) == [0, 1]
    (tmp_path / "subset.txt").write_bytes("\ufeffILSVRC2012_val_00000001.JPEG\r\n".encode())
    assert read_subset(str(tmp_path / "subset.txt"), ds).tolist() == [1]
    # a path written as ./name or under the folder's absolute path names the same item; outside it, none
    img = tmp_path / "img"
    (tmp_path / "forms.txt").write_text(
        f"./ILSVRC2012_val_00000000.JPEG\n{img}/ILSVRC2012_val_00000001.JPEG\n"
    )
    assert read_subset(str(tmp_path / "forms.txt"), ds).tolist() == [0, 1]
    (tmp_path / "outside.txt").write_text(f"{tmp_path}/ILSVRC2012_val_00000001.JPEG\n")
    with pytest.raises(DataError, match="1 items not in"):
        read_subset(str(tmp_path / "outside.txt"), ds)


def test_a_labels_line_with_an_extension_labels_that_file(tmp_path):
    """``a.png cat`` labels a.png, not also a.jpg beside it (both were labelled by the stem ``a``); a line
    naming no file here still labels by its stem (Kaggle's ids, files converted to another format), and a
    stem given two labels that way is refused."""
    (tmp_path / "img").mkdir()
    for name in ("a.png", "a.jpg", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / name)
    (tmp_path / "own.txt").write_text("a.png cat\na.jpg dog\nb.JPEG cat\n")
    ds = flat_folder(tmp_path / "img", tmp_path / "own.txt")
    assert {it: ds.classes[t] for it, t in zip(ds.items, ds.targets)} == {
        "a.jpg": "dog",
        "a.png": "cat",
        "b.png": "cat",
    }
    (tmp_path / "one.txt").write_text("a.png cat\nb.png cat\n")
    with pytest.raises(DataError, match="no label for 1 images, e.g. a.jpg"):
        flat_folder(tmp_path / "img", tmp_path / "one.txt")
    (tmp_path / "ambiguous.txt").write_text("a.gif cat\na.bmp dog\nb.png cat\n")
    with pytest.raises(DataError, match="names a with several extensions"):
        flat_folder(tmp_path / "img", tmp_path / "ambiguous.txt")


def test_a_flat_folder_is_named_from_its_labels_classes(tmp_path):
    """CIFAR images with a labels file are cifar10 (never imagenet-val, which would put their numbers in
    ImageNet's column of a board); other class names are a plain folder; --dataset still decides."""
    from robustbench_vit.data.labels import CIFAR10_CLASSES

    (tmp_path / "img").mkdir()
    for i in range(len(CIFAR10_CLASSES)):
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "cifar.txt").write_text("".join(f"{i}.png {c}\n" for i, c in enumerate(CIFAR10_CLASSES)))
    assert open_dataset(tmp_path / "img", labels=tmp_path / "cifar.txt")[0] == "cifar10"
    (tmp_path / "own.txt").write_text("".join(f"{i}.png kind{i % 3}\n" for i in range(10)))
    assert open_dataset(tmp_path / "img", labels=tmp_path / "own.txt")[0] == "folder"
    assert (
        open_dataset(tmp_path / "img", labels=tmp_path / "own.txt", dataset="imagenet-val")[0]
        == "imagenet-val"
    )


def test_a_flat_imagenet_a_folder_is_scored_200_way(tmp_path):
    """ImageNet-A's images in one flat folder with a labels file naming exactly its 200 classes are
    imagenet-a, scored over its 200 classes as its class-folder layout is (they were imagenet-val,
    1000-way); a flat folder named like it but holding only some of its classes is refused."""
    from robustbench_vit.data.registry import subset_synsets

    wnids = subset_synsets("imagenet-a")[0]
    (tmp_path / "imagenet-a").mkdir()
    for i in range(len(wnids)):
        Image.new("RGB", (4, 4)).save(tmp_path / "imagenet-a" / f"{i}.png")
    (tmp_path / "all.txt").write_text("".join(f"{i}.png {w}\n" for i, w in enumerate(wnids)))
    assert open_dataset(tmp_path / "imagenet-a", labels=tmp_path / "all.txt")[0] == "imagenet-a"
    (tmp_path / "some.txt").write_text("".join(f"{i}.png {wnids[i % 150]}\n" for i in range(len(wnids))))
    with pytest.raises(DataError, match="holds 150 of its 200 class"):
        open_dataset(tmp_path / "imagenet-a", labels=tmp_path / "some.txt")


def test_cifar_python_batches_are_read_without_unpickling_code(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (5, 3072), dtype=np.uint8)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 3, 9]}, f)
    name, ds = open_dataset(tmp_path)
    assert name == "cifar10" and len(ds) == 5 and ds.targets[-1] == 9
    assert torch.equal(ds.read(1), torch.from_numpy(data[1].reshape(3, 32, 32)))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing"):
        cifar10_batches(tmp_path)


def test_stratified_limit_is_balanced_seeded_and_sorted():
    targets = np.repeat(np.arange(10), 100)
    a = stratified_limit(targets, 50, seed=0)
    assert len(a) == 50 and len(set(a)) == 50 and np.all(np.diff(a) > 0)
    assert np.bincount(targets[a], minlength=10).tolist() == [5] * 10
    assert np.array_equal(a, stratified_limit(targets, 50, seed=0))
    assert not np.array_equal(a, stratified_limit(targets, 50, seed=1))


def test_subset_file(tmp_path):
    ds = image_folder(_folder(tmp_path / "d"))
    (tmp_path / "ids.txt").write_text("# two images\ndog/1.png\ncat/0.png\n")
    assert read_subset(str(tmp_path / "ids.txt"), ds).tolist() == [0, 4]
    (tmp_path / "bad.txt").write_text("cow/0.png\n")
    with pytest.raises(DataError, match="not in"):
        read_subset(str(tmp_path / "bad.txt"), ds)
    (tmp_path / "twice.txt").write_text("dog/1.png\ncat/0.png\ndog/1.png\n")
    with pytest.raises(DataError, match="1 items more than once, e.g. dog/1.png"):
        read_subset(str(tmp_path / "twice.txt"), ds)


@needs_cifar
def test_shipped_subset_resolves_on_cifar():
    _, ds = open_dataset(CIFAR10_TEST)
    idx = read_subset("cifar10-test-1000", ds)
    assert len(idx) == 1000 and np.bincount(ds.targets[idx]).tolist() == [100] * 10


def test_geometry_identity_and_resize_rule():
    img = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    assert apply_geometry(img, DC32) is img
    dc = DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3)
    out = apply_geometry(torch.randint(0, 255, (3, 300, 400), dtype=torch.uint8), dc)
    assert out.shape == (3, 224, 224)


def test_cache_fills_only_requested_and_resumes(tmp_path):
    ds = image_folder(_folder(tmp_path / "d", per=10))
    cache = ImageCache(ds, DC32, tmp_path / "cache")
    assert cache.ensure([0, 5]) == 2
    again = ImageCache(ds, DC32, tmp_path / "cache")  # a new process sees what was filled
    assert again.filled.sum() == 2 and again.ensure([0, 5, 7]) == 1
    b = again.batch([0, 5, 7])
    assert b.shape == (3, 3, 32, 32) and b.dtype == torch.uint8
    assert torch.equal(b[2], apply_geometry(ds.read(7), DC32))


def test_cache_refuses_to_read_images_it_has_not_decoded(tmp_path):
    """An unfilled slot holds zeros, which would pass for a black image: reading one is an error, and a
    slot another process filled meanwhile is read (the mask is reloaded first)."""
    ds = image_folder(_folder(tmp_path / "d", per=10))
    cache = ImageCache(ds, DC32, tmp_path / "cache")
    cache.ensure([0, 1])
    with pytest.raises(LookupError, match="not computed yet"):
        cache.batch([1, 2])
    with pytest.raises(LookupError, match="first 3"):
        cache.batch([0, 3], out=torch.empty(2, 3, 32, 32, dtype=torch.uint8))
    ImageCache(ds, DC32, tmp_path / "cache").ensure([2])  # another process
    assert torch.equal(cache.batch([1, 2])[1], apply_geometry(ds.read(2), DC32))


def test_cache_key_changes_with_geometry(tmp_path):
    ds = image_folder(_folder(tmp_path / "d"))
    a = ImageCache(ds, DC32, tmp_path / "c")
    b = ImageCache(ds, DC32.replace(interpolation="bicubic"), tmp_path / "c")
    assert a.dir != b.dir


def test_robustbench_subsets_name_their_images(tmp_path):
    """RobustBench's evaluation sets as --subset names: CIFAR-10's first 1,000 / 10,000 test images of the
    batch layout (in batch order) and its 5,000-image ImageNet list (wnid/file ids of a val folder)."""
    from robustbench_vit.data.subset import builtin_subsets

    assert {"robustbench-cifar10-1000", "robustbench-cifar10-10000", "robustbench-imagenet-5000"} <= set(
        builtin_subsets()
    )
    data = np.random.default_rng(0).integers(0, 255, (1200, 3072), dtype=np.uint8)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [i % 10 for i in range(1200)]}, f)
    _, ds = open_dataset(tmp_path)
    assert read_subset("robustbench-cifar10-1000", ds).tolist() == list(range(1000))
    with pytest.raises(DataError, match="8800 items not in"):
        read_subset("robustbench-cifar10-10000", ds)  # a 1,200-image batch lacks the rest
    from importlib import resources

    text = (resources.files("robustbench_vit.subsets") / "robustbench-imagenet-5000.txt").read_text()
    ids = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(ids) == len(set(ids)) == 5000
    assert all(len(i.split("/")[0]) == 9 and i.split("/")[1].startswith("ILSVRC2012_val_") for i in ids)


def _v2_layout(tmp_path, wnid_src):
    """ImageNet-V2's release layout: folder ``i`` holds ImageNet-1k class ``i`` (links to real images)."""
    wnids = get_label_space("imagenet1k").wnids
    root = tmp_path / "imagenetv2-matched-frequency"
    for i, w in enumerate(wnids):
        (root / str(i)).mkdir(parents=True)
        for f in sorted((wnid_src / w).iterdir()):
            (root / str(i) / f"{i}-{f.name}").symlink_to(f)
    return root


@needs_imagenet
def test_imagenet_v2_class_index_folders_map_to_imagenet_classes(tmp_path):
    """Folders 0..999 are ImageNet-1k class indices (ImageNet-V2's release), not class names: each image
    gets the label of its wnid, and the rows are named imagenet-v2."""
    root = _v2_layout(tmp_path, IMAGENET_SAMPLES)
    name, ds = open_dataset(root)
    _, ref = open_dataset(IMAGENET_SAMPLES)
    space = get_label_space("imagenet1k")
    by_file = {it.split("/")[1]: space.index_of(ref.class_of(i)) for i, it in enumerate(ref.items)}
    got = {it.split("/")[1].split("-", 1)[1]: space.index_of(ds.class_of(i)) for i, it in enumerate(ds.items)}
    assert name == "imagenet-v2" and len(ds) == len(ref) == 1000 and got == by_file
    assert open_dataset(root, dataset="imagenet-v2")[0] == "imagenet-v2"
    assert open_dataset(IMAGENET_SAMPLES, dataset="imagenet-v2")[0] == "imagenet-v2"  # wnid folders too
    (tmp_path / "bad" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "bad" / "cats" / "a.png")
    with pytest.raises(DataError, match="0..999"):
        open_dataset(tmp_path / "bad", dataset="imagenet-v2")


@needs_imagenet
@pytest.mark.parametrize(
    "folder, name",
    [
        ("imagenet-sketch", "imagenet-sketch"),
        ("sketch", "imagenet-sketch"),
        ("ImageNetV2-wnids", "imagenet-v2"),
        ("val", "imagenet-val"),
    ],
)
def test_wnid_folders_named_like_another_benchmark_are_named_so(tmp_path, folder, name):
    """ImageNet-Sketch (and V2 renamed to wnids) share ImageNet val's layout: a folder named like them is
    evaluated under their name, so its rows never pass for ImageNet-val numbers (--dataset still wins)."""
    root = tmp_path / folder
    for w in sorted(p.name for p in IMAGENET_SAMPLES.iterdir())[:5]:
        (root / w).mkdir(parents=True)
        for f in (IMAGENET_SAMPLES / w).iterdir():
            (root / w / f.name).symlink_to(f)
    assert open_dataset(root)[0] == name
    assert open_dataset(root, dataset="imagenet-val")[0] == "imagenet-val"


def test_hidden_files_are_not_images(tmp_path, caplog):
    """A folder copied from macOS holds a ``._<name>`` resource fork beside every image: it is left out with
    one warning naming how many, never decoded (it is not an image) nor counted."""
    import logging

    for cls in ("cat", "dog"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "d" / cls / "a.png")
        (tmp_path / "d" / cls / "._a.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    with caplog.at_level(logging.WARNING, logger="robustbench_vit.data.datasets"):
        ds = image_folder(tmp_path / "d")
    assert ds.items == ["cat/a.png", "dog/a.png"]
    assert "2 hidden files" in caplog.text and "cat/._a.png" in caplog.text


def test_every_name_of_a_read_image_type_counts_and_other_image_types_are_named(tmp_path, caplog):
    """JPEG's other names (``.jfif``, ``.jpe``) and every Netpbm file are read as images, decoded like their
    usual names; an image of a type rbvit does not read (AVIF, TGA) is left out with a warning naming it,
    never dropped silently (the row's n would shrink with nothing said); other files are not mentioned."""
    import logging

    from robustbench_vit.data.decode import read_rgb

    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    rgb = Image.fromarray(np.stack([gray, 255 - gray, gray // 2], -1))
    (tmp_path / "d" / "cat").mkdir(parents=True)
    (tmp_path / "d" / "dog").mkdir()
    rgb.save(tmp_path / "d" / "cat" / "a.jfif", format="JPEG", quality=95)
    rgb.save(tmp_path / "d" / "cat" / "b.jpe", format="JPEG", quality=95)
    rgb.save(tmp_path / "d" / "cat" / "c.pnm", format="PPM")
    Image.fromarray(gray).save(tmp_path / "d" / "dog" / "d.pgm", format="PPM")
    Image.fromarray(gray).convert("1").save(tmp_path / "d" / "dog" / "e.pbm", format="PPM")
    rgb.save(tmp_path / "d" / "dog" / "f.tga", format="TGA")
    (tmp_path / "d" / "dog" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="robustbench_vit.data.datasets"):
        ds = image_folder(tmp_path / "d")
    assert ds.items == ["cat/a.jfif", "cat/b.jpe", "cat/c.pnm", "dog/d.pgm", "dog/e.pbm"]
    assert "1 image files of a type rbvit does not read (e.g. dog/f.tga)" in caplog.text
    assert "notes.txt" not in caplog.text
    pixels = {name: read_rgb(tmp_path / "d" / name) for name in ds.items}
    assert torch.equal(pixels["cat/c.pnm"], torch.from_numpy(np.array(rgb)).permute(2, 0, 1))
    assert torch.equal(pixels["dog/d.pgm"], torch.from_numpy(gray).expand(3, 8, 8))
    binary = np.asarray(Image.fromarray(gray).convert("1").convert("RGB"))
    assert torch.equal(pixels["dog/e.pbm"], torch.from_numpy(binary).permute(2, 0, 1))
    jpeg = torch.from_numpy(np.array(Image.open(tmp_path / "d" / "cat" / "a.jfif").convert("RGB")))
    assert (pixels["cat/a.jfif"].int() - jpeg.permute(2, 0, 1).int()).abs().max() <= 1


def test_a_class_outside_the_label_space_is_named_with_how_the_space_names_its_classes():
    """The one-line error says how the model's classes are named and, for an upper-case wnid or a misspelt
    CIFAR class, which class was likely meant."""
    imagenet, cifar = get_label_space("imagenet1k"), get_label_space("cifar10")
    with pytest.raises(
        DataError, match=r"by wnid, like n01440764.*did you mean 'n01443537'\? wnids are lower"
    ):
        imagenet.index_of("N01443537")
    with pytest.raises(DataError, match=r"by wnid, like n01440764, or by name, like 'tench, Tinca tinca'\)$"):
        imagenet.index_of("airplane")  # a CIFAR folder: no near ImageNet name is offered as the class meant
    with pytest.raises(DataError, match=r"its classes: airplane, .*truck; did you mean 'airplane'\?"):
        cifar.index_of("airplan")


def test_a_link_to_a_missing_image_is_an_error_not_a_smaller_set(tmp_path):
    """A folder of links whose targets are partly gone (an unmounted disk, a moved folder) used to be
    evaluated without those images, n shrinking silently: the broken link is named instead."""
    (tmp_path / "d" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "d" / "cat" / "a.png").symlink_to(tmp_path / "a.png")
    assert image_folder(tmp_path / "d").items == ["cat/a.png"]
    (tmp_path / "d" / "cat" / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"cat/b\.png is a link to a missing file .*gone\.png"):
        image_folder(tmp_path / "d")
    (tmp_path / "d" / "cat" / "b.png").unlink()
    (tmp_path / "d" / "dog").symlink_to(tmp_path / "gone", target_is_directory=True)  # a whole class
    with pytest.raises(DataError, match=r"d/dog is a link to a missing folder"):
        image_folder(tmp_path / "d")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "c.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "labels.txt").write_text("c.png cat\n")
    with pytest.raises(DataError, match="link to a missing file"):
        flat_folder(tmp_path / "flat", tmp_path / "labels.txt")


def test_names_macos_stored_decomposed_are_the_names_typed(tmp_path):
    """macOS stores file and folder names decomposed (``e`` + combining acute), a labels file or a card types
    them composed: the two spellings of ``café`` are one name, for a card's classes and a flat folder's
    labels, where they were "not in the label space" and "no label for" errors."""
    import unicodedata

    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    space = get_label_space([composed, "thé"])
    assert space.index_of(decomposed) == 0 and space.index_of("thé") == 1

    root = tmp_path / "flat"
    root.mkdir()
    for k, name in enumerate((decomposed, unicodedata.normalize("NFD", "thé"))):
        Image.fromarray(np.full((8, 8, 3), k * 50, np.uint8)).save(root / f"{name}-{k}.png")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{composed}-0.png {composed}\n{unicodedata.normalize('NFD', 'thé')}-1.png thé\n")
    ds = flat_folder(root, labels)
    assert ds.classes == (composed, "thé")  # one spelling of each class, whatever the lines used
    assert [ds.classes[t] for t in ds.targets] == [composed, "thé"]
