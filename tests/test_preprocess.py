"""Image preprocessing: geometry of both policies, colour conversion, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dnnstress.models import get_model
from dnnstress.preprocess import preprocess_image, to_rgb

LITE = {"mean": (127.5,) * 3, "std": (127.5,) * 3}


def _bands(width, height):
    """Red left quarter, blue middle half, green right quarter."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :width // 4] = (255, 0, 0)
    pixels[:, width // 4: width - width // 4] = (0, 0, 255)
    pixels[:, width - width // 4:] = (0, 255, 0)
    return Image.fromarray(pixels)


def test_output_shape_dtype_range_and_channel_order():
    image = Image.new("RGB", (300, 200), (10, 128, 250))
    x = preprocess_image(image, input_size=224, resize_size=256, **LITE)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = np.array([10, 128, 250], np.float32) / 127.5 - 1
    np.testing.assert_allclose(x, np.broadcast_to(expected[:, None, None], x.shape), atol=1e-6)
    assert -1 <= x.min() and x.max() <= 1


def test_centre_crop_takes_exact_centre():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)  # shorter side already 256
    x = preprocess_image(Image.fromarray(pixels), input_size=224, resize_size=256,
                         mean=(0, 0, 0), std=(1, 1, 1))
    # left = round((300 - 224) / 2) = 38, top = 16: no resampling happened.
    np.testing.assert_array_equal(x, pixels[16:240, 38:262].transpose(2, 0, 1))


def test_policies_differ_in_geometry():
    image = _bands(600, 300)
    crop = preprocess_image(image, input_size=224, resize_size=256, **LITE)
    # 600x300 -> 512x256; the centre 224 columns lie inside the blue band.
    blue = np.array([-1, -1, 1], np.float32)[:, None, None]
    np.testing.assert_allclose(crop, np.broadcast_to(blue, crop.shape), atol=1e-6)
    whole = preprocess_image(image, input_size=224, policy="resize", **LITE)
    np.testing.assert_allclose(whole[:, :, 0], [[1] * 224, [-1] * 224, [-1] * 224], atol=1e-6)
    np.testing.assert_allclose(whole[:, :, -1], [[-1] * 224, [1] * 224, [-1] * 224], atol=1e-6)


def test_resize_crop_upscales_small_image():
    x = preprocess_image(_bands(40, 20), input_size=224, resize_size=256, **LITE)
    assert x.shape == (3, 224, 224)


def test_grayscale_is_replicated():
    rng = np.random.default_rng(1)
    digit = rng.integers(0, 256, (28, 28), dtype=np.uint8)  # a Fashion-MNIST-like image
    for image in (digit, Image.fromarray(digit, mode="L")):
        x = preprocess_image(image, input_size=224, policy="resize", **LITE)
        assert x.shape == (3, 224, 224)
        np.testing.assert_array_equal(x[0], x[1])
        np.testing.assert_array_equal(x[0], x[2])
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(digit)))[..., 1], digit)


def test_transparency_composited_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (255, 0, 0, 255)      # opaque red
    rgba[:, 5:] = (0, 0, 0, 0)          # fully transparent black
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, mode="RGBA")))
    assert (rgb[:, :5] == (255, 0, 0)).all() and (rgb[:, 5:] == 255).all()
    half = np.asarray(to_rgb(Image.new("LA", (2, 2), (0, 128))))
    assert np.all(np.abs(half.astype(int) - 127) <= 1)  # black at half alpha on white
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 255, 0] + [0] * 765)
    assert (np.asarray(to_rgb(palette)) == (0, 255, 0)).all()


def test_model_spec_preprocess_matches_lite_normalisation():
    spec = get_model("efficientnet-lite0")
    image = _bands(333, 257)
    expected = preprocess_image(image, input_size=224, resize_size=256, **LITE)
    np.testing.assert_array_equal(spec.preprocess(image), expected)
    resized = np.asarray(image.resize((224, 224), Image.Resampling.BICUBIC), np.float32)
    np.testing.assert_allclose(spec.preprocess(image, policy="resize"),
                               (resized / 127.5 - 1).transpose(2, 0, 1), atol=1e-6)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"policy": "crop"}, ValueError, "unknown preprocessing policy"),
    ({"resize_size": 100}, ValueError, "resize_size must be an integer >= input_size"),
    ({"resize_size": None}, ValueError, "resize_size"),
    ({"input_size": 0}, ValueError, "input_size"),
    ({"std": (1, 0, 1)}, ValueError, "std"),
    ({"mean": (1, 2)}, ValueError, "3 values"),
])
def test_bad_arguments(kwargs, error, message):
    arguments = {"input_size": 224, "resize_size": 256, **kwargs}
    with pytest.raises(error, match=message):
        preprocess_image(Image.new("RGB", (8, 8)), **arguments)


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.float32), np.zeros((8, 8, 2), np.uint8),
                                   "photo.jpg"])
def test_bad_images(image):
    with pytest.raises(TypeError, match="image"):
        preprocess_image(image, input_size=224, resize_size=256)


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 120), height=st.integers(1, 120),
       policy=st.sampled_from(["resize_crop", "resize"]), mode=st.sampled_from(["RGB", "L"]))
def test_any_size_gives_square_input_in_range(width, height, policy, mode):
    image = Image.new(mode, (width, height), 200 if mode == "L" else (200, 30, 90))
    x = preprocess_image(image, input_size=32, resize_size=40, policy=policy, **LITE)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert -1 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("policy", ["resize", "resize_crop"])
def test_grayscale_shortcut_equals_resizing_three_equal_channels(policy):
    pixels = np.random.default_rng(5).integers(0, 256, (28, 40), dtype=np.uint8)
    gray = Image.fromarray(pixels)
    args = dict(input_size=32, resize_size=36, mean=(120.0, 110.0, 100.0),
                std=(60.0, 50.0, 40.0), policy=policy)
    expected = preprocess_image(gray.convert("RGB"), **args)
    np.testing.assert_array_equal(preprocess_image(gray, **args), expected)
    batch = np.zeros((2, 3, 32, 32), np.float32)
    assert np.shares_memory(preprocess_image(pixels, out=batch[1], **args), batch[1])
    np.testing.assert_array_equal(batch[1], expected)
    assert not batch[0].any()
