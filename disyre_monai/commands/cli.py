"""The ``disyre-monai`` command line: thin fire wrappers over importable functions.

Each command is imported only when it is called, so an optional extra (MONAI Label, SimpleITK) is needed
only by the command that uses it. ``disyre-monai --help`` lists the commands; ``disyre-monai CMD --help``
shows one command's arguments. A command that stops on an error (a missing folder, a bad argument) ends with one
line naming the command and the error's root cause, exit status 2; ``DISYRE_TRACEBACK=1`` shows the traceback.
Exit status 1 is kept for batch commands that ran but had failing cases.
"""

from __future__ import annotations

import importlib
import os
import sys

#: command name -> "module:function" it runs.
COMMANDS = {
    "datalist": "disyre_monai.data.adapters:write_datalist",
    "preprocess": "disyre_monai.commands.preprocess:preprocess_command",
    "evaluate": "disyre_monai.commands.evaluate:evaluate_command",
    "calibrate": "disyre_monai.commands.calibrate:calibrate_command",
    "label": "disyre_monai.apps.monailabel.server:start_server",
    "validate": "disyre_monai.commands.validate:validate_dataset",
    "export_onnx": "disyre_monai.commands.export_onnx:export_onnx_command",
    "bundle": "disyre_monai.commands.bundle:copy_bundle",
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


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of ``error``'s ``raise ... from`` chain (MONAI's config parser wraps the real error
    of a component in a ``RuntimeError``)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def main() -> None:
    """Entry point of the ``disyre-monai`` console script."""
    import fire

    name = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
    try:
        if name is not None:
            # Give fire the real function so that ``--help`` shows its own arguments and docstring.
            sys.argv.pop(1)
            sys.argv[0] = f"disyre-monai {name}"
            fire.Fire(_load(name), name=f"disyre-monai {name}")
        else:
            fire.Fire({command: _lazy(command) for command in COMMANDS}, name="disyre-monai")
    except Exception as error:
        if os.environ.get("DISYRE_TRACEBACK"):
            raise
        cause, command = root_cause(error), f"disyre-monai {name}" if name else "disyre-monai"
        print(f"{command}: {type(cause).__name__}: {cause} (DISYRE_TRACEBACK=1 shows the traceback)", file=sys.stderr,
              flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
