"""Test images built in code: structured samples and a corpus of bad uploads.

``bad_image_corpus()`` maps a file name to ``(bytes, expected_reason)``: uploading any of them
must fail the item with that ``BadImage`` reason (see ``runtime.domain.images``). Names carry a
misleading or honest extension on purpose; the pipeline must detect formats from the bytes.

``hostile_corpus()`` adds files built to exhaust a worker (extreme shapes, headers that claim
65,000 x 65,000, ten thousand frames, compressed text chunks, thousands of JPEG comments,
unusual colour modes, broken EXIF) with the terminal state each must reach: ``Expected``.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Expected",
    "bad_image_corpus",
    "garbage_exif_jpeg",
    "hostile_corpus",
    "sample_heic",
    "sample_image",
    "sample_jpeg",
    "sample_png",
    "write_corpus",
]


def sample_image(width: int = 1200, height: int = 900, *, seed: int = 0) -> Image.Image:
    """An RGB picture with structure: colour gradients, shapes, thin lines and text."""
    rng = random.Random(seed)
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.linear_gradient("L").rotate(90).resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    scale = max(1, min(width, height) // 100)
    for _ in range(24):
        x, y = rng.randrange(width), rng.randrange(height)
        w, h = rng.randint(4, 20) * scale, rng.randint(4, 20) * scale
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0), width=max(1, scale // 2))
    for _ in range(40):
        points = [(rng.randrange(width), rng.randrange(height)) for _ in range(2)]
        draw.line(points, fill=tuple(rng.randrange(256) for _ in range(3)), width=1)
    font = ImageFont.load_default(size=4 * scale)
    for row in range(3):
        draw.text((5 * scale, (10 + 25 * row) * scale), f"Collections {seed}-{row}", font=font)
    return image


def sample_jpeg(width: int = 1200, height: int = 900, *, seed: int = 0) -> bytes:
    return _jpeg(width, height, seed)


def sample_png(width: int = 600, height: int = 400, *, seed: int = 0) -> bytes:
    return _png(width, height, seed)


def sample_heic() -> bytes:
    """A 640x480 HEIC (HEVC) image, written with pillow-heif."""
    return _heic()


def garbage_exif_jpeg() -> bytes:
    """A valid JPEG whose APP1 ``Exif`` segment is garbage (a broken TIFF header and IFD)."""
    return _garbage_exif_jpeg()


def bad_image_corpus() -> dict[str, tuple[bytes, str]]:
    """Bad uploads, by file name, with the reason each must fail with."""
    jpeg = sample_jpeg(800, 600, seed=1)
    png = sample_png(seed=2)
    return {
        "zero_bytes.jpg": (b"", "empty_file"),
        "text.jpg": (b"These are my holiday notes, not a photo.\n" * 20, "not_an_image"),
        "html.png": (b"<!doctype html><html><body>Not found</body></html>\n", "not_an_image"),
        "truncated.jpg": (jpeg[: len(jpeg) * 6 // 10], "truncated_image"),
        "truncated.png": (png[: len(png) * 6 // 10], "truncated_image"),
        "bomb.png": (_png_bomb(30_000, 30_000), "decompression_bomb"),
        "bad_crc.png": (_png_with_bad_header_crc(png), "undecodable_image"),
        "image.bmp": (_encoded("BMP"), "unsupported_format"),
        "image.tiff": (_encoded("TIFF"), "unsupported_format"),
        "line.png": (_png_raw(5000, 2, 8, 0, b"\x00" * 5000), "extreme_aspect_ratio"),
    }


@dataclass(frozen=True)
class Expected:
    """The terminal state a file must reach: ``ready`` (with these warning codes) or
    ``failed`` with ``reason``; ``size`` is the (width, height) a ready item reports."""

    status: str
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    size: tuple[int, int] | None = None


def hostile_corpus() -> dict[str, tuple[bytes, Expected]]:
    """The bad-image corpus plus files that once exhausted a worker or cost a user a picture."""
    failed = {
        name: (data, Expected("failed", reason))
        for name, (data, reason) in bad_image_corpus().items()
    }
    ready = Expected("ready")
    return {
        **failed,
        "very-wide-20000x1.png": (
            _png_raw(20_000, 1, 8, 2, b"\x80" * 60_000),
            Expected("failed", "extreme_aspect_ratio"),
        ),
        "very-tall-1x20000.png": (
            _png_raw(1, 20_000, 8, 2, b"\x80" * 3),
            Expected("failed", "extreme_aspect_ratio"),
        ),
        "claims-65000.png": (
            _png_claiming(65_000, 65_000),
            Expected("failed", "decompression_bomb"),
        ),
        "claims-65000.webp": (
            _webp_claiming(65_000, 65_000),
            Expected("failed", "decompression_bomb"),
        ),
        "animated-10000-frames.gif": (_animated_gif(10_000), Expected("ready", size=(64, 48))),
        "text-chunks-50mb.png": (_png_with_text(50), Expected("ready", size=(600, 400))),
        "comments-5000.jpg": (_jpeg_with_comments(5000), Expected("ready", size=(640, 480))),
        "cmyk.jpg": (_encoded_mode("CMYK", "JPEG"), Expected("ready", size=(320, 240))),
        "rgba-16bit.png": (_png_rgba16(320, 240), Expected("ready", size=(320, 240))),
        "rotated-truncated-exif.heic": (
            _heic_rotated_truncated_exif(),
            Expected("ready", warnings=("exif_unreadable",), size=(480, 640)),
        ),
        "exif-truncated-ifd.jpg": (
            _jpeg_truncated_exif(),
            Expected("ready", warnings=("exif_unreadable",), size=(640, 480)),
        ),
        "garbage-exif.jpg": (
            garbage_exif_jpeg(),
            Expected("ready", warnings=("exif_unreadable",), size=(640, 480)),
        ),
        "plain.jpg": (sample_jpeg(800, 600, seed=9), ready),
    }


def write_hostile_corpus(directory: Path) -> dict[Path, Expected]:
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[Path, Expected] = {}
    for name, (data, expected) in hostile_corpus().items():
        path = directory / name
        path.write_bytes(data)
        written[path] = expected
    return written


def write_corpus(directory: Path) -> dict[Path, str]:
    """Write ``bad_image_corpus()`` into ``directory``; returns each path's expected reason."""
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[Path, str] = {}
    for name, (data, reason) in bad_image_corpus().items():
        path = directory / name
        path.write_bytes(data)
        written[path] = reason
    return written


