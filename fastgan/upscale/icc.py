"""Colour profiles (ICC) carried from an input image to its upscaled output: OpenCV neither reads nor writes them, so
a photograph in Display P3 or Adobe RGB came out read as sRGB, its colours shifted. The profile is read with
Pillow (from the header only) and embedded into OpenCV's PNG or JPEG bytes as the formats define it."""

from __future__ import annotations

import io
import struct
import threading
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Formats whose encoded bytes `with_icc_profile` embeds a profile into (TIFFs take it through tifffile).
EMBEDS = (".png", ".jpg", ".jpeg")
#: Profile bytes one JPEG APP2 segment holds (65 535 less the length, the "ICC_PROFILE\0" tag and two counters).
_JPEG_CHUNK = 65_519
_HEADER_ONLY = threading.Lock()


def read_icc_profile(data: bytes) -> bytes | None:
    """The ICC profile an encoded image carries (PNG iCCP, JPEG APP2, TIFF, WebP ICCP), or None. Only the header is
    parsed, so Pillow's decompression-bomb limit, which is about decoding, is lifted for it."""
    with _HEADER_ONLY:  # one reader at a time lifts and restores the limit (other Pillow users go without it then)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.info.get("icc_profile") or None
        except Exception:  # noqa: BLE001 (Pillow cannot parse what OpenCV decodes: no profile to carry, not an error)
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def profile_colour_space(profile: bytes) -> str:
    """The data colour space an ICC profile describes ("RGB", "GRAY", "CMYK", ...: header bytes 16–19)."""
    return profile[16:20].decode("ascii", errors="replace").strip()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(encoded: bytes, profile: bytes) -> bytes:
    """An iCCP chunk after IHDR (it must precede PLTE and IDAT)."""
    if not encoded.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    end_of_header = len(PNG_SIGNATURE) + 8 + struct.unpack(">I", encoded[8:12])[0] + 4  # length, type, data, CRC
    chunk = _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(profile))  # name, NUL, compression 0
    return encoded[:end_of_header] + chunk + encoded[end_of_header:]


def _jpeg(encoded: bytes, profile: bytes) -> bytes:
    """APP2 "ICC_PROFILE" segments after SOI and a JFIF APP0, the profile cut into numbered chunks."""
    if encoded[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    at = 2
    if encoded[at : at + 2] == b"\xff\xe0":  # JFIF APP0 stays first
        at += 2 + struct.unpack(">H", encoded[at + 2 : at + 4])[0]
    chunks = [profile[i : i + _JPEG_CHUNK] for i in range(0, len(profile), _JPEG_CHUNK)]
    if len(chunks) > 255:
        raise ValueError(f"an ICC profile of {len(profile)} bytes needs more than 255 JPEG segments")
    segments = b"".join(
        b"\xff\xe2"
        + struct.pack(">H", 2 + 12 + 2 + len(chunk))
        + b"ICC_PROFILE\x00"
        + bytes([i + 1, len(chunks)])
        + chunk
        for i, chunk in enumerate(chunks)
    )
    return encoded[:at] + segments + encoded[at:]


def with_icc_profile(encoded: bytes, suffix: str, profile: bytes) -> bytes:
    """`encoded` (OpenCV's PNG or JPEG bytes) with `profile` embedded.

    Raises:
        ValueError: another format, or bytes that are not of the format `suffix` names.
    """
    if suffix == ".png":
        return _png(encoded, profile)
    if suffix in (".jpg", ".jpeg"):
        return _jpeg(encoded, profile)
    raise ValueError(f"{suffix} images are written without an ICC profile")
