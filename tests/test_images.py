"""runtime.domain.images: renditions from upload bytes, and a specific reason for bad uploads."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageCms, ImageFile, ImageOps, ImageStat

from runtime.domain.errors import PermanentError
from runtime.domain.images import BadImage, ProcessedImage, Rendition, process_image
from tests.conftest import dataset
from tests.corpus import (
    bad_image_corpus,
    garbage_exif_jpeg,
    sample_heic,
    sample_image,
    sample_jpeg,
    sample_png,
    write_corpus,
)

LANCZOS = Image.Resampling.LANCZOS
EXIF_ORIENTATION = 0x0112


# --------------------------------------------------------------------------- helpers


def encode(image: Image.Image, format_name: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format_name, **params)
    return buffer.getvalue()


def decode(rendition: Rendition) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio of two same-sized images, in dB (RGB)."""
    assert a.size == b.size
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(ImageStat.Stat(diff).sum2) / (3 * a.width * a.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def rendition(result: ProcessedImage, name: str) -> Rendition:
    return next(r for r in result.renditions if r.name == name)


def assert_well_formed(result: ProcessedImage, *, analysis_max_edge: int = 1568) -> None:
    """Names, types, sizes and aspect ratio of the default renditions."""
    assert [r.name for r in result.renditions] == ["thumb_256", "thumb_1024", "analysis"]
    long_edge = max(result.width, result.height)
    for r in result.renditions:
        image = decode(r)
        assert image.size == (r.width, r.height)
        edge = analysis_max_edge if r.name == "analysis" else int(r.name.split("_")[1])
        assert max(r.width, r.height) == min(edge, long_edge)
        assert abs(r.width / r.height - result.width / result.height) < 0.02
        if r.name == "analysis":
            assert (r.content_type, image.format, image.mode) == ("image/jpeg", "JPEG", "RGB")
        else:
            assert (r.content_type, image.format) == ("image/webp", "WEBP")


# --------------------------------------------------------------------------- accepted formats


@pytest.mark.parametrize(
    ("format_name", "content_type", "params"),
    [
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("PNG", "image/png", {}),
        ("WEBP", "image/webp", {"quality": 90}),
        ("GIF", "image/gif", {}),
    ],
)
def test_each_accepted_format(format_name: str, content_type: str, params: dict) -> None:
    source = sample_image(1200, 900, seed=7)
    result = process_image(encode(source, format_name, **params))
    assert (result.format, result.content_type) == (format_name, content_type)
    assert (result.width, result.height) == (1200, 900)
    assert_well_formed(result)
    reference = source.resize((1024, 768), LANCZOS)
    assert psnr(decode(rendition(result, "thumb_1024")), reference) > 25  # GIF: 256 colours


def test_heic() -> None:
    result = process_image(sample_heic())
    assert (result.format, result.content_type) == ("HEIF", "image/heic")
    assert (result.width, result.height) == (640, 480)
    assert_well_formed(result)
    sizes = [(r.width, r.height) for r in result.renditions]
    assert sizes == [(256, 192), (640, 480), (640, 480)]


def test_large_jpeg_uses_reduced_decoding_and_keeps_quality() -> None:
    """4000x3000: DCT-scaled decode + chained resizes stay close to a full LANCZOS resize."""
    data = sample_jpeg(4000, 3000, seed=11)
    result = process_image(data)
    assert (result.format, result.width, result.height) == ("JPEG", 4000, 3000)
    assert_well_formed(result)
    sizes = {r.name: (r.width, r.height) for r in result.renditions}
    assert sizes == {"thumb_256": (256, 192), "thumb_1024": (1024, 768), "analysis": (1568, 1176)}

    full = Image.open(io.BytesIO(data)).convert("RGB")  # naive: full decode, LANCZOS
    for r in result.renditions:
        reference = full.resize((r.width, r.height), LANCZOS)
        ours = psnr(decode(r), reference)
        assert ours > 30, f"{r.name}: {ours:.1f} dB"
        # The resize path costs less than 1 dB over what the codec alone costs.
        codec_only = Image.open(io.BytesIO(encode_like(reference, r)))
        assert ours > psnr(codec_only, reference) - 1.0, r.name


def encode_like(image: Image.Image, r: Rendition) -> bytes:
    if r.content_type == "image/webp":
        return encode(image, "WEBP", quality=80, method=2)
    return encode(image, "JPEG", quality=85)


def test_exif_orientation_is_applied() -> None:
    """Orientation 6 (camera held upright): stored 1200x900, shown 900x1200."""
    source = sample_image(1200, 900, seed=5)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    data = encode(source, "JPEG", quality=92, exif=exif.tobytes())
    result = process_image(data)
    assert (result.width, result.height) == (900, 1200)
    assert_well_formed(result)
    assert [(r.width, r.height) for r in result.renditions] == [
        (192, 256),
        (768, 1024),
        (900, 1200),
    ]
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    thumb = rendition(result, "thumb_1024")
    assert psnr(decode(thumb), upright.resize((thumb.width, thumb.height), LANCZOS)) > 30


def test_large_rotated_jpeg() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 8
    data = encode(sample_image(4000, 3000, seed=2), "JPEG", exif=exif.tobytes())
    result = process_image(data)
    assert (result.width, result.height) == (3000, 4000)
    assert (rendition(result, "analysis").width, rendition(result, "analysis").height) == (
        1176,
        1568,
    )


def test_small_image_is_never_upscaled() -> None:
    result = process_image(encode(sample_image(200, 120), "PNG"))
    assert [(r.width, r.height) for r in result.renditions] == [(200, 120)] * 3


def test_custom_sizes_and_a_long_strip_padded_for_analysis() -> None:
    data = encode(sample_image(3000, 40), "PNG")
    result = process_image(data, thumbnail_sizes=(64, 512), analysis_max_edge=800)
    assert [(r.name, r.width, r.height) for r in result.renditions] == [
        ("thumb_64", 64, 1),
        ("thumb_512", 512, 7),
        ("analysis", 800, 200),  # 800x11 of picture, centred on white: at most 4:1
    ]
    analysis = decode(rendition(result, "analysis"))
    assert analysis.getpixel((400, 5)) == (255, 255, 255)
    assert analysis.getpixel((400, 100)) != (255, 255, 255)


@pytest.mark.parametrize("size", [(101, 1), (1, 101), (20_000, 1), (1, 20_000), (5050, 50)])
def test_extreme_aspect_ratios_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(BadImage) as caught:
        process_image(encode(Image.new("RGB", size, (90, 90, 90)), "PNG"))
    assert caught.value.reason == "extreme_aspect_ratio"
    assert f"{size[0]}x{size[1]}" in caught.value.detail


def test_the_largest_accepted_aspect_ratio_is_padded_for_analysis() -> None:
    result = process_image(encode(Image.new("RGB", (1, 100), (0, 0, 0)), "PNG"))
    assert [(r.width, r.height) for r in result.renditions] == [(1, 100), (1, 100), (25, 100)]


def test_bad_arguments_are_value_errors() -> None:
    data = sample_jpeg(100, 100)
    with pytest.raises(ValueError):
        process_image(data, thumbnail_sizes=(256, 256))
    with pytest.raises(ValueError):
        process_image(data, thumbnail_sizes=(0,))
    with pytest.raises(ValueError):
        process_image(data, max_pixels=0)


# --------------------------------------------------------------------------- colour and modes


def test_transparency_kept_in_thumbnails_and_white_in_analysis() -> None:
    image = sample_image(400, 300).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 200, 300))  # left half fully transparent
    result = process_image(encode(image, "PNG"))
    thumb = decode(rendition(result, "thumb_256"))
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((10, 100))[3] == 0
    assert thumb.getpixel((240, 100))[3] == 255
    analysis = decode(rendition(result, "analysis"))
    assert all(channel > 245 for channel in analysis.getpixel((10, 150)))


