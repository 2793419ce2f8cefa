"""Bad-data checks (check_records, image_header) on real LSPET JPEGs and damaged copies."""
import logging
import shutil
import struct
import time

import cv2
import numpy as np
import pytest

from mssh_keras.data import lspet
from mssh_keras.data.records import check_records, image_header, index_images, make_record
from conftest import REAL_DATA

LSPET = REAL_DATA / "lspet_axelcarlier"


def sof_only_jpeg(data: bytes) -> bytes:
    """SOI + the real frame header + EOI: the header looks fine, nothing decodes."""
    i = 2
    while True:
        code, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if code == 0xC0 or code == 0xC2:
            return data[:2] + data[i:i + 2 + length] + b"\xff\xd9"
        i += 2 + length


def test_image_header_matches_decoder(tmp_path):
    for n in (1, 2, 500, 6099):
        path = LSPET / f"images/im{n:05d}.jpg"
        h, w = cv2.imread(str(path)).shape[:2]
        assert image_header(path) == (w, h, "jpeg")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((7, 5, 3), np.uint8))
    assert image_header(tmp_path / "a.png") == (5, 7, "png")


def test_real_lspet_passes_the_cheap_check():
    records = lspet.read_lspet(LSPET, "all")
    t = time.perf_counter()
    good, problems = check_records(records)
    assert problems == [] and len(good) == 7000
    assert time.perf_counter() - t < 20  # header + end marker only: no pixel decoding


def test_bad_files_are_reported_by_name(tmp_path, caplog):
    src = LSPET / "images/im00002.jpg"
    data = src.read_bytes()
    base = lspet.lspet_records(LSPET / "joints.mat", LSPET / "images", "all")[1]

    def rec(name: str, **changes) -> dict:
        r = dict(base, path=str(tmp_path / name), image_id=name)
        r.update(changes)
        return r

    shutil.copy(src, tmp_path / "ok.jpg")
    (tmp_path / "trailing.jpg").write_bytes(data + b"\x00" * 64)  # decodes fine
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "noscan.jpg").write_bytes(sof_only_jpeg(data))
    no_joint = make_record(tmp_path / "ok.jpg", np.zeros((14, 2)), np.zeros(14), "nojoint.jpg")
    far = base["joints"].copy()
    far[3] = (5000.0, 10.0)
    records = [rec("ok.jpg"), rec("trailing.jpg"), rec("truncated.jpg"), rec("empty.jpg"),
               rec("text.jpg"), rec("missing.jpg"), no_joint, rec("ok.jpg", joints=far,
                                                                   image_id="far.jpg")]
    with caplog.at_level(logging.WARNING):
        good, problems = check_records(records, name="unit")
    assert [r["image_id"] for r in good] == ["ok.jpg", "trailing.jpg"]
    reasons = {p.image_id: p.reason for p in problems}
    assert "truncated JPEG" in reasons["truncated.jpg"]
    assert "empty file" in reasons["empty.jpg"]
    assert "not a JPEG or PNG" in reasons["text.jpg"]
    assert reasons["missing.jpg"] == "missing image file"
    assert reasons["nojoint.jpg"] == "no annotated joint"
    assert "far outside" in reasons["far.jpg"]
    assert problems[0].path == str(tmp_path / "truncated.jpg")
    assert "unit: 6 of 8 records have problems" in caplog.text
    assert "truncated.jpg" in caplog.text and "missing.jpg" in caplog.text

    # Damage only a decoder sees: passes the cheap check, caught by decode=True.
    good, _ = check_records([rec("noscan.jpg")])
    assert len(good) == 1
    good, problems = check_records([rec("noscan.jpg"), rec("ok.jpg")], decode=True)
    assert [r["image_id"] for r in good] == ["ok.jpg"]
    assert "does not decode" in problems[0].reason


def test_joints_slightly_outside_are_fine():
    # Real LSPET annotations put a few joints up to ~2 px outside the image.
    r = lspet.lspet_records(LSPET / "joints.mat", LSPET / "images", "all")[6098]  # im06099
    good, problems = check_records([r])
    assert problems == [] and (r["joints"][r["flags"] > 0] < 0).any()


def test_index_images_by_number(tmp_path):
    for name in ("im00012.jpg", "im3.JPG", "notes.txt", "image01.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert {k: p.name for k, p in index_images(tmp_path).items()} == {
        12: "im00012.jpg", 3: "im3.JPG"}
    (tmp_path / "im012.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="two images with number 12"):
        index_images(tmp_path)
