"""Turn the bytes of an uploaded image into renditions (pure: no AWS, no database).

``process_image`` detects the format from the bytes, rejects bad input with a ``BadImage`` that
carries a specific reason code, and produces WebP thumbnails plus a JPEG derivative sized for
the vision model.

Reason codes (``BadImage.reason``):

- ``empty_file``: zero bytes.
- ``not_an_image``: the bytes are not an image Pillow can identify (text, HTML, a zip...).
- ``unsupported_format``: a valid image in a format we do not accept (BMP, TIFF, AVIF...).
- ``decompression_bomb``: the header announces more than ``max_pixels`` pixels; detected from
  the header before any pixel is decoded (for PNG, GIF and WebP from the bytes themselves,
  before a decoder is even created: libwebp allocates its canvas when it opens a file).
- ``extreme_aspect_ratio``: one edge is more than ``MAX_ASPECT_RATIO`` times the other (a
  20000x1 line): no rendition of it would show anything.
- ``truncated_image``: the file ends before the image data does.
- ``undecodable_image``: anything else the decoder rejects (corrupt data, decoder errors).

Metadata problems do not cost the picture: an EXIF block that cannot be parsed (truncated by a
messaging app, garbage) leaves the pixels as stored (no rotation) and adds an
``ImageWarning("exif_unreadable", ...)`` to the result (a HEIF's own rotation, in its container
rather than in EXIF, still applies), which the pipeline records on the item.

Bounded work: besides ``max_pixels`` and the aspect ratio, PNG text chunks (tEXt, zTXt, iTXt:
nothing a rendition keeps) are dropped before decoding, so compressed text cannot expand in
memory; only the first frame of an animation is decoded; and the analysis derivative is padded
with white to an aspect ratio of at most ``ANALYSIS_MAX_ASPECT`` so that what the model or the
OCR sees is never a sliver (OCR engines upscale the short side: a 1568x1 strip became a
gigabyte-sized tensor).

Speed: JPEG, PNG and WebP are decoded and resized to the largest rendition by libvips (``pyvips``
with the ``pyvips-binary`` wheel: shrink-on-load for JPEG and WebP, vectorised resampling), after
Pillow has parsed the header and every check above has passed; Pillow keeps everything else
(metadata, orientation, the smaller renditions, the encoders), so the outputs are those of the
Pillow path. HEIF and GIF, CMYK or 16-bit sources, and any machine without libvips take the
Pillow path: a JPEG is decoded at a reduced DCT scale (``Image.draft``) when the largest
rendition is at most half its size; the largest rendition is resized first (``reduce`` +
LANCZOS, as with ``reducing_gap=2.0``) and each smaller one is derived from the previous one;
the EXIF orientation is applied to the first resized image rather than to the full-size one.
With more than one CPU, big resizes run in horizontal strips on a small process-wide thread pool
(Pillow releases the GIL) and each rendition is encoded while the next one is resized.

Renditions carry no EXIF (no GPS location leaks into thumbnails: orientation is baked in); an
RGB ICC profile of the source (e.g. Display P3 on iPhone screenshots) is kept so colours stay
right.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image, ImageFile

from runtime.domain.errors import PermanentError

__all__ = [
    "ANALYSIS_MAX_ASPECT",
    "MAX_ASPECT_RATIO",
    "BadImage",
    "ImageWarning",
    "ProcessedImage",
    "Rendition",
    "process_image",
]

# Beyond this ratio of long to short edge an image is refused (``extreme_aspect_ratio``).
MAX_ASPECT_RATIO = 100
# The analysis derivative is padded (white) to at most this ratio.
ANALYSIS_MAX_ASPECT = 4

# Encoding settings. WebP method 2 encodes about twice as fast as the default (4) for ~3% more
# bytes at the same quality setting (method 0: faster still, but ~20% more bytes).
_WEBP_QUALITY = 80
_WEBP_METHOD = 2
_JPEG_QUALITY = 85
# Resize in two steps (integer ``reduce`` then LANCZOS) when shrinking by at least this factor;
# Pillow documents 2.0 as indistinguishable from a plain LANCZOS resize.
_REDUCING_GAP = 2.0
_RESAMPLE = Image.Resampling.LANCZOS
# Resizes with at least this many output pixels run in strips on a thread pool.
_PARALLEL_MIN_PIXELS = 200_000
_MAX_WORKERS = 8
_WHITE = (255, 255, 255)

# EXIF orientation -> the transposition that undoes it (the table ImageOps.exif_transpose uses).
_ORIENTATION_FIX: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

_HEIF_BRANDS: dict[bytes, str] = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic-sequence",
    b"hevx": "image/heic-sequence",
    b"hevm": "image/heic-sequence",
    b"hevs": "image/heic-sequence",
    b"mif1": "image/heif",
    b"msf1": "image/heif-sequence",
}
_TRUNCATION_HINTS = (
    "truncat",
    "end of data",
    "premature end",
    "unexpected end",
    "end of file",
    "too small",  # libheif: "File size too small"
    "insufficient input data",  # libheif
)
# A read of at most this many bytes that comes back short is a header field cut off by the end
# of the file. (Bigger reads are buffer fills and come back short on any file.)
_HEADER_READ = 64
# What Pillow's decoders raise for bad data; anything else is still mapped, as "unexpected".
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)
# What a broken EXIF block can raise while being parsed.
_EXIF_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    UnicodeDecodeError,
)


class BadImage(PermanentError):
    """The upload cannot be turned into renditions; ``reason`` says why (see module docs)."""

    def __init__(self, reason: str, detail: str = "", *, stage: str | None = None) -> None:
        super().__init__(reason, detail, stage=stage)


@dataclass(frozen=True)
class Rendition:
    name: str
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class ImageWarning:
    """Something wrong with the file that did not stop it from being processed."""

    code: str
    detail: str


@dataclass(frozen=True)
class ProcessedImage:
    format: str
    content_type: str
    width: int
    height: int
    renditions: tuple[Rendition, ...]
    warnings: tuple[ImageWarning, ...] = ()


@dataclass(frozen=True)
class _Format:
    name: str  # the Pillow plugin name, also what ProcessedImage.format reports
    mime: str


_Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class _Target:
    name: str
    edge: int
    encoder: str  # "WEBP" or "JPEG"


# --------------------------------------------------------------------------- public API


def process_image(
    data: bytes,
    *,
    thumbnail_sizes: tuple[int, ...] = (256, 1024),
    analysis_max_edge: int = 1568,
    max_pixels: int = 100_000_000,
) -> ProcessedImage:
    """Decode ``data`` and return its thumbnails (WebP) and analysis derivative (JPEG).

    Renditions come in the order of ``thumbnail_sizes`` (named ``thumb_<size>``, long edge =
    size, never upscaled), then ``analysis`` (long edge <= ``analysis_max_edge``, alpha
    composited on white). Raises ``BadImage`` for any bad input, and ``ValueError`` only for bad
    arguments.
    """
    targets = _targets(thumbnail_sizes, analysis_max_edge)
    if max_pixels <= 0:
        raise ValueError("max_pixels must be positive")
    if not data:
        raise BadImage("empty_file", "the upload has zero bytes")
    fmt = _detect_format(data)
    declared = _header_size(data, fmt)
    if declared is not None:
        _check_shape(declared, max_pixels)
    if fmt.name == "PNG":
        data = _without_png_text(data)
    source = _Source(data)
    with _decoder_errors(source, fmt):
        image = _open(source, fmt)
        raw_size = image.size
        _check_shape(raw_size, max_pixels)
        largest = _fit(raw_size, targets[0].edge)
        if _vips_can_render(image, fmt, data):
            # Metadata from the header Pillow parsed; pixels decoded and resized by libvips.
            orientation, warnings_found = _orientation(image)
            icc = _rgb_icc_profile(image)
            first = _vips_first(data, largest)
        else:
            box = _draft(image, largest) if fmt.name == "JPEG" else None
            image.load()
            _check_complete(source, fmt)
            orientation, warnings_found = _orientation(image)
            icc = _rgb_icc_profile(image)
            first = _resize(_working_image(image), largest, box)
    width, height = _oriented(raw_size, orientation)
    first = _apply_orientation(first, orientation)
    by_name = _render(first, (width, height), targets, icc)
    order = [*(f"thumb_{size}" for size in thumbnail_sizes), "analysis"]
    return ProcessedImage(
        fmt.name,
        fmt.mime,
        width,
        height,
        tuple(by_name[n] for n in order),
        warnings_found,
    )


# --------------------------------------------------------------------------- arguments


def _targets(thumbnail_sizes: tuple[int, ...], analysis_max_edge: int) -> list[_Target]:
    """The renditions to make, largest first (each smaller one is derived from the previous)."""
    sizes = tuple(thumbnail_sizes)
    if any(not isinstance(s, int) or s <= 0 for s in sizes) or analysis_max_edge <= 0:
        raise ValueError("thumbnail sizes and analysis_max_edge must be positive integers")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"duplicate thumbnail sizes: {sizes}")
    targets = [_Target(f"thumb_{s}", s, "WEBP") for s in sizes]
    targets.append(_Target("analysis", analysis_max_edge, "JPEG"))
    return sorted(targets, key=lambda t: t.edge, reverse=True)


# --------------------------------------------------------------------------- detection


def _detect_format(data: bytes) -> _Format:
    """The accepted format the bytes start with, else ``unsupported_format``/``not_an_image``."""
    if data.startswith(b"\xff\xd8\xff"):
        return _Format("JPEG", "image/jpeg")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _Format("PNG", "image/png")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _Format("GIF", "image/gif")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _Format("WEBP", "image/webp")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _Format("HEIF", _HEIF_BRANDS[data[8:12]])
    other = _identify_other(data)
    if other is None:
        raise BadImage("not_an_image", "the bytes are not a recognised image format")
    raise BadImage("unsupported_format", f"{other} images are not supported")


def _identify_other(data: bytes) -> str | None:
    """The name of a format Pillow recognises from the header (no pixels decoded), or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or "unknown"
    except Image.DecompressionBombError:
        return "oversized"  # a valid header of some format we would not accept anyway
    except Exception:
        # UnidentifiedImageError, or a plugin accepted the signature and then choked on what
        # follows: either way, nothing we could use.
        return None


