"""``disyre-monai export_onnx``: the trained restoration network as ONNX, verified on a real volume before the file
is moved into place.

The graph and the ONNX Runtime stand-in that runs it are in :mod:`disyre_monai.networks.onnx`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from disyre_monai.io import atomic_path
from disyre_monai.networks.onnx import (
    DYNAMIC_SHAPES,
    ONNX_INPUTS,
    ONNX_INSTALL_HINT,
    ONNX_OUTPUT,
    OnnxNetwork,
    import_onnxruntime,
)
from disyre_monai.utils import check_int, check_number

logger = logging.getLogger(__name__)


def verification_volume(image: str | os.PathLike | None = None, mask: str | os.PathLike | None = None):
    """``(1, 1, H, W, D)`` image scaled to [0, 1] and its ``(1, 1, H, W, D)`` brain mask (default: a demo patient)."""
    import nibabel as nib

    from disyre_monai.data.demo import demo_datalist
    from disyre_monai.transforms import ScaleByPercentile

    if image is None:
        case = demo_datalist()["test"][0]
        image, mask = case["image"], case["mask"]
    volume = np.asarray(nib.load(str(image)).dataobj, np.float32)
    brain = np.asarray(nib.load(str(mask)).dataobj) > 0 if mask is not None else volume > 0
    if volume.ndim != 3 or brain.shape != volume.shape:
        raise ValueError(f"export_onnx: the verification image {image} must be a 3D volume with a brain mask of "
                         f"its shape, got {volume.shape} and {brain.shape}.")
    scaled = ScaleByPercentile()(volume[None], brain[None])
    return torch.as_tensor(scaled)[None], torch.from_numpy(brain)[None, None]


def export_onnx(
    network: torch.nn.Module,
    path: str | os.PathLike,
    opset: int = 18,
    tolerance: float = 1e-4,
    image: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    inferer=None,
) -> dict:
    """Export ``network`` to ONNX at ``path`` and verify the anomaly map it gives against PyTorch's.

    MONAI's ``convert_to_onnx`` exports with the ``torch.export``-based exporter (inputs ``image``
    ``(batch, C, height, width)`` float32 and ``timesteps`` ``(batch,)`` int64, output ``restored``, all
    three axes but the channels dynamic). The map of a real volume is then computed by ``inferer`` with
    the PyTorch network and with ONNX Runtime (:class:`OnnxNetwork`, CPU); the file is moved into place only
    when their largest absolute difference is at most ``tolerance``, so a failed export leaves nothing.

    Args:
        network: a :class:`~disyre_monai.networks.DisyreUNet` (2D) with its weights.
        path: output ``.onnx`` file.
        opset: ONNX opset (18 and above; ONNX Runtime 1.14+ reads 18).
        tolerance: largest allowed absolute difference of the two anomaly maps.
        image, mask: the verification volume and its brain mask (default: the first demo patient).
        inferer: the :class:`~disyre_monai.inferers.SliceAnomalyInferer` of the check (default: a
            :class:`~disyre_monai.inferers.DisyreScorer` with its defaults).

    Returns:
        ``{"path", "opset", "max_abs_difference", "tolerance", "verified_on", "onnx_seconds", "torch_seconds"}``.

    Raises:
        ValueError: bad arguments, a network that is not 2D, or a map difference above ``tolerance``.
        ImportError: without the ``onnx`` extra.
    """
    from monai.networks.utils import convert_to_onnx

    from disyre_monai.inferers import DisyreScorer, SliceAnomalyInferer

    check_int("export_onnx", "opset", opset, 18, 100)
    check_number("export_onnx", "tolerance", tolerance, 1e-12, 1.0)
    import_onnxruntime()
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError as e:
        raise ImportError(f"{ONNX_INSTALL_HINT} (onnxscript is missing: {e}).") from None
    module = getattr(network, "module", network)
    kernels = [p.ndim - 2 for p in module.parameters() if p.ndim >= 4]
    if not kernels or kernels[0] != 2:
        raise ValueError(f"export_onnx: only 2D convolutional networks are exported, got {type(module).__name__} "
                         f"with {kernels[0] if kernels else 'no'} spatial dimensions.")
    module = module.cpu().eval()
    divisor = getattr(module, "size_divisor", 8)
    inferer = inferer or SliceAnomalyInferer(DisyreScorer(size_divisor=divisor))
    volume, brain = verification_volume(image, mask)
    example = (torch.rand(2, module.in_channels, 2 * divisor, 2 * divisor), torch.tensor([0, 1]))
    path = Path(path)
    with atomic_path(path) as tmp:
        convert_to_onnx(module, example, input_names=list(ONNX_INPUTS), output_names=[ONNX_OUTPUT],
                        opset_version=opset, filename=str(tmp), dynamo=True, dynamic_shapes=DYNAMIC_SHAPES,
                        external_data=False, verbose=False)
        start = time.perf_counter()
        with torch.no_grad():
            reference = inferer(volume, module, mask=brain)
        torch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        exported = inferer(volume, OnnxNetwork(tmp, providers=["CPUExecutionProvider"]), mask=brain)
        onnx_seconds = time.perf_counter() - start
        difference = float((exported - reference).abs().max())
        if not difference <= tolerance:
            raise ValueError(f"export_onnx: the ONNX anomaly map differs from PyTorch's by up to {difference:.3g} "
                             f"(tolerance {tolerance:g}); {path} was not written.")
    report = {"path": str(path), "opset": opset, "max_abs_difference": difference, "tolerance": tolerance,
              "verified_on": str(image or "first demo patient"), "onnx_seconds": round(onnx_seconds, 3),
              "torch_seconds": round(torch_seconds, 3)}
    logger.info(f"exported {path}: {report}")
    return report


def export_onnx_command(
    output: str = "model.onnx",
    model_path: str = "bundle/models/model.pt",
    preset: str = "small",
    opset: int = 18,
    tolerance: float = 1e-4,
    image: str | None = None,
    mask: str | None = None,
    num_steps: int = 4,
    roi_size: int | None = None,
) -> dict:
    """``disyre-monai export_onnx``: write the trained network as ONNX, verified on a volume (see :func:`export_onnx`).

    Args:
        output: the ``.onnx`` file to write.
        model_path: weights (``models/model.pt`` or a training checkpoint); default: the shipped demo weights.
        preset: the network preset the weights belong to ("small" or "paper").
        opset: ONNX opset (>= 18).
        tolerance: largest allowed absolute difference between the ONNX and PyTorch anomaly maps.
        image, mask: verification volume and brain mask (default: the first demo patient).
        num_steps: severities of the verification map (mean single-step ensemble).
        roi_size: sliding-window size of the verification map (None: whole slices).

    Example:
        disyre-monai export_onnx --output runs/model.onnx --model_path runs/disyre/models/model.pt
    """
    from disyre_monai.inferers import DisyreScorer, SliceAnomalyInferer
    from disyre_monai.networks.loading import load_network_weights
    from disyre_monai.networks.restoration import DisyreUNet

    network = load_network_weights(DisyreUNet(preset=preset), model_path, map_location="cpu")
    scorer = DisyreScorer(num_steps=num_steps, roi_size=roi_size, size_divisor=network.size_divisor)
    inferer = SliceAnomalyInferer(scorer)
    report = export_onnx(network, output, opset, tolerance, image, mask, inferer)
    print(f"wrote {report['path']} (opset {opset}); anomaly map of {report['verified_on']}: ONNX Runtime vs PyTorch "
          f"max |difference| {report['max_abs_difference']:.2e} <= {tolerance:g}", flush=True)
    return report
