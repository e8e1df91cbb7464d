"""Images to network input: RGB conversion, resizing, cropping and normalisation.

Two geometric policies:

- ``"resize_crop"`` (the standard ImageNet evaluation transform): resize the shorter side
  to ``resize_size`` (bicubic), then take the centre ``input_size`` square.  This is what
  the embedded EfficientNet-Lite0 expects (256 then 224, see
  ``docs/embedded-default.md``).
- ``"resize"``: resize the whole image to ``input_size`` x ``input_size`` (bicubic), for
  small images where a crop would cut away the object, e.g. Fashion-MNIST's 28 x 28.

Normalisation is ``(x - mean) / std`` per channel on the 0..255 scale, so EfficientNet-Lite's
``x / 127.5 - 1`` is ``mean = std = 127.5``.

Preprocessing runs beside inference on the same cores, so it is kept cheap: grayscale
images are resized as one channel and replicated afterwards (bicubic filtering treats
channels independently, so the result is the same as resizing three equal channels),
and normalisation is a 256-entry lookup table per channel written straight into the
caller's batch array.
"""

from __future__ import annotations

from collections.abc import Sequence

import functools

import numpy as np
from PIL import Image

__all__ = ["POLICIES", "preprocess_image", "to_rgb"]

POLICIES = ("resize_crop", "resize")
_BICUBIC = Image.Resampling.BICUBIC


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB copy of ``image``; transparent pixels are composited onto white.

    Grayscale is replicated to three channels.  White, not black, is the background
    because cut-out photographs (e.g. tuxpaint stamps) are shown on white.  A uint8 array
    (H, W), (H, W, 3) or (H, W, 4) is accepted as well as a PIL image.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise TypeError("an image array must be uint8 with shape (H, W), (H, W, 3) "
                            f"or (H, W, 4); got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _rgb_or_gray(image: Image.Image | np.ndarray) -> Image.Image:
    """``image`` in mode "L" or "RGB": grayscale stays one channel, anything else is
    made RGB by :func:`to_rgb` (alpha composited onto white)."""
    if isinstance(image, Image.Image) and image.mode == "L" and "transparency" not in image.info:
        return image
    if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint8:
        return Image.fromarray(image)
    return to_rgb(image)


@functools.lru_cache(maxsize=32)
def _lookup_table(mean: float, std: float) -> np.ndarray:
    """``(v - mean) / std`` for every uint8 value v, in float32 as the network wants."""
    return (np.arange(256, dtype=np.float32) - np.float32(mean)) / np.float32(std)


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_size = (size if width <= height else round(width * scale),
                size if height <= width else round(height * scale))
    return image.resize(new_size, _BICUBIC)


def _centre_crop(image: Image.Image, size: int) -> Image.Image:
    # Same rounding as torchvision's CenterCrop, so crops match published pipelines.
    width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _check_sizes(input_size, resize_size, policy) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown preprocessing policy {policy!r}; choose one of {POLICIES}")
    if not (isinstance(input_size, (int, np.integer)) and input_size > 0):
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
    if policy == "resize_crop" and not (
            isinstance(resize_size, (int, np.integer)) and resize_size >= input_size):
        raise ValueError(f"resize_size must be an integer >= input_size ({input_size}) "
                         f"for the 'resize_crop' policy, got {resize_size!r}")


def preprocess_image(image: Image.Image | np.ndarray, *, input_size: int,
                     resize_size: int | None = None,
                     mean: Sequence[float] = (127.5, 127.5, 127.5),
                     std: Sequence[float] = (127.5, 127.5, 127.5),
                     policy: str = "resize_crop", out: np.ndarray | None = None) -> np.ndarray:
    """One image as a normalised ``(3, input_size, input_size)`` float32 array.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        Any mode; converted by :func:`to_rgb`.
    input_size : int
        Side of the square network input.
    resize_size : int, optional
        Shorter-side length before the centre crop; required for ``"resize_crop"``.
    mean, std : sequence of 3 floats
        Per-channel (R, G, B) normalisation on the 0..255 scale.
    policy : {"resize_crop", "resize"}, default "resize_crop"
        See the module docstring.
    out : numpy.ndarray, optional
        float32 array of shape (3, input_size, input_size) to write into (e.g. one
        image of a batch); a new one by default.

    Returns
    -------
    numpy.ndarray
        float32, shape (3, input_size, input_size), channels R, G, B (CHW).

    Examples
    --------
    >>> from PIL import Image
    >>> x = preprocess_image(Image.new("L", (28, 28), 255), input_size=224, policy="resize")
    >>> x.shape, float(x.min()), float(x.max())
    ((3, 224, 224), 1.0, 1.0)
    """
    _check_sizes(input_size, resize_size, policy)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (3,) or std.shape != (3,) or not np.all(std > 0):
        raise ValueError("mean and std must each hold 3 values, std all positive")
    image = _rgb_or_gray(image)
    if policy == "resize_crop":
        image = _centre_crop(_resize_shorter_side(image, resize_size), input_size)
    else:
        image = image.resize((input_size, input_size), _BICUBIC)
    pixels = np.asarray(image)
    if out is None:
        out = np.empty((3, input_size, input_size), dtype=np.float32)
    tables = [_lookup_table(float(m), float(s)) for m, s in zip(mean, std)]
    for channel, table in enumerate(tables):
        if pixels.ndim == 2 and channel and table is tables[channel - 1]:
            out[channel] = out[channel - 1]  # same gray plane, same table: a copy is cheaper
        else:
            plane = pixels if pixels.ndim == 2 else pixels[:, :, channel]
            np.take(table, plane, out=out[channel])
    return out