# --------------------------------------------------------------------------- decoding


class _Source(io.BytesIO):
    """The upload as a stream that remembers whether a decoder needed bytes past the end."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data
        self.read_past_end = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        wanted = -1 if size is None else size
        if (not chunk and wanted != 0) or 0 < len(chunk) < wanted <= _HEADER_READ:
            self.read_past_end = True
        return chunk


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif() -> None:
    """Register pillow-heif's opener, once, the first time a HEIF upload is seen."""
    global _heif_registered
    if _heif_registered:
        return
    with _heif_lock:
        if not _heif_registered:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_registered = True


def _open(source: _Source, fmt: _Format) -> ImageFile.ImageFile:
    """Parse the header with the plugin of the detected format.

    The plugin is called directly rather than through ``Image.open`` so that the size check is
    ours (``max_pixels``) and not Pillow's global ``MAX_IMAGE_PIXELS``.
    """
    if fmt.name == "HEIF":
        _register_heif()
    for load_plugins in (Image.preinit, Image.init):  # the common ones first, then all
        if fmt.name in Image.OPEN:
            break
        load_plugins()
    if fmt.name not in Image.OPEN:
        raise BadImage("unsupported_format", f"no {fmt.name} decoder is installed")
    factory, _accept = Image.OPEN[fmt.name]
    image = factory(source, None)
    if not isinstance(image, ImageFile.ImageFile):  # pragma: no cover - plugin contract
        raise BadImage("undecodable_image", f"the {fmt.name} decoder returned no image")
    return image


