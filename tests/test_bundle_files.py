"""The bundle a wheel ships: found without a checkout layout, copied out for `python -m monai.bundle run`."""

import sys
from pathlib import Path

import pytest

from disyre_monai import bundle_files
from disyre_monai.bundle_files import REQUIRED, bundle_root, copy_bundle

REPO_BUNDLE = Path(__file__).resolve().parents[1] / "bundle"


def test_a_checkout_serves_its_top_level_bundle():
    assert bundle_root() == REPO_BUNDLE


def test_an_installed_package_serves_its_own_copy(tmp_path, monkeypatch):
    """A wheel's layout: site-packages/disyre_monai/bundle, and no bundle/ next to the package."""
    package = tmp_path / "site-packages" / "disyre_monai"
    (package / "bundle" / "configs").mkdir(parents=True)
    (package / "bundle" / "configs" / "metadata.json").write_text("{}")
    monkeypatch.setattr(bundle_files, "__file__", str(package / "bundle_files.py"))
    assert bundle_root() == package / "bundle"
    (package / "bundle" / "configs" / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="no DISYRE bundle in .*site-packages/disyre_monai/bundle"):
        bundle_root()


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
    from disyre_monai import cli

    monkeypatch.setattr(sys, "argv", ["disyre-monai", "bundle", str(tmp_path / "by_cli")])
    cli.main()
    assert (tmp_path / "by_cli" / "models" / "model.pt").is_file()
