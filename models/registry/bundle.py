"""Safe intake of an uploaded artifact: unpack, find the card and weights, and tell formats apart.

Nothing here unpickles anything: formats are recognised from magic bytes and zip member names, and
archives are unpacked member by member with path, type, count and size checks (no traversal, no links,
no zip bombs). The result is a private copy, so the gates check exactly the bytes that get stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from models.errors import ModelError
from models.registry.errors import GateFailed
from models.registry.tables import ArtifactFormat

__all__ = ["TORCHSCRIPT_FAMILY", "Bundle", "BundleLimits", "describe_file", "open_bundle", "sha256_file"]

GATE = "artifact"
TORCHSCRIPT_FAMILY = "torchscript"
CARD_MAX_BYTES = 1 << 20
_CHUNK = 1 << 20
_MAX_DEPTH = 4

ACCEPTED = (
    "a directory, .zip or .tar(.gz) bundle holding a model card (.json) and a weights-only state dict "
    "(torch.save(model.state_dict())) or a TorchScript archive (torch.jit.save); a card .json next to "
    "its weights; or a single .pt with a separate card"
)


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """Size limits of an upload, in bytes and files."""

    max_upload_bytes: int = 256 << 20
    max_unpacked_bytes: int = 512 << 20
    max_files: int = 64


@dataclass(frozen=True, slots=True)
class Bundle:
    """An artifact unpacked into a private folder.

    Attributes
    ----------
    root : pathlib.Path
        The private folder holding the card and the weights.
    card_path : pathlib.Path
        The card (JSON) inside ``root``.
    card : dict
        Its parsed content.
    weights_path : pathlib.Path
        The weights file inside ``root`` the card names.
    artifact_format : {"state_dict", "torchscript"}
        What the weights file is, told from its zip members (never by unpickling).
    sha256 : str
        SHA-256 of the weights file: the content address of the stored artifact.
    predictions_path : pathlib.Path or None
        The per-window predictions ``.npz`` the card names (zoo artifacts), checked against its SHA-256.
    """

    root: Path
    card_path: Path
    card: dict[str, Any]
    weights_path: Path
    artifact_format: ArtifactFormat
    sha256: str
    predictions_path: Path | None = None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Protocol 0/1 pickles of objects start with GLOBAL: "c<module>\n<name>\n".
_PICKLE_GLOBAL = re.compile(rb"c[A-Za-z_][\w.]*\n[A-Za-z_]\w*\n")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF", "an HDF5 file (Keras?)"),
)


def describe_file(path: Path) -> str:
    """A short human description of what a file is, from its first bytes (for error messages)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "a plain Python pickle (or a legacy torch.save file)"
    if _PICKLE_GLOBAL.match(head):
        return "a protocol-0 Python pickle"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    if any(byte < 0x20 and byte not in b"\t\n\r" for byte in head):
        return "unrecognised binary data"
    return "a text file"


