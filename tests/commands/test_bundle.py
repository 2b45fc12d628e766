"""One bundle locator for configs, commands and the MONAI Label app; the bundle a wheel ships, copied out for
`python -m monai.bundle run`."""

import sys
from pathlib import Path

import pytest

from disyre_monai.commands import bundle
from disyre_monai.commands.bundle import REQUIRED, bundle_root, copy_bundle, locate_bundle

REPO_BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


def _fake_bundle(folder: Path) -> Path:
    for name in REQUIRED:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


def test_a_checkout_serves_its_top_level_bundle(monkeypatch):
    monkeypatch.delenv("DISYRE_BUNDLE", raising=False)
    assert locate_bundle() == REPO_BUNDLE
    assert bundle_root() == str(REPO_BUNDLE), "a bare parser (no running workflow) gets the shipped bundle"


def test_an_installed_package_serves_its_own_copy(tmp_path, monkeypatch):
    """A wheel's layout: site-packages/disyre_monai/bundle, and no bundle/ next to the package."""
    monkeypatch.delenv("DISYRE_BUNDLE", raising=False)
    package = tmp_path / "site-packages" / "disyre_monai"
    _fake_bundle(package / "bundle")
    monkeypatch.setattr(bundle, "__file__", str(package / "commands" / "bundle.py"))
    assert locate_bundle(required=REQUIRED) == package / "bundle"
    (package / "bundle" / "configs" / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="no DISYRE bundle in .*site-packages/disyre_monai/bundle"):
        locate_bundle()


def test_an_explicit_folder_beats_the_environment_which_beats_the_shipped_bundle(tmp_path, monkeypatch):
    mine, site = _fake_bundle(tmp_path / "mine"), _fake_bundle(tmp_path / "site")
    monkeypatch.setenv("DISYRE_BUNDLE", str(site))
    assert locate_bundle() == site.resolve()
    assert locate_bundle(mine, REQUIRED) == mine.resolve()
    (mine / "models" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"bundle folder .*mine misses models/model.pt; pass the DISYRE "
                                                r"bundle with --bundle_dir"):
        locate_bundle(mine, REQUIRED)


def test_copy_writes_a_complete_bundle_and_never_mixes_two(tmp_path, monkeypatch, capsys):
    copied = copy_bundle(tmp_path / "mine")
    assert all((copied / name).is_file() for name in REQUIRED)
    assert (copied / "models" / "template_brain.nii.gz").read_bytes() == \
        (REPO_BUNDLE / "models" / "template_brain.nii.gz").read_bytes()
    assert "python -m monai.bundle run inference --config_file" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="is not empty"):
        copy_bundle(tmp_path / "mine")
    (copied / "configs" / "inference.json").write_text("{}")
    copy_bundle(tmp_path / "mine", overwrite=True)
    original = (REPO_BUNDLE / "configs" / "inference.json").read_bytes()
    assert (copied / "configs" / "inference.json").read_bytes() == original
    from disyre_monai.commands import cli

    monkeypatch.setattr(sys, "argv", ["disyre-monai", "bundle", str(tmp_path / "by_cli")])
    cli.main()
    assert (tmp_path / "by_cli" / "models" / "model.pt").is_file()