# --------------------------------------------------------------------------- builders (cached)


@lru_cache(maxsize=16)
def _jpeg(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    sample_image(width, height, seed=seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@lru_cache(maxsize=16)
def _png(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    sample_image(width, height, seed=seed).save(buffer, "PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _heic() -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(sample_image(640, 480, seed=3)).save(buffer, quality=90)
    return buffer.getvalue()


@lru_cache(maxsize=4)
def _encoded(format_name: str) -> bytes:
    buffer = io.BytesIO()
    sample_image(160, 120, seed=4).save(buffer, format_name)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _garbage_exif_jpeg() -> bytes:
    payload = b"Exif\x00\x00II*\x00" + struct.pack("<I", 0xFFFFFF00) + bytes(range(256)) * 2
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    jpeg = sample_jpeg(640, 480, seed=5)
    return jpeg[:2] + segment + jpeg[2:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@lru_cache(maxsize=2)
def _png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` black pixels (a few hundred KB)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 256
    block = row * rows_per_block
    parts = [compressor.compress(block) for _ in range(height // rows_per_block)]
    parts.append(compressor.compress(row * (height % rows_per_block)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _png_with_bad_header_crc(png: bytes) -> bytes:
    """The same PNG with the IHDR checksum flipped: intact length, corrupt content."""
    crc_at = 8 + 8 + 13  # signature, IHDR length+type, IHDR body
    crc = bytes(b ^ 0xFF for b in png[crc_at : crc_at + 4])
    return png[:crc_at] + crc + png[crc_at + 4 :]


# --------------------------------------------------------------------------- hostile builders


def _png_raw(width: int, height: int, bit_depth: int, color_type: int, row: bytes) -> bytes:
    """A valid PNG whose every row is ``row`` (filter type 0 prepended)."""
    body = zlib.compress((b"\x00" + row) * height, 9)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` followed by a few rows of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x10" * (3 * width)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(row * 4, 9))
        + _png_chunk(b"IEND", b"")
    )


def _webp_claiming(width: int, height: int) -> bytes:
    """An extended WebP (VP8X) whose canvas is ``width`` x ``height``, with a tiny frame."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "WEBP", quality=50)
    simple = buffer.getvalue()
    frame = simple[12:]  # the VP8 chunk
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    payload = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


@lru_cache(maxsize=1)
def _animated_gif(frames: int) -> bytes:
    """A 64x48 GIF of ``frames`` frames: a second frame (one changed pixel), repeated."""
    buffer = io.BytesIO()
    first = sample_image(64, 48, seed=11).convert("P", palette=Image.Palette.ADAPTIVE)
    second = first.copy()
    second.putpixel((10, 10), (first.getpixel((10, 10)) + 1) % 256)
    first.save(buffer, "GIF", save_all=True, append_images=[second], duration=20, loop=0)
    data = buffer.getvalue()
    # The last frame: from its graphic control extension to the trailer.
    start = data.rindex(b"\x21\xf9\x04")
    frame = data[start:-1]
    return data[:-1] + frame * (frames - 2) + b"\x3b"


@lru_cache(maxsize=1)
def _png_with_text(megabytes: int) -> bytes:
    """A 600x400 PNG carrying ``megabytes`` MB of compressed text (zTXt, 1 MB each)."""
    png = sample_png(seed=2)
    text = zlib.compress(b"collections " * (1024 * 1024 // 12), 9)
    chunks = b"".join(
        _png_chunk(b"zTXt", f"Comment{i}".encode() + b"\x00\x00" + text) for i in range(megabytes)
    )
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunks + png[iend:]


@lru_cache(maxsize=1)
def _jpeg_with_comments(count: int) -> bytes:
    """A 640x480 JPEG with ``count`` COM segments of 1 KB each after its SOI."""
    jpeg = sample_jpeg(640, 480, seed=13)
    comment = b"x" * 1024
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return jpeg[:2] + segment * count + jpeg[2:]


@lru_cache(maxsize=2)
def _encoded_mode(mode: str, format_name: str) -> bytes:
    buffer = io.BytesIO()
    sample_image(320, 240, seed=14).convert(mode).save(buffer, format_name)
    return buffer.getvalue()


def _png_rgba16(width: int, height: int) -> bytes:
    """A 16-bit-per-channel RGBA PNG (colour type 6, bit depth 16) with a gradient."""
    row = b"".join(
        struct.pack(">HHHH", x * 65535 // width, 30000, 65535 - x * 65535 // width, 50000)
        for x in range(width)
    )
    return _png_raw(width, height, 16, 6, row)


def _truncate_ifd(data: bytes) -> bytes:
    """``data`` with its (first) EXIF IFD claiming far more entries than the block holds."""
    at = max(data.find(b"II*\x00"), data.find(b"MM\x00*"))
    order = "<" if data[at : at + 2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[at + 4 : at + 8])
    entries = at + ifd
    return data[:entries] + struct.pack(order + "H", 0x7FFF) + data[entries + 2 :]


def _orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Phone"
    exif[0x0110] = "Model X"
    return exif.tobytes()


@lru_cache(maxsize=1)
def _heic_rotated_truncated_exif() -> bytes:
    """A 640x480 HEIC rotated 90 degrees by its container (irot), with a truncated EXIF IFD."""
    import pillow_heif

    buffer = io.BytesIO()
    heif = pillow_heif.from_pillow(sample_image(640, 480, seed=3))
    heif.save(buffer, quality=80, exif=_orientation_exif(6))
    return _truncate_ifd(buffer.getvalue())


@lru_cache(maxsize=1)
def _jpeg_truncated_exif() -> bytes:
    """A phone-style JPEG (orientation 6) whose EXIF block was cut short by a messaging app."""
    buffer = io.BytesIO()
    sample_image(640, 480, seed=15).save(buffer, "JPEG", quality=90, exif=_orientation_exif(6)[:20])
    return buffer.getvalue()
