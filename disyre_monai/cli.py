"""The ``disyre-monai`` command line: thin fire wrappers over importable functions.

Each command is imported only when it is called, so an optional extra (MONAI Label, SimpleITK) is needed
only by the command that uses it. ``disyre-monai --help`` lists the commands; ``disyre-monai CMD --help``
shows one command's arguments.
"""

from __future__ import annotations

import importlib

#: command name -> "module:function" it runs.
COMMANDS = {
    "datalist": "disyre_monai.data.adapters:write_datalist",
    "preprocess": "disyre_monai.preprocess:preprocess_command",
    "evaluate": "disyre_monai.metrics.evaluate:evaluate_command",
    "calibrate": "disyre_monai.metrics.calibrate:calibrate_command",
    "label": "disyre_monai.apps.monailabel.server:start_server",
    "validate": "disyre_monai.data.validation:validate_dataset",
    "export_onnx": "disyre_monai.networks.onnx_export:export_onnx_command",
    "bundle": "disyre_monai.bundle_files:copy_bundle",
}


def _load(name: str):
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), function)


def _lazy(name: str):
    def command(*args, **kwargs):
        return _load(name)(*args, **kwargs)

    command.__name__ = name
    command.__doc__ = f"Runs {COMMANDS[name]} (see its --help: python -m fire {COMMANDS[name].replace(':', ' ')})."
    return command


def main() -> None:
    """Entry point of the ``disyre-monai`` console script."""
    import sys

    import fire

    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        # Give fire the real function so that ``--help`` shows its own arguments and docstring.
        name = sys.argv.pop(1)
        sys.argv[0] = f"disyre-monai {name}"
        fire.Fire(_load(name), name=f"disyre-monai {name}")
        return
    fire.Fire({name: _lazy(name) for name in COMMANDS}, name="disyre-monai")


if __name__ == "__main__":
    main()
