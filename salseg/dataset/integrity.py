"""Is an image file complete? Checked before every image/label read (SimpleITK decodes what is there of a truncated
file and fills the rest with zeros, so it cannot be trusted to notice).

- gzip streams (``.nii.gz``, gzip-encoded NRRD): decompressed to the end; the trailer's CRC-32 and length must match
  and the stream must end (a cut file ends early);
- NIfTI-1/2, MetaImage (``.mha``/``.mhd`` + data file, raw or zlib-compressed) and NRRD (raw or gzip): the voxel data
  the header declares (sizes x channels x bytes per voxel, after the header / ``vox_offset``) must all be there;
- PNG/BMP/JPG/TIF: Pillow decodes the whole file (its truncation and PNG chunk-CRC checks); formats Pillow cannot
  decode are left to SimpleITK.

:func:`verify_image_file` raises :class:`DataError` naming the file and what is missing.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from salseg.dataset.endings import NATURAL_ENDINGS, file_ending
from salseg.errors import DataError

CHUNK = 1 << 20
_META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
               "MET_DOUBLE": 8}


def _bad(path: Path, why: str) -> DataError:
    return DataError(f"{path}: truncated or corrupt image file ({why})")


def _gunzip_size(path: Path, stream, keep: int = 0, sink=None) -> tuple[int, bytes]:
    """Decompress a gzip stream to its end (CRC and length checked by :mod:`gzip`) -> (size, first ``keep`` bytes);
    ``sink(chunk)`` receives every decompressed chunk."""
    total, head = 0, b""
    start = stream.tell()
    if stream.read(2) != b"\x1f\x8b":
        raise DataError(f"{path}: unreadable image (not gzip data where the file's format says gzip)")
    stream.seek(start)
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as g:
            while True:
                chunk = g.read(CHUNK)
                if not chunk:
                    break
                if len(head) < keep:
                    head += chunk[: keep - len(head)]
                if sink is not None:
                    sink(chunk)
                total += len(chunk)
    except EOFError:
        raise _bad(path, "the gzip stream ends early") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise _bad(path, f"gzip: {e}") from None
    return total, head


_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _nifti_header(path: Path, hdr: bytes) -> tuple[int, int, int, str]:
    """(bytes the file must hold = vox_offset + voxel data, data offset, datatype code, byte order) of a NIfTI-1/2
    header."""
    if len(hdr) < 348:
        raise _bad(path, f"NIfTI header needs 348 bytes, file has {len(hdr)}")
    for end in "<>":
        size = struct.unpack(end + "i", hdr[:4])[0]
        if size == 348:
            dims = struct.unpack(end + "8h", hdr[40:56])
            dtype, bitpix = struct.unpack(end + "2h", hdr[70:74])
            offset = int(struct.unpack(end + "f", hdr[108:112])[0])
            break
        if size == 540:
            if len(hdr) < 540:
                raise _bad(path, f"NIfTI-2 header needs 540 bytes, file has {len(hdr)}")
            dtype, bitpix = struct.unpack(end + "2h", hdr[12:16])
            dims = struct.unpack(end + "8q", hdr[16:80])
            offset = struct.unpack(end + "q", hdr[168:176])[0]
            break
    else:
        raise _bad(path, "not a NIfTI header (sizeof_hdr is neither 348 nor 540)")
    n = int(dims[0])
    if not 1 <= n <= 7 or any(d < 0 for d in dims[1: n + 1]) or bitpix <= 0:
        raise _bad(path, f"NIfTI header declares dim {list(dims)} and bitpix {bitpix}")
    voxels = 1
    for d in dims[1: n + 1]:
        voxels *= int(d)
    offset = max(int(offset), size)
    return offset + voxels * bitpix // 8, offset, int(dtype), end


class _NonFinite:
    """Counts the NaN/Inf values of a NIfTI file's float voxel data, fed the (decompressed) file bytes in order."""

    def __init__(self, path: Path):
        self.path, self.head, self.pos, self.count = path, b"", 0, 0
        self.layout: tuple[int, int, np.dtype] | None = None  # (data start, data end, dtype) once the header is read
        self.carry = b""

    def _header(self) -> None:
        need, offset, dtype, end = _nifti_header(self.path, self.head)
        kind = _NIFTI_FLOATS.get(dtype)
        self.layout = (offset, need, np.dtype(end + kind) if kind else None)
        head, self.head, self.pos = self.head, b"", 0
        self.feed(head)

    def feed(self, chunk: bytes) -> None:
        if self.layout is None:
            self.head += chunk
            if len(self.head) >= 540:
                self._header()
            return
        start, stop, dtype = self.layout
        lo, hi = max(start - self.pos, 0), min(stop - self.pos, len(chunk))
        self.pos += len(chunk)
        if dtype is None or hi <= lo:
            return
        data = self.carry + chunk[lo:hi]
        usable = len(data) - len(data) % dtype.itemsize
        values = np.frombuffer(data, dtype, count=usable // dtype.itemsize)
        self.count += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.carry = data[usable:]

    def finish(self) -> None:
        if self.layout is None:  # a file shorter than 540 bytes
            self._header()


def _verify_nifti(path: Path, count_nonfinite: bool) -> int:
    """Check a NIfTI file is whole; with ``count_nonfinite`` return its NaN/Inf voxels (ITK reads them as 0).
    Each file is read once, in chunks (the count never holds the whole file)."""
    gz = path.name.lower().endswith(".gz")
    counter = _NonFinite(path) if count_nonfinite else None
    with open(path, "rb") as f:
        if gz:
            size, hdr = _gunzip_size(path, f, keep=540, sink=counter.feed if counter else None)
        else:
            size = path.stat().st_size
            hdr = f.read(540)
            if counter is not None:
                counter.feed(hdr)
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    if counter.layout is not None and counter.layout[2] is None:
                        break  # not float data: nothing to count
                    counter.feed(chunk)
    need, _, _, _ = _nifti_header(path, hdr)
    if size < need:
        raise _bad(path, f"the header declares {need} bytes of header and voxel data, the file holds {size}")
    if counter is None:
        return 0
    counter.finish()
    return counter.count


def _text_header(path: Path, stop) -> tuple[list[str], int]:
    """Header lines (decoded as latin-1) up to and including the line where ``stop(line)`` is true, and the byte
    offset just after it."""
    lines, offset = [], 0
    with open(path, "rb") as f:
        for raw in iter(lambda: f.readline(65536), b""):
            offset += len(raw)
            line = raw.decode("latin-1").rstrip("\r\n")
            lines.append(line)
            if stop(line) or len(lines) > 4096:
                break
    return lines, offset


def _check_raw_or_zlib(path: Path, data_path: Path, offset: int, need: int, compressed: str | None) -> None:
    """Bytes from ``offset`` of ``data_path``: raw (at least ``need``), or a zlib/gzip stream that inflates to its end
    and to exactly ``need`` bytes."""
    if not data_path.is_file():
        raise _bad(path, f"data file {data_path} not found")
    if compressed is None:
        have = data_path.stat().st_size - offset
        if have < need:
            raise _bad(path, f"the header declares {need} bytes of voxel data, {max(have, 0)} are there")
        return
    with open(data_path, "rb") as f:
        f.seek(offset)
        if compressed == "gzip":
            total, _ = _gunzip_size(path, f)
        else:
            d, total = zlib.decompressobj(zlib.MAX_WBITS | 32), 0  # zlib or gzip wrapper, trailer checked
            try:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    total += len(d.decompress(chunk))
                    if d.eof:
                        break
                total += len(d.flush())
            except zlib.error as e:
                raise _bad(path, f"compressed data: {e}") from None
            if not d.eof:
                raise _bad(path, "the compressed voxel data ends early")
    if total < need:
        raise _bad(path, f"the header declares {need} bytes of voxel data, the compressed data holds {total}")


def _verify_meta(path: Path) -> None:
    lines, offset = _text_header(path, lambda ln: ln.split("=")[0].strip() == "ElementDataFile")
    fields = {}
    for ln in lines:
        key, sep, value = ln.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    if "ElementDataFile" not in fields or "DimSize" not in fields:
        raise _bad(path, "MetaImage header without DimSize/ElementDataFile")
    if fields.get("BinaryData", "True").lower() == "false":
        return  # ASCII data: SimpleITK counts the values
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        size = _META_TYPES[fields.get("ElementType", "MET_UCHAR")]
    except (ValueError, KeyError):
        raise _bad(path, f"MetaImage header DimSize {fields['DimSize']!r} / ElementType "
                         f"{fields.get('ElementType')!r} not understood") from None
    need = size * channels
    for d in dims:
        need *= d
    where = fields["ElementDataFile"]
    if where.upper() == "LOCAL":
        data_path = path
    elif " " in where or "%" in where or where.upper().startswith("LIST"):
        return  # a file series: SimpleITK reads and checks each file
    else:
        data_path, offset = path.parent / where, int(fields.get("HeaderSize", "0") or 0)
        offset = max(offset, 0)
    compressed = "zlib" if fields.get("CompressedData", "False").lower() == "true" else None
    _check_raw_or_zlib(path, data_path, offset, need, compressed)


_NRRD_SIZES = [(re.compile(r"^(signed char|int8|int8_t|uchar|unsigned char|uint8|uint8_t)$"), 1),
               (re.compile(r"^((signed |unsigned )?short( int)?|u?int16(_t)?|ushort)$"), 2),
               (re.compile(r"^((signed |unsigned )?int|u?int32(_t)?|uint)$"), 4),
               (re.compile(r"^((signed |unsigned )?long long( int)?|u?int64(_t)?|u?longlong)$"), 8),
               (re.compile(r"^float$"), 4), (re.compile(r"^double$"), 8)]


def _verify_nrrd(path: Path) -> None:
    lines, offset = _text_header(path, lambda ln: ln.strip() == "")
    if not lines or not lines[0].startswith("NRRD"):
        raise _bad(path, "no NRRD magic line")
    fields = {}
    for ln in lines[1:]:
        if ln.startswith("#"):
            continue
        key, sep, value = ln.partition(":")
        if sep:
            fields[key.strip().lower()] = value.lstrip("=").strip()
    if fields.get("byte skip", "0") != "0" or fields.get("line skip", "0") != "0":
        return  # data position not determined by the header alone: SimpleITK checks
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
    except (KeyError, ValueError):
        raise _bad(path, f"NRRD header sizes {fields.get('sizes')!r} not understood") from None
    size = next((n for rx, n in _NRRD_SIZES if rx.match(fields.get("type", "").lower())), None)
    enc = fields.get("encoding", "raw").lower()
    if size is None or enc not in ("raw", "gzip", "gz"):
        return  # text/bzip2 encodings and block types: SimpleITK checks
    need = size
    for s in sizes:
        need *= s
    data_file = fields.get("data file") or fields.get("datafile")
    data_path = path
    if data_file:
        if " " in data_file or "%" in data_file or data_file.upper().startswith("LIST"):
            return
        data_path, offset = path.parent / data_file, 0
    _check_raw_or_zlib(path, data_path, offset, need, "gzip" if enc in ("gzip", "gz") else None)


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _verify_natural(path: Path) -> None:
    if file_ending(path) == ".png":
        with open(path, "rb") as f:
            f.seek(max(path.stat().st_size - len(PNG_END), 0))
            if f.read() != PNG_END:
                raise _bad(path, "PNG without its closing IEND chunk")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return
    try:
        with Image.open(path) as im:
            im.verify()  # PNG: chunk CRCs
        with Image.open(path) as im:
            im.load()    # every format: the whole pixel data decodes
    except UnidentifiedImageError:
        return  # a variant Pillow does not know: SimpleITK decides
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as e:
        text = str(e) or type(e).__name__
        if "not supported" in text or "unknown" in text.lower() and "truncat" not in text:
            return
        raise _bad(path, text) from None


def verify_image_file(path: str | Path, count_nonfinite: bool = False) -> int:
    """Raise DataError if ``path`` is truncated or corrupt (see module doc); a missing file raises too.

    Returns the number of NaN/Inf voxels of a float NIfTI file when ``count_nonfinite`` (ITK's reader replaces them
    by 0, so they are counted on the file's bytes), else 0.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    end = file_ending(path)
    try:
        if end in (".nii", ".nii.gz"):
            return _verify_nifti(path, count_nonfinite)
        elif end in (".mha", ".mhd"):
            _verify_meta(path)
        elif end == ".nrrd":
            _verify_nrrd(path)
        elif end in NATURAL_ENDINGS:
            _verify_natural(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return 0


__all__ = ["verify_image_file"]
