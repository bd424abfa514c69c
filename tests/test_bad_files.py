"""Bad files and folders on disk (issue 16, items 3, 4, 13 and 16): link loops, FIFOs,
EXIF orientation, one pixel limit, folder names a file system cannot hold, an empty
test split, names that are not UTF-8. Every file is real, written under tmp_path."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet_core import datasets, imagefiles, predict
from tests import fixtures

REPO = Path(__file__).resolve().parent.parent

# Loads a folder in a child process, so that a walk that never ends or an open()
# that blocks fails the test by its timeout instead of hanging pytest.
_LOAD = """
import json, sys
from alexnet_core import datasets
try:
    ds = datasets.load_dataset("folder", folder=sys.argv[1], image_size=8, cache=False)
except (ValueError, datasets.DatasetUnavailable) as e:
    print(json.dumps({"error": str(e)}))
else:
    print(json.dumps({"classes": ds.classes, "images": len(ds.train_y) + len(ds.test_y)}))
"""


def _load_in_child(folder: Path, data_root: Path, timeout: float = 90) -> dict:
    env = {**os.environ, "ALEXNET_LAB_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD, str(folder)], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {folder} did not finish in {timeout} s")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------- item 3: links and FIFOs


def test_a_symlink_loop_loads_each_image_once(lab_data_root):
    fixtures.write_image_folder(lab_data_root / "loop", {"cats": 3, "dogs": 3})
    (lab_data_root / "loop" / "cats" / "again").symlink_to("..", target_is_directory=True)
    (lab_data_root / "loop" / "dogs" / "self").symlink_to(".", target_is_directory=True)
    ds = datasets.load_dataset("folder", folder="loop", image_size=8, cache=False)
    assert ds.classes == ["cats", "dogs"]
    assert len(ds.train_y) + len(ds.test_y) == 6


def test_a_branching_symlink_loop_finishes_with_each_image_once(lab_data_root):
    fixtures.write_image_folder(lab_data_root / "maze", {"cats": 3, "dogs": 3})
    for cls in ("cats", "dogs"):
        for name in ("a", "b", "c"):
            (lab_data_root / "maze" / cls / name).symlink_to("..", target_is_directory=True)
    assert _load_in_child(lab_data_root / "maze", lab_data_root) == {"classes": ["cats", "dogs"], "images": 6}


def test_a_fifo_named_png_is_skipped(lab_data_root):
    fixtures.write_image_folder(lab_data_root / "pipe", {"cats": 3, "dogs": 3})
    fifo = lab_data_root / "pipe" / "cats" / "x.png"
    os.mkfifo(fifo)
    try:
        assert _load_in_child(lab_data_root / "pipe", lab_data_root) == {"classes": ["cats", "dogs"], "images": 6}
        assert not any(name == "cats/x.png" for name, _, _ in imagefiles.listing(lab_data_root / "pipe"))
    finally:
        fifo.unlink()


def test_a_fifo_given_to_decode_image_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "y.png"
    os.mkfifo(fifo)
    errors = []

    def decode() -> None:
        try:
            imagefiles.decode_image(fifo, 8, None)
        except ValueError as e:
            errors.append(str(e))

    reader = threading.Thread(target=decode, daemon=True)
    reader.start()
    reader.join(30)
    try:
        if reader.is_alive():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # lets the blocked open() return
            reader.join(10)
            pytest.fail("decode_image blocked on a FIFO")
    finally:
        fifo.unlink()
    assert errors and "not a regular file" in errors[0], errors


def test_a_link_to_a_folder_outside_the_data_root_is_refused(lab_data_root, tmp_path):
    fixtures.write_image_folder(lab_data_root / "pets", {"cats": 2, "dogs": 2})
    fixtures.write_image_folder(tmp_path / "elsewhere", {"more": 2})
    (lab_data_root / "pets" / "cats" / "more").symlink_to(tmp_path / "elsewhere" / "more")
    with pytest.raises(ValueError, match="more is a link to .*outside the data root"):
        datasets.load_dataset("folder", folder="pets", cache=False)


def test_a_listing_past_its_bound_is_refused_with_a_sentence(lab_data_root, monkeypatch):
    fixtures.write_image_folder(lab_data_root / "big", {"cats": 4, "dogs": 4})
    monkeypatch.setattr(imagefiles, "MAX_LISTING_ENTRIES", 5)
    with pytest.raises(ValueError, match="more than 5 files and folders"):
        datasets.load_dataset("folder", folder="big", cache=False)
    monkeypatch.setattr(imagefiles, "MAX_LISTING_ENTRIES", 1000)
    monkeypatch.setattr(imagefiles, "MAX_FOLDER_IMAGES", 6)
    with pytest.raises(ValueError, match="8 images, more than the 6"):
        datasets.load_dataset("folder", folder="big", cache=False)


# ------------------------------------------------------ item 4: EXIF orientation


def test_an_uploaded_jpeg_honours_its_exif_orientation():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    image = predict.load_image(buf.getvalue())
    assert image.size == (20, 40)
    shown = np.asarray(image).astype(int)
    assert shown[5, 10, 0] > 200 and shown[5, 10, 2] < 60  # the left half is now on top
    assert shown[35, 10, 2] > 200 and shown[35, 10, 0] < 60


# -------------------------------------------------------- item 13: one pixel limit


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """12,000 x 12,000, a solid colour: 144 Mpx that compress to a few hundred KB."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (12_000, 12_000), 1).save(path)
    return path