def test_opaque_alpha_channel_is_dropped() -> None:
    result = process_image(encode(sample_image(400, 300).convert("RGBA"), "PNG"))
    assert decode(rendition(result, "thumb_256")).mode == "RGB"


def sixteen_bit_grey() -> bytes:
    image = Image.new("I;16", (64, 64), 32768)  # mid grey on a 16-bit scale
    return encode(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(sample_image(300, 200).convert("CMYK"), "JPEG")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(sample_image(300, 200).convert("1"), "PNG"), id="1-bit"),
        pytest.param(encode(sample_image(300, 200).convert("L"), "PNG"), id="L"),
        pytest.param(encode(sample_image(300, 200).convert("LA"), "PNG"), id="LA"),
        pytest.param(encode(sample_image(300, 200).convert("P"), "PNG"), id="P"),
        pytest.param(encode(sample_image(300, 200).convert("L"), "JPEG"), id="grey-jpeg"),
        pytest.param(cmyk_jpeg(), id="cmyk-jpeg"),
        pytest.param(sixteen_bit_grey(), id="16-bit"),
    ],
)
def test_image_modes(data: bytes) -> None:
    result = process_image(data)
    analysis = decode(rendition(result, "analysis"))
    assert analysis.mode == "RGB"
    assert decode(rendition(result, "thumb_256")).mode in ("RGB", "RGBA")


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    pixel = decode(rendition(process_image(sixteen_bit_grey()), "thumb_256")).getpixel((5, 5))
    assert all(120 <= channel <= 136 for channel in pixel[:3])


