"""Letterbox: the training pipeline's rounding, exact inverse mapping, input checks."""
import cv2
import numpy as np
import pytest

from defectrt.errors import UserInputError
from defectrt.runtime.preprocess import letterbox, letterbox_info, preprocess

# (h0, w0) -> (h, w): odd sizes, portrait and landscape, up- and down-scaling, identity.
CASES = [((333, 517), (384, 672)), ((517, 333), (384, 672)), ((97, 61), (640, 640)), ((1001, 1999), (384, 672)),
         ((384, 672), (384, 672)), ((480, 640), (640, 640)), ((641, 3), (320, 320)), ((5, 777), (384, 672))]


def _reference(h0, w0, h, w):
    """The rounding as specified (Ultralytics LetterBox, auto=False, scaleup=True, center=True)."""
    r = min(h / h0, w / w0)
    nw, nh = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = (w - nw) / 2, (h - nh) / 2
    return (nh, nw), (int(round(dh - 0.1)), int(round(dh + 0.1)), int(round(dw - 0.1)), int(round(dw + 0.1)))


@pytest.mark.parametrize("orig,new", CASES)
def test_letterbox_follows_the_reference_rounding_and_pads_with_114(orig, new):
    (h0, w0), (h, w) = orig, new
    img = np.random.default_rng(h0 * w0).integers(0, 100, (h0, w0, 3), dtype=np.uint8)  # never 114
    out, info = letterbox(img, new)
    (nh, nw), (top, bottom, left, right) = _reference(h0, w0, h, w)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert info.unpad_shape == (nh, nw) and info.pad == (left, top)
    assert top + nh + bottom == h and left + nw + right == w
    inner = out[top:top + nh, left:left + nw]
    expected = img if (nh, nw) == (h0, w0) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(inner, expected)
    mask = np.ones((h, w), bool)
    mask[top:top + nh, left:left + nw] = False
    assert np.all(out[mask] == 114)


@pytest.mark.parametrize("orig,new", CASES)
def test_image_corners_map_onto_the_resized_region_and_back(orig, new):
    (h0, w0), (h, w) = orig, new
    info = letterbox_info(orig, new)
    (nh, nw), (top, _, left, _) = _reference(h0, w0, h, w)
    corners = np.array([[0, 0, w0, h0]], np.float32)
    np.testing.assert_allclose(info.to_input(corners), [[left, top, left + nw, top + nh]], atol=1e-3)
    rng = np.random.default_rng(1)
    pts = np.sort(rng.uniform(0, 1, (50, 4)), axis=0) * [w0, h0, w0, h0]
    np.testing.assert_allclose(info.to_original(info.to_input(pts)), pts, atol=1e-2)


def test_inverse_mapping_clips_to_the_image():
    info = letterbox_info((100, 200), (384, 672))
    out = info.to_original(np.array([[-50, -50, 10000, 10000]], np.float32))
    np.testing.assert_array_equal(out, [[0, 0, 200, 100]])


def test_blob_is_rgb_scaled_nchw_float32_with_padding_114():
    img = np.zeros((100, 300, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    blob, infos = preprocess(img, (96, 96))
    assert blob.shape == (1, 3, 96, 96) and blob.dtype == np.float32 and blob.flags.c_contiguous
    left, top = infos[0].pad
    assert (left, top) == (0, 32)
    centre = blob[0, :, 48, 48]
    np.testing.assert_allclose(centre, np.array([30, 20, 10], np.float32) / 255)
    np.testing.assert_allclose(blob[0, :, 0, 0], [114 / 255.0] * 3, rtol=1e-6)


@pytest.mark.parametrize("convert", [
    lambda g: g, lambda g: g[..., None], lambda g: np.dstack([g, g, g, np.full_like(g, 7)])])
def test_grayscale_and_bgra_inputs_match_their_bgr_equivalent(convert):
    gray = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    bgr = np.dstack([gray] * 3)
    ref, _ = preprocess(bgr, (64, 64))
    got, _ = preprocess(convert(gray), (64, 64))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("bad,words", [
    (None, ["None", "imread"]),
    (np.zeros((0, 10, 3), np.uint8), ["empty"]),
    (np.zeros((10, 10, 3), np.float32), ["float32", "uint8"]),
    (np.zeros((10, 10, 2), np.uint8), ["shape", "(10, 10, 2)"]),
    ([[1, 2], [3, 4]], ["numpy array"]),
])
def test_bad_images_raise_user_input_error_saying_what_is_wrong(bad, words):
    with pytest.raises(UserInputError) as exc:
        preprocess([np.zeros((8, 8, 3), np.uint8), bad], (32, 32))
    for w in words:
        assert w in str(exc.value)
    assert "image 1 of 2" in str(exc.value)


def test_bad_imgsz_and_empty_list_are_user_errors():
    with pytest.raises(UserInputError, match="imgsz"):
        preprocess(np.zeros((8, 8, 3), np.uint8), (0, 32))
    with pytest.raises(UserInputError, match="no images"):
        preprocess([], (32, 32))


def test_preprocess_writes_into_a_given_buffer():
    out = np.full((2, 3, 32, 48), -1, np.float32)
    imgs = [np.full((20, 30, 3), 200, np.uint8), np.full((30, 20, 3), 50, np.uint8)]
    blob, _ = preprocess(imgs, (32, 48), out=out)
    assert blob is out and out.min() >= 0
    fresh, _ = preprocess(imgs, (32, 48))
    np.testing.assert_array_equal(out, fresh)
