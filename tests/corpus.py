"""Test images built in code: structured samples and a corpus of bad uploads.

``bad_image_corpus()`` maps a file name to ``(bytes, expected_reason)``: uploading any of them
must fail the item with that ``BadImage`` reason (see ``runtime.domain.images``). Names carry a
misleading or honest extension on purpose; the pipeline must detect formats from the bytes.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "bad_image_corpus",
    "garbage_exif_jpeg",
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
        "garbage_exif.jpg": (garbage_exif_jpeg(), "corrupt_metadata"),
        "image.tiff": (_encoded("TIFF"), "unsupported_format"),
    }


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
