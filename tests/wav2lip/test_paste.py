"""Paste-back: feathered mouth mask, colour matching, pixels outside the mask untouched."""

from __future__ import annotations

import cv2
import numpy as np

from avgen_dagster.backends.wav2lip.inference import (
    match_colour,
    mouth_mask,
    padded_box,
    paste_back,
)


def test_pixels_outside_mask_unchanged() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    box = padded_box((100.0, 40.0, 190.0, 150.0), frame.shape)
    assert box == (100, 40, 190, 160)  # pads (0, 10, 0, 0): 10 px more chin
    face = np.full((96, 96, 3), (250, 20, 20), np.uint8)  # a loud red square
    out = paste_back(frame, box, face, colour_match=False)
    x0, y0, x1, y1 = box
    mask = np.zeros(frame.shape[:2], np.float32)
    mask[y0:y1, x0:x1] = mouth_mask(y1 - y0, x1 - x0)
    outside = mask == 0.0
    assert outside.sum() > 0.9 * mask.size
    np.testing.assert_array_equal(out[outside], frame[outside])
    # the mask is 0 on the box's border (no visible edge) and 1 around the mouth
    m = mouth_mask(y1 - y0, x1 - x0)
    assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0.0
    assert m.max() == 1.0 and (m > 0).sum() > 0.2 * m.size
    core = mask == 1.0
    assert np.abs(out[core].astype(int) - (250, 20, 20)).max() <= 1
    # the input frame is not modified
    assert not np.shares_memory(out, frame)


def test_colour_match_hides_the_patch() -> None:
    rng = np.random.default_rng(1)
    skin = np.clip(rng.normal((190, 140, 120), 6, (120, 100, 3)), 0, 255).astype(np.uint8)
    grey = np.full((96, 96, 3), 128, np.uint8)
    grey[60:70, 30:66] = 60  # a dark "mouth" line
    gen = cv2.resize(grey, (100, 120))
    region = mouth_mask(120, 100) > 0.5
    matched = match_colour(gen, skin, region)
    lab_m = cv2.cvtColor(matched, cv2.COLOR_RGB2LAB)[region].mean(axis=0)
    lab_s = cv2.cvtColor(skin, cv2.COLOR_RGB2LAB)[region].mean(axis=0)
    assert np.abs(lab_m - lab_s).max() < 3.0
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[40:160, 50:150] = skin
    out = paste_back(frame, (50, 40, 150, 160), grey)
    # along the box edge nothing changed; mean colour in the mouth region stays skin-like
    assert np.array_equal(out[40:160, 50], frame[40:160, 50])
    diff = np.abs(out[40:160, 50:150].astype(int) - skin.astype(int)).mean(axis=2)
    assert diff[region].mean() < 25