def test_gif_transparency_and_first_frame() -> None:
    red = Image.new("P", (120, 80))
    red.putpalette([255, 0, 0, 0, 0, 255, 0, 0, 0])
    red.paste(0, (0, 0, 120, 80))
    red.paste(2, (0, 0, 20, 80))  # a transparent stripe on the left
    blue = red.copy()
    blue.paste(1, (0, 0, 120, 80))
    data = encode(red, "GIF", save_all=True, append_images=[blue], transparency=2, duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    result = process_image(data)
    thumb = decode(rendition(result, "thumb_256")).convert("RGBA")
    assert thumb.getpixel((5, 40))[3] == 0
    assert thumb.getpixel((80, 40))[:3] == pytest.approx((255, 0, 0), abs=8)
    assert decode(rendition(result, "analysis")).getpixel((5, 40)) == pytest.approx(
        (255, 255, 255), abs=8
    )


def test_animated_webp_first_frame() -> None:
    frames = [Image.new("RGB", (100, 100), colour) for colour in ("green", "blue")]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    result = process_image(data)
    assert result.format == "WEBP"
    assert decode(rendition(result, "thumb_256")).getpixel((50, 50)) == pytest.approx(
        (0, 128, 0), abs=8
    )


def test_renditions_drop_exif_and_keep_the_icc_profile() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    data = encode(sample_image(800, 600), "JPEG", exif=exif.tobytes(), icc_profile=icc)
    for r in process_image(data).renditions:
        image = decode(r)
        assert not image.getexif(), r.name
        assert image.info.get("icc_profile") == icc, r.name


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("name", "case"), sorted(bad_image_corpus().items()))
def test_bad_image_corpus(name: str, case: tuple[bytes, str]) -> None:
    data, expected = case
    with pytest.raises(BadImage) as caught:
        process_image(data)
    assert caught.value.reason == expected, caught.value.detail
    assert caught.value.detail
    assert isinstance(caught.value, PermanentError)


