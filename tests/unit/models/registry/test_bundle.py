"""Safe intake: archives are unpacked without traversal, links or bombs, and non-models are refused unexecuted."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from models.registry import GateFailed
from models.registry.bundle import BundleLimits, describe_file, open_bundle
from models.registry.gates import Gates
from models.rr_af import RRAFNet
from tests.unit.models.registry.conftest import RR_CARD, RR_WEIGHTS, BundleFactory

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)


class Exploit:
    """Pickles to a call of ``open(marker, "w")``: unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def refused(source: Path, tmp_path: Path, gate: str = "artifact", **kwargs: object) -> GateFailed:
    work = tmp_path / f"work{len(list(tmp_path.glob('work*')))}"
    work.mkdir()
    with pytest.raises(GateFailed) as info:
        bundle = open_bundle(source, work, **kwargs)  # type: ignore[arg-type]
        Gates(tmp_path).load(bundle)
    assert info.value.gate == gate
    return info.value


def zip_with(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


def rr_members() -> dict[str, bytes]:
    card = json.loads(RR_CARD.read_text())
    card.pop("predictions_file", None)  # an uploaded bundle need not carry stored predictions
    return {"card.json": json.dumps(card).encode(), "rr_af_v1.pt": RR_WEIGHTS.read_bytes()}


# -- accepted forms ------------------------------------------------------------------------------------


def test_card_json_next_to_its_weights(tmp_path: Path) -> None:
    bundle = open_bundle(RR_CARD, tmp_path)
    assert bundle.artifact_format == "state_dict" and bundle.card["name"] == "rr-af"
    assert bundle.sha256 == json.loads(RR_CARD.read_text())["weights_sha256"]
    assert bundle.root.is_relative_to(tmp_path) and sorted(p.name for p in bundle.root.iterdir()) == [
        "rr_af_v1.json", "rr_af_v1.npz", "rr_af_v1.pt",
    ]


def test_zip_and_tar_bundles_with_a_top_folder(tmp_path: Path) -> None:
    members = {f"rr/{k}": v for k, v in rr_members().items()}
    bundle = open_bundle(zip_with(tmp_path / "b.zip", members), tmp_path / "z")
    assert bundle.card_path.name == "card.json" and bundle.weights_path.parent.name == "rr"
    tar = tmp_path / "b.tar.gz"
    with tarfile.open(tar, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert open_bundle(tar, tmp_path / "t").artifact_format == "state_dict"


def test_single_weights_file_needs_a_card(tmp_path: Path) -> None:
    reason = refused(RR_WEIGHTS, tmp_path).reason
    assert "without a model card" in reason
    card = json.loads(RR_CARD.read_text())
    card.pop("predictions_file", None)
    (tmp_path / "card.json").write_text(json.dumps(card))
    bundle = open_bundle(RR_WEIGHTS, tmp_path / "w", card=tmp_path / "card.json")
    assert bundle.weights_path.name == "rr_af_v1.pt" and bundle.card["weights_file"] == "rr_af_v1.pt"


# -- unsafe archives -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.json", "/abs/evil.json", "a/../../evil.json", "C:/evil.json"])
def test_zip_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = zip_with(tmp_path / "b.zip", {**rr_members(), name: b"{}"})
    assert "outside the bundle" in refused(archive, tmp_path).reason
    assert not (tmp_path / "evil.json").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "b.zip", rr_members(), symlink="link.pt")
    assert "symbolic link" in refused(archive, tmp_path).reason


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_tar_links_and_devices_are_refused(tmp_path: Path, kind: bytes) -> None:
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("rr_af_v1.pt")
        info.type = kind
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    assert "not a plain file" in refused(path, tmp_path).reason


def test_tar_traversal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("../evil.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    assert "outside the bundle" in refused(path, tmp_path).reason
    assert not (tmp_path / "evil.json").exists()


def test_zip_bomb_stops_at_the_unpacked_limit(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "b.zip", {**rr_members(), "zeros.bin": bytes(4 << 20)})
    assert archive.stat().st_size < 64 << 10
    limits = BundleLimits(max_unpacked_bytes=1 << 20)
    assert "unpacks to more than 1 MiB" in refused(archive, tmp_path, limits=limits).reason


def test_too_many_files_and_too_large_uploads_are_refused(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "b.zip", {**rr_members(), **{f"x{i}.txt": b"x" for i in range(5)}})
    assert "more than 4 files" in refused(archive, tmp_path, limits=BundleLimits(max_files=4)).reason
    assert "over the 0 MiB limit" in refused(archive, tmp_path, limits=BundleLimits(max_upload_bytes=1000)).reason


def test_weights_file_outside_the_bundle_is_refused(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    folder = rr_bundle()
    card = json.loads((folder / "card.json").read_text())
    shutil.copyfile(RR_WEIGHTS, tmp_path / "outside.pt")
    (folder / "card.json").write_text(json.dumps({**card, "weights_file": "../outside.pt"}))
    assert "outside the bundle" in refused(folder, tmp_path).reason


def test_two_cards_in_one_bundle_are_refused(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    folder = rr_bundle()
    shutil.copyfile(folder / "card.json", folder / "second.json")
    assert "2 model cards" in refused(folder, tmp_path).reason


# -- files that are not models -------------------------------------------------------------------------


def test_describe_file_tells_pickles_from_text(tmp_path: Path) -> None:
    path = tmp_path / "f"
    for content, what in [
        (b"class Foo:\n    pass\n", "a text file"),
        (pickle.dumps(print, protocol=0), "a protocol-0 Python pickle"),
        (pickle.dumps([1], protocol=4), "a plain Python pickle (or a legacy torch.save file)"),
        (RR_WEIGHTS.read_bytes(), "a zip archive"),
    ]:
        path.write_bytes(content)
        assert describe_file(path) == what


@pytest.mark.parametrize(
    ("content", "what"),
    [(PNG, "a PNG image"), (np.random.default_rng(0).bytes(4096), "unrecognised binary data"), (b"", "an empty file")],
    ids=["png", "random-bytes", "empty"],
)
def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    assert describe_file(path) == what
    assert f"is {what}, not a model" in refused(path, tmp_path).reason


@pytest.mark.parametrize(
    ("content", "what"), [(PNG, "a PNG image"), (b"\x00" * 100, "unrecognised binary data")], ids=["png", "zeros"]
)
def test_weights_that_are_not_a_torch_archive_are_refused(
    tmp_path: Path, rr_bundle: BundleFactory, content: bytes, what: str
) -> None:
    reason = refused(rr_bundle(raw_weights=content), tmp_path).reason
    assert f"is {what}, not a torch archive" in reason


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_plain_pickle_is_refused_without_running(tmp_path: Path, rr_bundle: BundleFactory,
                                                           protocol: int) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Exploit(marker), protocol=protocol)
    single = tmp_path / "model.pkl"
    single.write_bytes(blob)
    assert "pickle" in refused(single, tmp_path).reason
    assert "pickle" in refused(rr_bundle(raw_weights=blob), tmp_path).reason
    assert not marker.exists()


def test_malicious_torch_save_is_refused_without_running(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    marker = tmp_path / "pwned"
    folder = rr_bundle(weights={"net.0.weight": Exploit(marker)})
    reason = refused(folder, tmp_path).reason
    assert "pickle of Python objects" in reason and "open" in reason and "without being unpickled" in reason
    assert not marker.exists()


def test_pickled_module_is_refused(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    reason = refused(rr_bundle(weights=RRAFNet(23)), tmp_path).reason
    assert "references models.rr_af.RRAFNet" in reason and "state_dict()" in reason


def test_state_dict_of_the_wrong_architecture_is_refused(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    reason = refused(rr_bundle(weights=RRAFNet(23, hidden=(8,)).state_dict()), tmp_path).reason
    assert "architecture" in reason or "size mismatch" in reason or "Missing key" in reason


def test_family_must_match_the_file(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    assert "TorchScript" not in refused(rr_bundle(card={"family": "torchscript"}), tmp_path).reason
    assert "unknown architecture family 'gbm'" in refused(rr_bundle(card={"family": "gbm"}), tmp_path).reason


def test_torchscript_needs_the_torchscript_family(tmp_path: Path, rr_bundle: BundleFactory) -> None:
    folder = rr_bundle()
    with pytest.warns(DeprecationWarning, match="jit"):
        torch.jit.script(torch.nn.Linear(23, 1)).save(str(folder / "rr_af_v1.pt"))
    assert "TorchScript archive: use family 'torchscript'" in refused(folder, tmp_path).reason
