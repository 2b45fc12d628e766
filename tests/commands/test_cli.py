"""The command line: a user's mistake ends in one line naming the command and the root cause."""

import os
import subprocess
import sys

from disyre_monai.commands.cli import root_cause


def _run(*args, **env):
    return subprocess.run([sys.executable, "-m", "disyre_monai.commands.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_a_missing_folder_ends_in_one_line_with_status_2(tmp_path):
    done = _run("validate", str(tmp_path / "no_such_folder"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"disyre-monai validate: FileNotFoundError: validate_dataset: {tmp_path / 'no_such_folder'} is neither a "
        "datalist file nor a folder. (DISYRE_TRACEBACK=1 shows the traceback)"]


def test_the_root_cause_of_an_error_inside_a_bundle_component_is_named(tmp_path):
    """calibrate parses the bundle's inference config: MONAI wraps the datalist's error in a RuntimeError."""
    done = _run("calibrate", str(tmp_path / "no_such_folder"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"disyre-monai calibrate: FileNotFoundError: load_datalist: dataset_dir {tmp_path / 'no_such_folder'} " \
           "is not a folder." in done.stderr


def test_the_traceback_on_request():
    done = _run("validate", "/no/such/folder", DISYRE_TRACEBACK="1")
    assert done.returncode == 1 and "Traceback" in done.stderr and "FileNotFoundError" in done.stderr


def test_root_cause_follows_raise_from_only():
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        assert isinstance(root_cause(outer), KeyError)
    assert isinstance(root_cause(ValueError("alone")), ValueError)