def _check_shape(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise BadImage(
            "decompression_bomb",
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
        )
    if min(width, height) < 1:
        raise BadImage("undecodable_image", f"the header declares a {width}x{height} image")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadImage(
            "extreme_aspect_ratio",
            f"{width}x{height}: one edge is more than {MAX_ASPECT_RATIO} times the other",
        )


def _header_size(data: bytes, fmt: _Format) -> tuple[int, int] | None:
    """The size the file's header declares, read from the bytes (None: not read here).

    Checked before any decoder sees the file: libwebp's demuxer allocates a canvas of the
    declared size when it opens a file, before Pillow could check anything.
    """
    if fmt.name == "PNG" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if fmt.name == "GIF" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if fmt.name == "WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            width = 1 + int.from_bytes(data[24:27], "little")
            height = 1 + int.from_bytes(data[27:30], "little")
            return width, height
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})


def _without_png_text(data: bytes) -> bytes:
    """The PNG without its text chunks (nothing a rendition keeps; zTXt/iTXt would otherwise
    be decompressed into memory). Malformed chunk structure is left for the decoder to judge."""
    offset = 8
    kept = [data[:8]]
    dropped = False
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            break
        if kind in _PNG_TEXT_CHUNKS:
            dropped = True
        else:
            kept.append(data[offset:end])
        offset = end
        if kind == b"IEND":
            break
    if not dropped:
        return data
    kept.append(data[offset:])
    return b"".join(kept)