def _torch_kind(path: Path) -> ArtifactFormat | None:
    """``state_dict`` or ``torchscript`` for a torch zip archive, else ``None`` (member names only)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    tops = {PurePosixPath(n).parts[0] for n in names if n}
    if len(tops) != 1:
        return None
    top = next(iter(tops))
    members = {n[len(top) + 1 :] for n in names}
    if "data.pkl" not in members or "version" not in members and ".data/version" not in members:
        return None
    if "constants.pkl" in members and any(m.startswith("code/") for m in members):
        return "torchscript"
    return "state_dict"


def _safe_relpath(name: str) -> PurePosixPath:
    """A member name as a relative path, refusing absolute paths, ``..`` and odd characters."""
    if "\\" in name or "\x00" in name:
        raise GateFailed(GATE, f"archive member {name!r} has a backslash or NUL in its name")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or ":" in path.parts[0]:
        raise GateFailed(GATE, f"archive member {name!r} would be written outside the bundle (path traversal)")
    if len(path.parts) > _MAX_DEPTH:
        raise GateFailed(GATE, f"archive member {name!r} is nested deeper than {_MAX_DEPTH} folders")
    return path


class _Budget:
    """Counts files and bytes written while unpacking, and refuses past the limits."""

    def __init__(self, limits: BundleLimits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise GateFailed(GATE, f"the bundle holds more than {self.limits.max_files} files")

    def copy(self, source: IO[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_unpacked_bytes:
                    raise GateFailed(
                        GATE, f"the bundle unpacks to more than {self.limits.max_unpacked_bytes >> 20} MiB"
                    )
                out.write(chunk)


def _unzip(path: Path, dest: Path, limits: BundleLimits) -> None:
    budget = _Budget(limits)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                rel = _safe_relpath(info.filename.rstrip("/") if info.is_dir() else info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise GateFailed(GATE, f"archive member {info.filename!r} is a symbolic link")
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    raise GateFailed(GATE, f"archive member {info.filename!r} is encrypted")
                budget.add_file()
                # The declared size is only a hint; _Budget counts what is really decompressed.
                with archive.open(info) as source:
                    budget.copy(source, dest / rel)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise GateFailed(GATE, f"{path.name} is not a readable zip archive: {exc}") from exc
    except FileExistsError as exc:
        raise GateFailed(GATE, f"{path.name} holds the same member twice: {exc.filename}") from exc


def _untar(path: Path, dest: Path, limits: BundleLimits) -> None:
    budget = _Budget(limits)
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                rel = _safe_relpath(member.name.rstrip("/"))
                if member.isdir():
                    continue
                if not member.isfile():
                    raise GateFailed(GATE, f"archive member {member.name!r} is a link or device, not a plain file")
                budget.add_file()
                source = archive.extractfile(member)
                if source is None:
                    raise GateFailed(GATE, f"archive member {member.name!r} cannot be read")
                with source:
                    budget.copy(source, dest / rel)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise GateFailed(GATE, f"{path.name} holds the same member twice: {exc.filename}") from exc
        raise GateFailed(GATE, f"{path.name} is not a readable tar archive: {exc}") from exc


def _copy_tree(source: Path, dest: Path, limits: BundleLimits) -> None:
    budget = _Budget(limits)

    def walk(folder: Path, depth: int) -> Iterator[Path]:
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink():
                raise GateFailed(GATE, f"{entry} is a symbolic link; bundles hold plain files only")
            if entry.is_dir():
                if depth >= _MAX_DEPTH:
                    raise GateFailed(GATE, f"{entry} is nested deeper than {_MAX_DEPTH} folders")
                yield from walk(entry, depth + 1)
            elif entry.is_file():
                yield entry

    for file in walk(source, 1):
        budget.add_file()
        with file.open("rb") as handle:
            budget.copy(handle, dest / file.relative_to(source))


def _looks_like_card(path: Path) -> dict[str, Any] | None:
    if path.suffix.lower() != ".json" or path.stat().st_size > CARD_MAX_BYTES:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and "family" in data and "weights_file" in data:
        return data
    return None


def _read_card(path: Path) -> dict[str, Any]:
    if path.stat().st_size > CARD_MAX_BYTES:
        raise GateFailed(GATE, f"model card {path.name} is larger than {CARD_MAX_BYTES >> 10} KiB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GateFailed(GATE, f"model card {path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise GateFailed(GATE, f"model card {path.name} is not a JSON object")
    missing = [key for key in ("family", "weights_file") if key not in data]
    if missing:
        raise GateFailed(GATE, f"model card {path.name} lacks {', '.join(missing)}")
    return data


def _find_card(root: Path) -> Path:
    cards = [p for p in sorted(root.rglob("*.json")) if p.is_file() and _looks_like_card(p) is not None]
    if not cards:
        raise GateFailed(GATE, "no model card found: the bundle needs a .json card with family and weights_file")
    if len(cards) > 1:
        listed = ", ".join(str(p.relative_to(root)) for p in cards)
        raise GateFailed(GATE, f"the bundle holds {len(cards)} model cards ({listed}); upload one model at a time")
    return cards[0]


def _check_size(path: Path, limits: BundleLimits) -> None:
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise GateFailed(GATE, f"{path.name} is {size >> 20} MiB, over the {limits.max_upload_bytes >> 20} MiB limit")


def open_bundle(
    source: Path, workdir: Path, *, card: Path | None = None, limits: BundleLimits | None = None
) -> Bundle:
    """Copy or unpack ``source`` into ``workdir`` and identify its card and weights.

    Parameters
    ----------
    source : pathlib.Path
        A bundle folder, a ``.zip``/``.tar``/``.tar.gz`` bundle, a card ``.json`` (its weights next to it),
        or a single weights/TorchScript ``.pt`` (then ``card`` is required).
    workdir : pathlib.Path
        An empty private folder; the caller removes it.
    card : pathlib.Path, optional
        A separate card for a single ``.pt``; its ``weights_file`` is replaced by that file.
    limits : BundleLimits, optional
        Size limits.

    Raises
    ------
    GateFailed
        With gate ``"artifact"``: anything that is not a safe, complete bundle.
    """
    limits = limits or BundleLimits()
    root = workdir / "bundle"
    root.mkdir(parents=True)
    if not source.exists():
        raise GateFailed(GATE, f"{source} does not exist")
    if source.is_symlink():
        source = source.resolve()
    if source.is_dir():
        _copy_tree(source, root, limits)
        card_path = root / card.name if card is not None else _find_card(root)
        if card is not None:
            _check_size(card, limits)
            shutil.copyfile(card, card_path)
    elif not source.is_file():
        raise GateFailed(GATE, f"{source} is not a regular file or folder")
    else:
        _check_size(source, limits)
        kind = _torch_kind(source)
        card_data = _looks_like_card(source) if card is None else None
        if kind is not None:
            if card is None:
                raise GateFailed(GATE, f"{source.name} is a torch archive without a model card: pass its card .json")
            _check_size(card, limits)
            card_path = root / "card.json"
            data = _read_card(card)
            data["weights_file"] = source.name
            card_path.write_text(json.dumps(data), encoding="utf-8")
            shutil.copyfile(source, root / source.name)
        elif card_data is not None:
            card_path = root / source.name
            shutil.copyfile(source, card_path)
            for key in ("weights_file", "predictions_file"):
                if key == "weights_file" or card_data.get(key):
                    member = _member_of(source.parent, card_data, key)
                    _check_size(member, limits)
                    target = root / member.relative_to(source.parent.resolve())
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(member, target)
        elif zipfile.is_zipfile(source):
            _unzip(source, root, limits)
            card_path = _find_card(root)
        elif _is_tar(source):
            _untar(source, root, limits)
            card_path = _find_card(root)
        else:
            raise GateFailed(GATE, f"{source.name} is {describe_file(source)}, not a model; accepted: {ACCEPTED}")
    data = _read_card(card_path)
    weights_path = _member_of(card_path.parent, data, "weights_file")
    artifact_format = _torch_kind(weights_path)
    if artifact_format is None:
        raise GateFailed(
            GATE,
            f"weights file {weights_path.name} is {describe_file(weights_path)}, not a torch archive; accepted: a "
            "weights-only state dict saved with torch.save(model.state_dict()) or a TorchScript archive saved "
            "with torch.jit.save (pickled objects are refused and never unpickled)",
        )
    if (data["family"] == TORCHSCRIPT_FAMILY) != (artifact_format == "torchscript"):
        raise GateFailed(
            GATE,
            f"card family {data['family']!r} does not match the weights file, which is "
            + ("a TorchScript archive: use family 'torchscript'" if artifact_format == "torchscript"
               else "a state dict: name its architecture family"),
        )
    return Bundle(
        root=card_path.parent,
        card_path=card_path,
        card=data,
        weights_path=weights_path,
        artifact_format=artifact_format,
        sha256=sha256_file(weights_path),
        predictions_path=_predictions_of(card_path.parent, data),
    )


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _member_of(folder: Path, card: dict[str, Any], key: str) -> Path:
    """The file a card names under ``key``, which must be a plain file inside ``folder``."""
    name = card.get(key)
    if not isinstance(name, str) or not name:
        raise GateFailed(GATE, f"the model card's {key} must be a file name")
    rel = _safe_relpath(name)
    base = folder.resolve()
    path = base / rel
    if path.is_symlink() or not path.resolve().is_relative_to(base):
        raise GateFailed(GATE, f"{key} {name!r} points outside the bundle")
    if not path.is_file():
        raise GateFailed(GATE, f"{key} {name!r} named by the card is missing")
    return path


def _predictions_of(folder: Path, card: dict[str, Any]) -> Path | None:
    """The predictions file a card names, read once (``allow_pickle=False``) to check it; None if none."""
    if not card.get("predictions_file"):
        return None
    from models.zoo import read_predictions

    path = _member_of(folder, card, "predictions_file")
    expected = card.get("predictions_sha256")
    try:
        read_predictions(path, expected if isinstance(expected, str) else None)
    except (ModelError, ValueError, OSError) as exc:
        raise GateFailed(GATE, f"predictions file {path.name}: {exc}") from exc
    return path
