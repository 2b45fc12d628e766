"""The restoration network as ONNX: export (verified on a real volume) and an ONNX Runtime stand-in for the network.

The exported graph is the network alone, ``(image, timesteps) -> restored``, with dynamic batch and spatial
axes; the anomaly map (severities, sliding windows, brain mask) stays in :class:`~disyre_monai.inferers.DisyreInferer`,
which runs an :class:`OnnxNetwork` exactly as it runs the PyTorch network. For CPU-only workstations (ONNX
Runtime, ``pip install disyre-monai[onnx]``), Triton or MONAI Deploy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from disyre_monai.io import atomic_path
from disyre_monai.utils import check_int, check_number

logger = logging.getLogger(__name__)

#: Names of the graph's inputs and output.
ONNX_INPUTS = ("image", "timesteps")
ONNX_OUTPUT = "restored"
#: Dynamic axes of (image, timesteps), named; the output's follow from them.
_DYNAMIC_SHAPES = ({0: "batch", 2: "height", 3: "width"}, {0: "batch"})
_INSTALL = "ONNX export and inference need the optional extra: pip install 'disyre-monai[onnx]'"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"{_INSTALL} (onnxruntime is missing: {e}).") from None
    return onnxruntime


class OnnxNetwork(torch.nn.Module):
    """A network exported by :func:`export_onnx`, run by ONNX Runtime, called like the PyTorch network.

    ``network(x, timesteps)`` takes ``x`` ``(N, C, H, W)`` float and ``timesteps`` ``(N,)`` integer tensors
    and returns the restored ``(N, C, H, W)`` float32 tensor on ``x``'s device. It has no parameters, so
    :class:`~disyre_monai.inferers.DisyreInferer`, MONAI's evaluators and ``.to()``/``.eval()`` treat it as a
    network whose inputs stay where they are.

    Args:
        path: the ``.onnx`` file.
        providers: ONNX Runtime execution providers in order of preference (default: CUDA when this
            onnxruntime has it and PyTorch sees a GPU, then CPU).
        num_threads: intra-op threads of the CPU provider (0: ONNX Runtime's default, one per core).
        size_divisor: the exported network's downsampling factor (the PyTorch network's ``size_divisor``), which
            the inferer reads to pad whole slices exactly as it does for the PyTorch network; None leaves it unset.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None, num_threads: int = 0,
                 size_divisor: int | None = None) -> None:
        super().__init__()
        ort = _import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{type(self).__name__}: ONNX model {path} does not exist.")
        available = ort.get_available_providers()
        if providers is None:
            use_cuda = "CUDAExecutionProvider" in available and torch.cuda.is_available()
            providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise ValueError(f"{type(self).__name__}: providers {unknown} are not in this onnxruntime ({available}).")
        options = ort.SessionOptions()
        options.intra_op_num_threads = check_int(type(self).__name__, "num_threads", num_threads, 0, 4096)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as e:
            raise ValueError(f"{type(self).__name__}: {path} is not a loadable ONNX model ({e}).") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != list(ONNX_INPUTS):
            raise ValueError(f"{type(self).__name__}: {path} has inputs {names}, expected {list(ONNX_INPUTS)} "
                             "(export it with `disyre-monai export_onnx`).")
        channels = self.session.get_inputs()[0].shape[1]
        self.in_channels = channels if isinstance(channels, int) else None
        self.path = path
        if size_divisor is not None:
            self.size_divisor = check_int(type(self).__name__, "size_divisor", size_divisor, 1, 4096)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Restore ``x`` ``(N, C, H, W)`` at ``timesteps`` ``(N,)``: ``(N, C, H, W)`` float32 on ``x.device``."""
        feeds = {ONNX_INPUTS[0]: x.detach().float().cpu().numpy(),
                 ONNX_INPUTS[1]: torch.as_tensor(timesteps).detach().long().cpu().numpy()}
        restored = self.session.run([ONNX_OUTPUT], feeds)[0]
        return torch.from_numpy(restored).to(x.device)


def inference_network(network: torch.nn.Module, device: str | torch.device = "cpu",
                      onnx_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """The network an inference run uses: ``network`` on ``device``, or with ``onnx_path`` the exported model run
    by ONNX Runtime (:class:`OnnxNetwork`; CUDA provider when available and ``device`` is a GPU, else CPU), with
    ``network``'s ``size_divisor`` so that whole slices are padded as for ``network``.
    """
    if not onnx_path:
        return network.to(device)
    on_gpu = torch.device(device).type == "cuda"
    providers = None if on_gpu else ["CPUExecutionProvider"]
    return OnnxNetwork(onnx_path, providers=providers, size_divisor=getattr(network, "size_divisor", None))


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
        inferer: the :class:`~disyre_monai.inferers.DisyreInferer` of the check (default: its defaults).

    Returns:
        ``{"path", "opset", "max_abs_difference", "tolerance", "verified_on", "onnx_seconds", "torch_seconds"}``.

    Raises:
        ValueError: bad arguments, a network that is not 2D, or a map difference above ``tolerance``.
        ImportError: without the ``onnx`` extra.
    """
    from monai.networks.utils import convert_to_onnx

    from disyre_monai.inferers import DisyreInferer

    check_int("export_onnx", "opset", opset, 18, 100)
    check_number("export_onnx", "tolerance", tolerance, 1e-12, 1.0)
    _import_onnxruntime()
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError as e:
        raise ImportError(f"{_INSTALL} (onnxscript is missing: {e}).") from None
    module = getattr(network, "module", network)
    kernels = [p.ndim - 2 for p in module.parameters() if p.ndim >= 4]
    if not kernels or kernels[0] != 2:
        raise ValueError(f"export_onnx: only 2D convolutional networks are exported, got {type(module).__name__} "
                         f"with {kernels[0] if kernels else 'no'} spatial dimensions.")
    module = module.cpu().eval()
    divisor = getattr(module, "size_divisor", 8)
    inferer = inferer or DisyreInferer(size_divisor=divisor)
    volume, brain = verification_volume(image, mask)
    example = (torch.rand(2, module.in_channels, 2 * divisor, 2 * divisor), torch.tensor([0, 1]))
    path = Path(path)
    with atomic_path(path) as tmp:
        convert_to_onnx(module, example, input_names=list(ONNX_INPUTS), output_names=[ONNX_OUTPUT],
                        opset_version=opset, filename=str(tmp), dynamo=True, dynamic_shapes=_DYNAMIC_SHAPES,
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
    from disyre_monai.inferers import DisyreInferer
    from disyre_monai.networks.loading import load_network_weights
    from disyre_monai.networks.restoration import DisyreUNet

    network = load_network_weights(DisyreUNet(preset=preset), model_path, map_location="cpu")
    inferer = DisyreInferer(num_steps=num_steps, roi_size=roi_size, size_divisor=network.size_divisor)
    report = export_onnx(network, output, opset, tolerance, image, mask, inferer)
    print(f"wrote {report['path']} (opset {opset}); anomaly map of {report['verified_on']}: ONNX Runtime vs PyTorch "
          f"max |difference| {report['max_abs_difference']:.2e} <= {tolerance:g}", flush=True)
    return report