def _draft(image: ImageFile.ImageFile, size: tuple[int, int]) -> _Box | None:
    """Ask the JPEG decoder for the smallest DCT scale (1/2, 1/4, 1/8) still >= ``size``.

    Returns the box of the decoded image that corresponds to the full original, for resize.
    """
    if size == image.size:
        return None
    result = image.draft("RGB", size)
    if result is None:
        return None
    x0, y0, x1, y1 = result[1]
    return (float(x0), float(y0), float(x1), float(y1))


def _check_complete(source: _Source, fmt: _Format) -> None:
    """Fail a decode that needed bytes past the end even if Pillow let it through.

    With Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` a truncated file already
    raises; this keeps the answer the same if other code in the process sets it to True (Pillow
    and pillow-heif then fill the missing part with grey). This module never sets that global.
    """
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    if source.read_past_end or (lenient and fmt.name == "HEIF" and _box_overruns(source.data)):
        raise BadImage("truncated_image", "the image data ends before the image does")


def _box_overruns(data: bytes) -> bool:
    """Whether an ISO-BMFF (HEIF) top-level box claims to extend past the end of the data."""
    offset = 0
    while offset + 8 <= len(data):
        size, _kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > len(data):
                return True
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:  # the box runs to the end of the file
            return False
        if size < 8:
            return False  # not a box structure we can judge; leave it to the decoder
        offset += size
    return offset != len(data)


@contextmanager
def _decoder_errors(source: _Source, fmt: _Format) -> Iterator[None]:
    """Map whatever the decoder raises for this input to a ``BadImage``."""
    try:
        yield
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage("decompression_bomb", str(exc)) from exc
    except _DECODER_ERRORS as exc:
        raise _decode_failure(exc, source, fmt) from exc
    except Exception as exc:
        raise _decode_failure(exc, source, fmt, unexpected=True) from exc


def _decode_failure(
    exc: Exception, source: _Source, fmt: _Format, *, unexpected: bool = False
) -> BadImage:
    prefix = "unexpected error from the" if unexpected else "the"
    detail = f"{prefix} {fmt.name} decoder: {type(exc).__name__}: {exc}"
    if _looks_truncated(exc, source, fmt):
        return BadImage("truncated_image", detail)
    return BadImage("undecodable_image", detail)