def test_corpus_covers_every_reason() -> None:
    reasons = {reason for _data, reason in bad_image_corpus().values()}
    assert reasons == {
        "empty_file",
        "not_an_image",
        "truncated_image",
        "decompression_bomb",
        "unsupported_format",
        "undecodable_image",
        "extreme_aspect_ratio",
    }


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.filterwarnings("ignore:Tag data larger than file")
def test_garbage_exif_costs_the_orientation_not_the_picture() -> None:
    result = process_image(garbage_exif_jpeg())
    assert (result.width, result.height) == (640, 480)
    assert [w.code for w in result.warnings] == ["exif_unreadable"]
    assert "orientation is not applied" in result.warnings[0].detail
    assert_well_formed(result)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_truncated_exif_keeps_the_pixels_unrotated() -> None:
    """Orientation 6 in an EXIF block cut short: the picture as stored, and a warning."""
    source = sample_image(640, 480, seed=15)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    exif[0x010F] = "Phone"
    data = encode(source, "JPEG", quality=95, exif=exif.tobytes()[:20])
    result = process_image(data)
    assert (result.width, result.height) == (640, 480)
    assert [w.code for w in result.warnings] == ["exif_unreadable"]
    thumb = rendition(result, "thumb_256")
    assert psnr(decode(thumb), source.resize((thumb.width, thumb.height), LANCZOS)) > 28


def test_a_readable_exif_gives_no_warning() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    result = process_image(encode(sample_image(400, 300), "JPEG", exif=exif.tobytes()))
    assert result.warnings == ()
    assert (result.width, result.height) == (300, 400)


def test_png_text_chunks_are_dropped_before_decoding() -> None:
    """Compressed text that would decompress to 50 MB is never expanded."""
    from tests.corpus import hostile_corpus

    data, _expected = hostile_corpus()["text-chunks-50mb.png"]
    assert data.count(b"zTXt") == 50
    result = process_image(data)
    assert (result.width, result.height) == (600, 400)
    plain = process_image(sample_png(seed=2))
    assert [r.data for r in result.renditions] == [r.data for r in plain.renditions]


@pytest.mark.parametrize("name", ["claims-65000.png", "claims-65000.webp"])
def test_sizes_claimed_by_headers_are_refused_before_any_decoder_runs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.domain import images
    from tests.corpus import hostile_corpus

    def no_decoder(*_: object) -> None:
        raise AssertionError("a decoder was created for an oversized header")

    monkeypatch.setattr(images, "_open", no_decoder)
    data, _expected = hostile_corpus()[name]
    with pytest.raises(BadImage) as caught:
        process_image(data)
    assert caught.value.reason == "decompression_bomb"
    assert "65000x65000" in caught.value.detail


def test_bomb_is_rejected_from_the_header_against_max_pixels() -> None:
    data = sample_jpeg(1200, 900)
    with pytest.raises(BadImage) as caught:
        process_image(data, max_pixels=1200 * 900 - 1)
    assert caught.value.reason == "decompression_bomb"
    assert process_image(data, max_pixels=1200 * 900).width == 1200


