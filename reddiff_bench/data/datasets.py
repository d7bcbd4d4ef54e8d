"""Datasets yield ``(image_id, x)`` with ``x`` a 3xHxW float32 tensor in [-1, 1], in a fixed order.

``image_id`` is a stable string (it seeds the image's measurement and solver randomness and keys
its row), so results do not depend on batch size or on which images ran before; ids are unique
within a dataset, and ``image_id(index)`` gives one without loading the image (a resumed run
skips the images whose rows exist).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..checks import check_number
from ..errors import ConfigError
from .photos import HELDOUT_PHOTOS, crop_positions, photo_tensor

SPLITS = ("test", "validation")  # test: the dataset as configured (a paper's subset); validation: disjoint from it

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # matched in any case

log = logging.getLogger(__name__)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"dataset.split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def _counts(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class PhotoCrops:
    """Random ``size`` x ``size`` crops of the held-out scikit-image photos (offline, no prior saw
    them), spread evenly over the photos; positions are drawn from ``seed``, each at most once
    (image ids are unique: they key rows and seeds).

    ``split``: ``test`` (these crops) or ``validation``: crops drawn from another stream that share
    no pixel with the ``test_images`` crops of the test split (what a tuner may look at before the
    test split of that size runs)."""

    def __init__(self, size: int = 16, num_images: int = 8, scale: float = 0.5,
                 photos: list[str] | tuple[str, ...] = HELDOUT_PHOTOS, seed: int = 0, split: str = "test",
                 test_images: int = 24):
        check_number("dataset.num_images", num_images, minimum=1, integer=True)
        check_number("dataset.size", size, minimum=1, integer=True)
        check_number("dataset.test_images", test_images, minimum=1, integer=True)
        self.name = f"photos{size}"
        self.split = check_split(split)
        self.size, self.scale = int(size), float(scale)
        photos = list(photos)
        if split == "test":
            self.items = self._draw(photos, num_images, torch.Generator().manual_seed(seed))
            return
        held_out = self._draw(photos, int(test_images), torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed + 1_000_003)  # another stream than the test split's
        self.items = self._draw(photos, num_images, generator, avoid=held_out)

    def _draw(self, photos: list[str], num_images: int, generator: torch.Generator,
              avoid: list[tuple[str, int, int]] = ()) -> list[tuple[str, int, int]]:
        """``num_images`` distinct crop positions spread over ``photos``; with ``avoid``, none
        overlaps a crop of ``avoid`` by a pixel."""
        items: list[tuple[str, int, int]] = []
        for name, count in zip(photos, _counts(num_images, len(photos))):
            image = photo_tensor(name, self.scale)
            height, width = image.shape[1], image.shape[2]
            taken = [(r, c) for n, r, c in avoid if n == name]
            allowed = torch.ones(max(height - self.size + 1, 0), max(width - self.size + 1, 0), dtype=torch.bool)
            for r, c in taken:  # a crop whose corner is within size-1 pixels of a held-out one overlaps it
                allowed[max(r - self.size + 1, 0) : r + self.size, max(c - self.size + 1, 0) : c + self.size] = False
            available = int(allowed.sum())
            if count > available:
                raise ConfigError(f"dataset photos: {name} at scale {self.scale} holds {available} distinct "
                                  f"{self.size}x{self.size} crops{' outside the test split' if taken else ''}, "
                                  f"{count} asked for; lower dataset.num_images (or dataset.test_images) or raise "
                                  f"dataset.scale.")
            positions: list[tuple[int, int]] = []
            while len(positions) < count:  # draw until enough are distinct (and allowed)
                extra = crop_positions(height, width, self.size, count - len(positions), generator)
                positions = list(dict.fromkeys(positions + [p for p in extra if allowed[p]]))
            items.extend((name, r, c) for r, c in positions)
        return items

    def __len__(self) -> int:
        return len(self.items)

    def image_id(self, index: int) -> str:
        name, r, c = self.items[index]
        return f"{name}_r{r:04d}_c{c:04d}"

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        name, r, c = self.items[index]
        image = photo_tensor(name, self.scale)
        return self.image_id(index), image[:, r : r + self.size, c : c + self.size].clone()


def _readable(im: Image.Image, path: Path) -> Image.Image:
    """The image in a mode whose values map to [0, 1] exactly: RGB (8 bits), or for 16-bit
    grayscale a float image already on [0, 1] (PIL's RGB conversion would saturate it). Alpha is
    dropped with a warning; 32-bit integer or float pixels (no known range) are refused."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return Image.fromarray(np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0, mode="F")
    if im.mode in ("I", "F"):
        raise ConfigError(f"image {path} has 32-bit pixels (PIL mode {im.mode!r}), whose range is unknown; save it "
                          f"as 8- or 16-bit PNG, or remove it.")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        log.warning("image %s has an alpha channel (mode %s): it is dropped, the colour channels are used as they are",
                    path, im.mode)
    return im.convert("RGB")


def load_image(path: Path, size: int) -> Tensor:
    """ADM preprocessing: resize the shorter side to ``size`` (PIL bicubic, antialiased), centre crop;
    an image smaller than ``size`` is enlarged, with a warning naming it."""
    import torchvision.transforms.functional as TF  # heavy, optional: imported when used

    try:
        with Image.open(path) as im:
            im = _readable(im, path)
            if min(im.size) < size:
                log.warning("image %s is %dx%d, smaller than the %d-pixel side the model takes: it is enlarged "
                            "(bicubic)", path, im.size[0], im.size[1], size)
            im = TF.resize(im, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
            im = TF.center_crop(im, [size, size])
            if im.mode == "F":  # 16-bit grayscale, on [0, 1]
                unit = torch.from_numpy(np.asarray(im, dtype=np.float32).copy())[None].expand(3, -1, -1)
            else:
                unit = TF.pil_to_tensor(im).float() / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(f"cannot read image {path}: {err}. Remove or replace the file, or set "
                          f"dataset.skip_unreadable=true to record it as a failed row and go on.") from err
    return (unit * 2 - 1).clamp(-1, 1)


LISTS = Path(__file__).resolve().parent.parent / "assets" / "lists"  # the published protocols' image lists


def bundled_list(spec: str) -> Path:
    """A list file: ``spec`` as a path, or the stem of a list shipped in ``assets/lists``."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = LISTS / f"{spec}.txt"
    if "/" not in spec and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in LISTS.glob("*.txt")))
    raise ConfigError(f"image list {spec!r} is neither a file nor a list shipped with the package ({names})")


def read_list(path: Path) -> list[tuple[str, int | None]]:
    """``(relative path, class index or None)`` per line of a list file; blank and ``#`` lines skipped."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            entries.append((parts[0], int(parts[1]) if len(parts) > 1 else None))
        except ValueError as err:
            raise ConfigError(f"image list {path}, line {number}: {line!r} is not '<relative path> [<class index>]'"
                              ) from err
    return entries


class ImageFolder:
    """Images under ``root`` (recursively, sorted by relative path), or those of ``file_list`` in
    its order (a path, or a list shipped in ``assets/lists``: see its README), the first
    ``num_images``. ``labels``: None, ``synsets`` (ImageNet's folders), ``list`` (the class
    indices of ``file_list``) or a file of ``<relative path> <class index>`` lines.

    ``split``: ``test`` (the above) or ``validation``: other images of the folder, never one of
    ``file_list`` (every line, whatever ``num_images``) or, without a list, of the first
    ``test_images`` sorted ones; ordered by a hash of (``validation_seed``, path), so the choice is fixed."""

    def __init__(self, root: str, size: int = 256, num_images: int | None = None, name: str = "image_folder",
                 file_list: str | None = None, skip_unreadable: bool = False, labels: str | None = None,
                 split: str = "test", test_images: int | None = None, validation_seed: int = 0):
        if num_images is not None:
            check_number("dataset.num_images", num_images, minimum=1, integer=True)
        self.name = name
        self.split = check_split(split)
        self.root = Path(root).expanduser()
        self.size = int(size)
        self.skip_unreadable = skip_unreadable
        if not self.root.is_dir():
            raise ConfigError(f"dataset {name!r}: image folder {self.root} does not exist. Put the images "
                              f"there, or point dataset.root (or paths.data_dir) at them, e.g. "
                              f"dataset.root=/data/{name}.")
        self.listed: list[tuple[str, int | None]] = []
        if split == "validation":
            files = self._validation(file_list, test_images, validation_seed)[: num_images]
        elif file_list is not None:
            self.listed = read_list(bundled_list(str(file_list)))[: num_images]
            files = self._find(self.listed)
        else:
            files = sorted(self._all_images())[: num_images]
        if not files:
            outside = " outside the test split" if split == "validation" else ""
            raise ConfigError(f"dataset {name!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}"
                              f"{outside}.")
        self.files = files
        self.labels = self._labels(None if split == "validation" and labels == "list" else labels)

    def _validation(self, file_list: str | None, test_images: int | None, seed: int) -> list[Path]:
        """The folder's images outside the test split (every image of ``file_list``, or the first
        ``test_images`` of the sorted folder without one), in an order fixed by ``seed``."""
        every = sorted(self._all_images())
        if file_list is not None:
            test = set(self._find(read_list(bundled_list(str(file_list)))))
        elif test_images is not None:
            test = set(every[: int(test_images)])
        else:
            raise ConfigError(f"dataset {self.name!r}: split=validation without a file list needs "
                              f"dataset.test_images (the size of the test split to keep out)")
        def shuffled(path: Path) -> str:
            return hashlib.sha256(f"{seed}:{path.relative_to(self.root).as_posix()}".encode()).hexdigest()

        return sorted((p for p in every if p not in test), key=shuffled)

    def _all_images(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]

    def _find(self, listed: list[tuple[str, int | None]]) -> list[Path]:
        """Each listed image under the root: at its relative path, else by its stem anywhere below
        (another layout or extension); every one must be found, once."""
        files, by_stem = [], None
        missing, ambiguous = [], []
        for relative, _ in listed:
            path = self.root / relative
            if not path.is_file():
                if by_stem is None:
                    by_stem = {}
                    for found in self._all_images():
                        by_stem.setdefault(found.stem, []).append(found)
                candidates = by_stem.get(Path(relative).stem, [])
                if len(candidates) != 1:
                    (missing if not candidates else ambiguous).append(relative)
                    continue
                path = candidates[0]
            files.append(path)
        if missing or ambiguous:
            problems = []
            if missing:
                problems.append(f"{len(missing)} of the {len(listed)} listed images are not under {self.root} "
                                f"(first: {', '.join(missing[:3])})")
            if ambiguous:
                problems.append(f"{len(ambiguous)} listed names match several files by stem (first: "
                                f"{', '.join(ambiguous[:3])})")
            raise ConfigError(f"dataset {self.name!r}: {'; '.join(problems)}. Put the listed images there, point "
                              f"dataset.root at them, or set dataset.file_list=null to take the folder's images.")
        if len(set(files)) < len(files):
            raise ConfigError(f"dataset {self.name!r}: the file list names some images twice")
        return files

    def _labels(self, spec: str | None) -> dict[str, int]:
        """Class labels by image id: ``synsets`` reads ImageNet's layout (class index = rank of the
        synset folder among the 1000 sorted synsets, torchvision's order); ``list`` the file list's
        second column; a file path reads lines ``<relative path> <class index>``; None: no labels."""
        if spec is None:
            return {}
        if spec == "synsets":
            synsets = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            if len(synsets) != 1000:
                raise ConfigError(f"dataset {self.name!r}: labels=synsets needs the 1000 ImageNet class folders under "
                                  f"{self.root} (found {len(synsets)}); give a label file instead (dataset.labels=PATH "
                                  f"with lines '<relative path> <class index>').")
            index = {s: i for i, s in enumerate(synsets)}
            return {self.image_id(i): index[f.relative_to(self.root).parts[0]] for i, f in enumerate(self.files)}
        if spec == "list":
            if not self.listed or any(label is None for _, label in self.listed):
                raise ConfigError(f"dataset {self.name!r}: labels=list needs a file list whose every line is "
                                  f"'<relative path> <class index>' (dataset.file_list)")
            return {self.image_id(i): int(label) for i, (_, label) in enumerate(self.listed)}
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"dataset {self.name!r}: label file {path} does not exist (dataset.labels)")
        by_path = {str(Path(rel).with_suffix("")): label for rel, label in read_list(path) if label is not None}
        names = [rel for rel, _ in self.listed] or [str(f.relative_to(self.root)) for f in self.files]
        out = {}
        for i, (name, f) in enumerate(zip(names, self.files)):
            for key in (str(Path(name).with_suffix("")), str(f.relative_to(self.root).with_suffix(""))):
                if key in by_path:
                    out[self.image_id(i)] = by_path[key]
                    break
        return out

    def __len__(self) -> int:
        return len(self.files)

    def image_id(self, index: int) -> str:
        return str(self.files[index].relative_to(self.root).with_suffix("")).replace("/", "__")

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        return self.image_id(index), load_image(self.files[index], self.size)