def _looks_truncated(exc: Exception, source: _Source, fmt: _Format) -> bool:
    """Whether the failure comes from the data ending early (rather than being corrupt)."""
    if source.read_past_end or isinstance(exc, EOFError):
        return True
    message = str(exc).lower()
    if any(hint in message for hint in _TRUNCATION_HINTS):
        return True
    # WebP and HEIF are read whole, so the stream cannot tell; their containers state lengths.
    if fmt.name == "WEBP" and len(source.data) >= 8:
        (riff_size,) = struct.unpack_from("<I", source.data, 4)
        return len(source.data) < riff_size + 8
    return fmt.name == "HEIF" and _box_overruns(source.data)


def _orientation(image: Image.Image) -> tuple[int, tuple[ImageWarning, ...]]:
    """The EXIF orientation (1-8), 1 when there is none.

    An unreadable EXIF block costs its orientation, not the picture: the pixels are used as
    stored and a warning says why they may be sideways.
    """
    raw = image.info.get("exif")
    if raw and not _has_tiff_header(raw):
        return 1, (_exif_warning("the EXIF block has no valid TIFF header"),)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exif = Image.Exif()
            if raw:
                exif.load(raw)  # parsed afresh: Pillow may have parsed (and cached) it already
            value = (
                exif.get(ExifTags.Base.Orientation, 1)
                if raw
                else image.getexif().get(ExifTags.Base.Orientation, 1)
            )
        except _EXIF_ERRORS as error:
            return 1, (_exif_warning(f"unreadable EXIF block ({type(error).__name__})"),)
    if raw and caught:
        return 1, (_exif_warning(f"unreadable EXIF block ({caught[0].message})"),)
    return (value if isinstance(value, int) and value in _ORIENTATION_FIX else 1), ()


def _exif_warning(problem: str) -> ImageWarning:
    return ImageWarning("exif_unreadable", f"{problem}; its EXIF orientation is not applied")


def _has_tiff_header(raw: bytes) -> bool:
    body = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    return body[:4] in (b"II*\x00", b"MM\x00*")


def _oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENTATION_FIX.get(orientation)
    return image if method is None else image.transpose(method)


def _rgb_icc_profile(image: Image.Image) -> bytes | None:
    """The source's ICC profile when it describes RGB data (what the renditions hold)."""
    icc = image.info.get("icc_profile")
    if isinstance(icc, bytes) and icc[16:20] == b"RGB " and image.mode in ("RGB", "RGBA", "P"):
        return icc
    return None


# --------------------------------------------------------------------------- pixels


def _working_image(image: Image.Image) -> Image.Image:
    """RGB, or premultiplied RGBa when the image has (non-trivial) transparency.

    Premultiplying once here (rather than inside every ``resize``) keeps transparent pixels'
    colours from bleeding and lets resizes run in strips without converting the whole image.
    """
    if image.mode.startswith("I"):
        # 16-bit greyscale (PNG): scale to 8 bits rather than clipping at 255.
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode == "RGB":
        return image
    if not image.has_transparency_data:
        return image.convert("RGB")
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    low, _high = rgba.getchannel("A").getextrema()
    return rgba.convert("RGB") if low == 255 else rgba.convert("RGBa")


def _fit(size: tuple[int, int], edge: int) -> tuple[int, int]:
    """``size`` scaled so that its long edge is ``edge``; unchanged if already that small."""
    width, height = size
    long_edge = max(width, height)
    if long_edge <= edge:
        return width, height
    scale = edge / long_edge
    if width >= height:
        return edge, max(1, round(height * scale))
    return max(1, round(width * scale)), edge