@pytest.mark.parametrize("global_limit", [None, 1000])
def test_pillow_global_pixel_limit_is_not_used(
    monkeypatch: pytest.MonkeyPatch, global_limit: int | None
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", global_limit)
    assert process_image(sample_png(300, 200)).width == 300
    bomb, reason = bad_image_corpus()["bomb.png"]
    with pytest.raises(BadImage, match=reason):
        process_image(bomb)


@pytest.mark.parametrize("format_name", ["JPEG", "PNG", "WEBP", "GIF", "HEIF"])
def test_truncated_anywhere_after_the_signature(format_name: str) -> None:
    if format_name == "HEIF":
        data = sample_heic()
    else:
        data = encode(sample_image(500, 400, seed=3), format_name)
    for percent in (1, 5, 10, 25, 50, 75, 90, 99):
        cut = max(16, len(data) * percent // 100)
        with pytest.raises(BadImage) as caught:
            process_image(data[:cut])
        assert caught.value.reason == "truncated_image", (percent, caught.value.detail)


@pytest.mark.parametrize("format_name", ["JPEG", "PNG", "GIF", "HEIF"])
def test_truncation_detected_even_if_pillow_is_told_to_load_truncated_images(
    monkeypatch: pytest.MonkeyPatch, format_name: str
) -> None:
    """Another module setting Pillow's global LOAD_TRUNCATED_IMAGES must not change answers."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    if format_name == "HEIF":
        data = sample_heic()
    else:
        data = encode(sample_image(500, 400, seed=3), format_name)
    for percent in (10, 50, 90, 99):
        with pytest.raises(BadImage) as caught:
            process_image(data[: len(data) * percent // 100])
        assert caught.value.reason == "truncated_image", (percent, caught.value.detail)
    assert process_image(data).width in (500, 640)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("format_name", ["JPEG", "PNG", "WEBP", "GIF", "HEIF"])
def test_corrupt_bytes_never_leak_other_exceptions(format_name: str) -> None:
    if format_name == "HEIF":
        original = sample_heic()
    else:
        original = encode(sample_image(300, 200, seed=8), format_name)
    rng = random.Random(format_name)
    for _ in range(25):
        data = bytearray(original)
        for _ in range(rng.choice((1, 8, 64))):
            data[rng.randrange(12, len(data))] = rng.randrange(256)
        try:
            result = process_image(bytes(data))
        except BadImage as error:
            # (a corrupt size field can announce a gigantic frame: decompression_bomb)
            expected = {"truncated_image", "undecodable_image", "decompression_bomb"}
            assert error.reason in expected, error.detail
        else:
            assert len(result.renditions) == 3


def test_write_corpus(tmp_path: Path) -> None:
    written = write_corpus(tmp_path / "bad")
    assert {path.name for path in written} == set(bad_image_corpus())
    assert all(path.read_bytes() == bad_image_corpus()[path.name][0] for path in written)


# --------------------------------------------------------------------------- real data


@pytest.mark.dataset
def test_real_screenshots() -> None:
    folder = dataset("screenshots")
    files = sorted(folder.glob("*.jpg"))[:3]
    assert files, f"no .jpg files in {folder}"
    for path in files:
        result = process_image(path.read_bytes())
        assert result.format == "JPEG"
        assert result.height > result.width > 1000  # iPhone portrait screenshots
        assert_well_formed(result)


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return exif.tobytes()


def _photo(mode: str) -> Image.Image:
    image = sample_image(2400, 1600, seed=11)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").rotate(90).resize(image.size))
    return image


@pytest.mark.parametrize(
    ("format_name", "mode", "params"),
    [
        ("JPEG", "RGB", {"quality": 92, "exif": _rotated_exif()}),
        ("PNG", "RGBA", {}),
        ("WEBP", "RGB", {"quality": 90}),
    ],
)
def test_libvips_path_matches_the_pillow_path(
    monkeypatch: pytest.MonkeyPatch, format_name: str, mode: str, params: dict
) -> None:
    """libvips decodes and makes the largest rendition where it can; the result is the Pillow
    path's (same sizes, orientation, alpha handling, encoders) up to resampling rounding."""
    import runtime.domain.images as images

    pyvips = pytest.importorskip("pyvips")
    data = encode(_photo(mode), format_name, **params)
    calls: list[int] = []
    real = pyvips.Image.thumbnail_buffer

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pyvips.Image, "thumbnail_buffer", counting)
    with_vips = process_image(data)
    assert calls == [1]
    monkeypatch.setattr(images, "_vips_module", False)  # as on a machine without libvips
    with_pillow = process_image(data)
    assert calls == [1]

    assert (with_vips.width, with_vips.height) == (with_pillow.width, with_pillow.height)
    for ours, reference in zip(with_vips.renditions, with_pillow.renditions, strict=True):
        assert (ours.name, ours.content_type, ours.width, ours.height) == (
            reference.name,
            reference.content_type,
            reference.width,
            reference.height,
        )
        a, b = decode(ours), decode(reference)
        assert a.mode == b.mode
        if a.mode == "RGBA":  # colour under full transparency is meaningless: compare as shown
            assert psnr(a.getchannel("A"), b.getchannel("A")) > 38
            white = Image.new("RGBA", a.size, "white")
            a, b = Image.alpha_composite(white, a), Image.alpha_composite(white, b)
        assert psnr(a.convert("RGB"), b.convert("RGB")) > 38