def test_a_huge_image_in_a_folder_is_refused_by_the_same_limit_as_an_upload(lab_data_root, huge_png):
    fixtures.write_image_folder(lab_data_root / "wall", {"cats": 2, "dogs": 2})
    (lab_data_root / "wall" / "cats" / "huge.png").write_bytes(huge_png.read_bytes())
    limit = f"{imagefiles.MAX_PIXELS:,}"
    with pytest.raises(ValueError, match="huge.png") as folder:
        datasets.load_dataset("folder", folder="wall", cache=False)
    with pytest.raises(predict.ImageError) as upload:
        predict.load_image(huge_png.read_bytes())
    for message in (str(folder.value), str(upload.value)):
        assert "too large" in message and "12,000 x 12,000" in message and limit in message, message


# -------------------------------------------------- item 16: folders and names


@pytest.mark.parametrize("name, words", [("x" * 5000, "too long"), ("pets\x00cats", "NUL")])
def test_a_folder_name_no_file_system_can_hold_gets_a_sentence(lab_data_root, name, words):
    with pytest.raises((ValueError, datasets.DatasetUnavailable)) as info:
        datasets.load_dataset("folder", folder=name)
    assert not isinstance(info.value, OSError)
    assert words in str(info.value) and len(str(info.value)) < 600, str(info.value)
    ok, how = datasets.availability("folder", folder=name)
    assert not ok and words in how


def test_a_folder_that_is_a_link_loop_gets_a_sentence(lab_data_root):
    (lab_data_root / "round").symlink_to("round")
    with pytest.raises((ValueError, datasets.DatasetUnavailable), match="round"):
        datasets.load_dataset("folder", folder="round")


def test_one_image_per_class_leaves_no_test_split_and_is_refused(lab_data_root):
    fixtures.write_image_folder(lab_data_root / "few", {"cats": 1, "dogs": 1})
    with pytest.raises(ValueError, match="no image is left to test.*at least 2 images"):
        datasets.load_dataset("folder", folder="few", cache=False)


def test_names_that_are_not_utf8_load_and_stay_displayable(lab_data_root):
    top = os.fsencode(lab_data_root) + b"/caf\xe9-pets"
    png = io.BytesIO()
    Image.new("RGB", (6, 6), (10, 200, 30)).save(png, "PNG")
    for cls in (b"caf\xe9", b"na\xefve", b"plain"):
        os.makedirs(top + b"/" + cls)
        for i in range(3):
            with open(top + b"/" + cls + b"/img\xff%d.png" % i, "wb") as f:
                f.write(png.getvalue())
    ds = datasets.load_dataset("folder", folder=os.fsdecode(top), image_size=8)
    assert len(ds.classes) == 3 and len(ds.train_y) + len(ds.test_y) == 9
    assert ds.classes[2] == "plain" and ds.classes[0].startswith("caf")
    for text in (*ds.classes, ds.source, repr(ds)):
        text.encode("utf-8")  # no UnicodeEncodeError in a page or a log
    again = datasets.load_dataset("folder", folder=os.fsdecode(top), image_size=8)
    assert again.classes == ds.classes

    with open(top + b"/plain/broken\xfe.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="broken") as info:
        datasets.load_dataset("folder", folder=os.fsdecode(top), image_size=8)
    str(info.value).encode("utf-8")


class _Runs:
    """A pickle that would run a command if anything unpickled it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/alexnet-lab-pwned",))


@pytest.mark.parametrize("kind", ["random bytes", "a malicious pickle", "a wrong field", "labels past the classes"])
def test_a_bad_dataset_cache_is_discarded_and_made_again(lab_data_root, kind):
    """One garbage cache file stopped the whole server from starting (its warm-up loads
    the default dataset): it is ignored with a warning, and written again."""
    import pickle

    import torch

    from alexnet_core import datasets, paths

    first = datasets.load_dataset("digits")
    (path,) = paths.cache_root().glob("digits-*.pt")
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "a malicious pickle":
        path.write_bytes(pickle.dumps(_Runs()))
    else:
        payload = torch.load(path, weights_only=True)
        if kind == "a wrong field":
            payload["train_x"] = [1, 2, 3]
        else:
            payload["test_y"] = payload["test_y"] + 100
        torch.save(payload, path)
    with pytest.warns(UserWarning, match="Ignoring an unreadable dataset cache file") as caught:
        again = datasets.load_dataset("digits")
    assert not any("weights_only=False" in str(w.message) for w in caught)  # never advise running its code
    assert not Path("/tmp/alexnet-lab-pwned").exists()
    assert torch.equal(again.test_y, first.test_y) and again.classes == first.classes
    assert datasets.load_dataset("digits").source.startswith("cache: "), "written again, readable"