def _resize(image: Image.Image, size: tuple[int, int], box: _Box | None = None) -> Image.Image:
    """LANCZOS resize of ``box`` (default: all of ``image``) to ``size``.

    Like ``Image.resize(..., reducing_gap=2.0)``: an integer ``reduce`` first when shrinking
    by at least twice the gap, then LANCZOS for the rest.
    """
    full: _Box = (0.0, 0.0, float(image.width), float(image.height))
    box = full if box is None else box
    if image.size == size and box == full:
        return image
    image, box = _reduce(image, size, box)
    return _resample(image, size, box)


def _reduce(image: Image.Image, size: tuple[int, int], box: _Box) -> tuple[Image.Image, _Box]:
    factor_x = max(1, int((box[2] - box[0]) / size[0] / _REDUCING_GAP))
    factor_y = max(1, int((box[3] - box[1]) / size[1] / _REDUCING_GAP))
    if factor_x == factor_y == 1:
        return image, box
    reduced = image.reduce((factor_x, factor_y))
    return reduced, (
        box[0] / factor_x,
        box[1] / factor_y,
        box[2] / factor_x,
        box[3] / factor_y,
    )


def _resample(image: Image.Image, size: tuple[int, int], box: _Box) -> Image.Image:
    """LANCZOS resample, in horizontal strips on several threads for big outputs.

    Pillow releases the GIL while resampling and computes each output row from the whole
    source (the box only sets the mapping), so the strips join without seams: the result is
    the same as one ``resize`` (up to float rounding of the strip boxes).
    """
    pool = _pool()
    width, height = size
    strips = min(_workers(), height)
    if pool is None or width * height < _PARALLEL_MIN_PIXELS or strips < 2:
        return image.resize(size, _RESAMPLE, box=box)
    rows = [round(height * i / strips) for i in range(strips + 1)]
    x0, y0, x1, y1 = box
    edges = [y0 + (y1 - y0) * row / height for row in rows]
    edges[-1] = y1  # exactly, so that rounding never pushes the box past the image
    jobs = [
        pool.submit(image.resize, (width, bottom - top), _RESAMPLE, (x0, upper, x1, lower))
        for (top, bottom), (upper, lower) in zip(
            itertools.pairwise(rows), itertools.pairwise(edges), strict=True
        )
    ]
    result = Image.new(image.mode, size)
    for top, job in zip(rows, jobs, strict=False):
        result.paste(job.result(), (0, top))
    return result


_pool_lock = threading.Lock()
_pool_instance: ThreadPoolExecutor | None = None


def _workers() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, _MAX_WORKERS))


def _pool() -> ThreadPoolExecutor | None:
    """A process-wide pool for resize strips and encodes; None on a single CPU."""
    global _pool_instance
    if _workers() < 2:
        return None
    with _pool_lock:
        if _pool_instance is None:
            _pool_instance = ThreadPoolExecutor(_workers(), thread_name_prefix="images")
        return _pool_instance


# --------------------------------------------------------------------------- libvips

# Pillow modes whose pixels libvips decodes to the same 8-bit RGB(A) values.
_VIPS_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "1"})
_VIPS_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
_vips_lock = threading.Lock()
_vips_module: object | None = None


def _vips() -> Any:
    """``pyvips`` (imported on first use, its operation cache off), or None without libvips."""
    global _vips_module
    if _vips_module is None:
        with _vips_lock:
            if _vips_module is None:
                try:
                    import pyvips

                    pyvips.cache_set_max(0)  # nothing kept between images
                    _vips_module = pyvips
                except (ImportError, OSError):
                    _vips_module = False
    return _vips_module or None


def _vips_can_render(image: ImageFile.ImageFile, fmt: _Format, data: bytes) -> bool:
    if fmt.name not in _VIPS_FORMATS or image.mode not in _VIPS_MODES:
        return False
    if fmt.name == "PNG" and "exif" not in image.info and b"eXIf" in data:
        return False  # EXIF after the pixels: Pillow reads it only by decoding them
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        return False  # keep Pillow's answers if the process asked for lenient decoding
    return _vips() is not None


