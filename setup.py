"""Build hook: put the top-level ``bundle/`` folder (MONAI Bundle: configs, docs, demo weights, template) into the
package as ``disyre_monai/bundle/``, so that a wheel installed without a checkout carries it.

Metadata and dependencies are in ``setup.cfg``; the repository keeps ``bundle/`` at its top level (the product
card's layout). ``disyre_monai.commands.bundle.locate_bundle()`` finds the packaged copy, or ``bundle/`` of a checkout
(editable install); ``disyre-monai bundle DIR`` writes a copy for ``python -m monai.bundle run``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLE = Path(__file__).resolve().parent / "bundle"
SKIPPED = {"__pycache__", "train_runs", ".DS_Store"}


class BuildPyWithBundle(build_py):
    """``build_py`` that also copies ``bundle/`` into the built package (the wheel's ``disyre_monai/bundle/``)."""

    def _bundle_files(self):
        return [p for p in sorted(BUNDLE.rglob("*"))
                if p.is_file() and not SKIPPED & set(p.relative_to(BUNDLE).parts) and not p.name.startswith(".")]

    def run(self):
        super().run()
        target = Path(self.build_lib) / "disyre_monai" / "bundle"
        for source in self._bundle_files():
            destination = target / source.relative_to(BUNDLE)
            self.mkpath(str(destination.parent))
            self.copy_file(str(source), str(destination), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        target = Path(self.build_lib) / "disyre_monai" / "bundle"
        bundled = [str(target / p.relative_to(BUNDLE)) for p in self._bundle_files()]
        return super().get_outputs(include_bytecode) + bundled


setup(cmdclass={"build_py": BuildPyWithBundle})
