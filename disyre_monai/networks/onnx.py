"""The restoration network run by ONNX Runtime: an ``nn.Module`` stand-in for an exported network, and the choice
between the two for an inference run.

The exported graph (``disyre-monai export_onnx``, :mod:`disyre_monai.commands.export_onnx`) is the network alone,
``(image, timesteps) -> restored``, with dynamic batch and spatial axes; the anomaly map (severities, sliding
windows, brain mask) stays in the inferer (:class:`~disyre_monai.inferers.DisyreScorer`), which runs an
:class:`OnnxNetwork` exactly as it runs the PyTorch network. For CPU-only workstations (ONNX Runtime, ``pip install
disyre-monai[onnx]``), Triton or MONAI Deploy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from disyre_monai.utils import check_int

logger = logging.getLogger(__name__)

#: Names of the graph's inputs and output.
ONNX_INPUTS = ("image", "timesteps")
ONNX_OUTPUT = "restored"
#: Dynamic axes of (image, timesteps), named; the output's follow from them.
DYNAMIC_SHAPES = ({0: "batch", 2: "height", 3: "width"}, {0: "batch"})
ONNX_INSTALL_HINT = "ONNX export and inference need the optional extra: pip install 'disyre-monai[onnx]'"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"{ONNX_INSTALL_HINT} (onnxruntime is missing: {e}).") from None
    return onnxruntime


class OnnxNetwork(torch.nn.Module):
    """A network exported by :func:`export_onnx`, run by ONNX Runtime, called like the PyTorch network.

    ``network(x, timesteps)`` takes ``x`` ``(N, C, H, W)`` float and ``timesteps`` ``(N,)`` integer tensors
    and returns the restored ``(N, C, H, W)`` float32 tensor on ``x``'s device. It has no parameters, so
    :class:`~disyre_monai.inferers.SliceAnomalyInferer`, MONAI's evaluators and ``.to()``/``.eval()`` treat it as a
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
        ort = import_onnxruntime()
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
