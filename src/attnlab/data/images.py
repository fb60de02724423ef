"""Decoding many small JPEG/PNG files of one known size, each header checked before any pixel is decoded.

An image file says in its header how large it is, and a decoder allocates
what the header says: a 1 KB PNG can declare 100000x100000 pixels. Each file
is therefore opened lazily with PIL (which reads the header only), refused
unless it is a JPEG or PNG of exactly the expected size, and only then
decoded: JPEGs in batches through torchvision's libjpeg-turbo decoder
(several times faster than PIL here: 52,000 images in ~2.5 s), everything
else, and JPEGs that decoder rejects, through PIL.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Hashable

from attnlab.data import DataError

if TYPE_CHECKING:  # imported where images are decoded, not where headers are checked
    import torch

FORMATS = ("JPEG", "PNG")


class ImageDecoder:
    """Collects (key, file bytes) pairs, checking each header on arrival; :meth:`finish` gives key -> (3, H, W) uint8.

    At most ``chunk`` JPEG files wait for a batched decode at any time, so the
    undecoded bytes held stay bounded however many files arrive.
    """

    def __init__(self, where: str, size: tuple[int, int] = (32, 32), chunk: int = 1024) -> None:
        self.where, self.size, self.chunk = where, size, chunk
        # numpy (3, H, W) arrays, or tensors from the batched decoder: torch is imported only once images
        # are decoded, so a source refused on its headers costs no more memory than reading them
        self.decoded: dict[Hashable, object] = {}
        self._pending: list[tuple[Hashable, str, bytes]] = []
        self._batch = None  # the batched JPEG decoder, made at the first batch

    def add(self, key: Hashable, name: str, blob: bytes) -> None:
        """Check ``blob``'s header (``name`` is how messages call the file); decode it now or in the next batch."""
        with self._open(name, blob) as im:
            if im.format == "JPEG":
                self._pending.append((key, name, blob))
            else:
                self.decoded[key] = self._pil(im, name)
        if len(self._pending) >= self.chunk:
            self._flush()

    def finish(self) -> dict[Hashable, "torch.Tensor"]:
        import torch

        self._flush()
        return {k: torch.from_numpy(v) if not isinstance(v, torch.Tensor) else v for k, v in self.decoded.items()}

    def _open(self, name: str, blob: bytes):
        from PIL import Image, UnidentifiedImageError

        w, h = self.size
        try:
            with warnings.catch_warnings():
                # PIL only warns below twice its pixel limit; a header that large is refused here too
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(blob), formats=FORMATS)  # reads the header, decodes nothing
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DataError(f"{self.where}: {name} declares a huge image ({err}); the images must be "
                            f"{w}x{h}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise DataError(f"{self.where}: cannot decode {name} ({err}); the image file is corrupt or not a "
                            f"{' or '.join(FORMATS)} image") from None
        if im.size != self.size:
            im.close()
            raise DataError(f"{self.where}: {name} is {im.size[0]}x{im.size[1]}; the images must be {w}x{h} "
                            f"(refused before decoding)")
        return im

    def _pil(self, im, name: str):
        """The image as a uint8 numpy array (3, H, W)."""
        import numpy as np
        from PIL import UnidentifiedImageError

        try:
            array = np.asarray(im.convert("RGB"))  # (H, W, 3)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise DataError(f"{self.where}: cannot decode {name} ({err}); the image file is corrupt "
                            f"or not an image") from None
        if array.shape[:2] != self.size[::-1]:
            raise DataError(f"{self.where}: {name} decodes to {array.shape[1]}x{array.shape[0]}, not the "
                            f"{self.size[0]}x{self.size[1]} its header declares")
        return array.transpose(2, 0, 1).copy()  # (3, H, W)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self._batch is None:
            self._batch = _batched_jpeg_decoder() or (lambda blobs: [None] * len(blobs))  # no torchvision: PIL
        try:
            batch = self._batch([blob for _, _, blob in pending])
        except RuntimeError:  # one bad file fails the batch: PIL below names it
            batch = [None] * len(pending)
        for (key, name, blob), img in zip(pending, batch):
            if img is None or tuple(img.shape) != (3, self.size[1], self.size[0]):
                with self._open(name, blob) as im:
                    img = self._pil(im, name)
            self.decoded[key] = img


def _batched_jpeg_decoder():
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None

    import torch

    def decode(blobs: list[bytes]) -> list[torch.Tensor]:
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        with warnings.catch_warnings():
            # torchvision >= 0.29 deprecates its image codecs in favour of torchcodec;
            # they still work, and PIL is the fallback once they are gone.
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, mode=ImageReadMode.RGB)

    return decode