def _vips_first(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The largest rendition's pixels, as ``_working_image`` would give them (RGB or RGBa).

    ``thumbnail_buffer`` shrinks on load where the format allows, resamples with lanczos3 in
    premultiplied alpha, and here neither rotates (orientation is applied later, from the
    EXIF Pillow parsed) nor converts colour (the source's ICC profile is kept as is).
    """
    pyvips = _vips()
    thumb = pyvips.Image.thumbnail_buffer(
        data,
        size[0],
        height=size[1],
        size="force",
        no_rotate=True,
        option_string="fail_on=truncated",
    ).copy_memory()  # decoded once (the source is read sequentially), at most the rendition
    if thumb.format != "uchar":  # 16-bit greyscale or RGB: scale to 8 bits
        thumb = thumb.colourspace("b-w" if thumb.bands <= 2 else "srgb")
    if thumb.bands <= 2:  # greyscale (+ alpha)
        thumb = thumb.colourspace("srgb")
    if thumb.bands == 4 and thumb.extract_band(3).min() == 255:
        thumb = thumb.extract_band(0, n=3)
    mode = "RGBA" if thumb.bands == 4 else "RGB"
    pixels = Image.frombytes(mode, (thumb.width, thumb.height), thumb.write_to_memory())
    return pixels.convert("RGBa") if mode == "RGBA" else pixels


# --------------------------------------------------------------------------- encoding


def _render(
    first: Image.Image, size: tuple[int, int], targets: list[_Target], icc: bytes | None
) -> dict[str, Rendition]:
    """Each target resized from the previous (larger) one, encoded while the next resizes."""
    pool = _pool()
    pending: dict[str, Future[Rendition]] = {}
    submitted: set[int] = set()
    current = first
    for target in targets:
        current = _resize(current, _fit(size, target.edge))
        output = current
        if target.encoder == "JPEG":  # the analysis derivative
            output = _pad_to_aspect(current, ANALYSIS_MAX_ASPECT)
        if id(output) in submitted:
            # Not resized (the image is smaller than this target too). Pillow's save keeps
            # per-call state on the image object, so two encoders must not share one.
            output = output.copy()
        submitted.add(id(output))
        if pool is None:
            pending[target.name] = Future()
            pending[target.name].set_result(_encode(output, target, icc))
        else:
            pending[target.name] = pool.submit(_encode, output, target, icc)
    return {name: job.result() for name, job in pending.items()}


def _encode(image: Image.Image, target: _Target, icc: bytes | None) -> Rendition:
    if image.mode == "RGBa":
        image = image.convert("RGBA")
    buffer = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if target.encoder == "WEBP":
        image.save(buffer, "WEBP", quality=_WEBP_QUALITY, method=_WEBP_METHOD, **extra)
        content_type = "image/webp"
    else:
        _on_white(image).save(buffer, "JPEG", quality=_JPEG_QUALITY, **extra)
        content_type = "image/jpeg"
    width, height = image.size
    return Rendition(target.name, buffer.getvalue(), content_type, width, height)


def _pad_to_aspect(image: Image.Image, max_aspect: int) -> Image.Image:
    """``image`` centred on a white canvas whose long edge is at most ``max_aspect`` times its
    short edge (unchanged when it already is)."""
    width, height = image.size
    short = -(-max(width, height) // max_aspect)  # ceil
    if min(width, height) >= short:
        return image
    canvas_size = (width, short) if width >= height else (short, height)
    mode = "RGBA" if image.mode in ("RGBa", "RGBA") else "RGB"
    source = image.convert("RGBA") if image.mode == "RGBa" else image
    canvas = Image.new(mode, canvas_size, (*_WHITE, 255) if mode == "RGBA" else _WHITE)
    canvas.paste(source, ((canvas_size[0] - width) // 2, (canvas_size[1] - height) // 2))
    return canvas


def _on_white(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, _WHITE)
    background.paste(image, mask=image.getchannel("A"))
    return background
