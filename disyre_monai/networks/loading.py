"""Loading network weights safely (weights-only) with errors that name the file, the parameter and both shapes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from disyre_monai.io import safe_torch_load

logger = logging.getLogger(__name__)


def check_state_dict(module: torch.nn.Module, state: Mapping, source: str = "checkpoint") -> None:
    """Raise ``ValueError`` unless ``state`` has exactly ``module``'s parameter names and shapes.

    The message names ``source``, the first mismatching parameter with both shapes (and how many differ), or
    the missing and unexpected names; a network built from a ``preset`` is named in the hint.
    """
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a state dict (parameter name -> tensor), got {type(state).__name__} "
                         f"with keys {list(state)[:8] if isinstance(state, Mapping) else '-'}.")
    own = module.state_dict()
    preset = getattr(module, "preset", None)
    hint = f" (this network: preset {preset!r}; was the checkpoint trained with another preset?)" if preset else ""
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        name, theirs, ours = mismatched[0]
        more = f"; {len(mismatched) - 1} more parameter(s) differ" if len(mismatched) > 1 else ""
        raise ValueError(f"{source}: parameter {name!r} has shape {theirs} in the checkpoint but {ours} in the network"
                         f"{more}{hint}.")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"{source}: the checkpoint does not match the network{hint}: {len(missing)} missing parameter(s) "
            f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}."
        )


def load_network_weights(
    network: torch.nn.Module, path: str | os.PathLike, map_location=None, key: str = "model"
) -> torch.nn.Module:
    """Load a state dict saved with ``torch.save`` into ``network`` (weights-only, checked first).

    ``path`` may hold the state dict itself (``models/model.pt``) or a training checkpoint holding it under
    ``key`` (``checkpoint_<iteration>.pt``). A ``DistributedDataParallel`` wrapper is looked through.

    Raises:
        FileNotFoundError: no such file.
        ValueError: corrupt or unsafe file, or weights that do not fit the network (see :func:`check_state_dict`).
    """
    state = safe_torch_load(path, map_location=map_location, what="model file")
    if isinstance(state, Mapping) and isinstance(state.get(key), Mapping) and "trainer" in state:
        state = state[key]
    module = getattr(network, "module", network)
    check_state_dict(module, state, f"model file {path}")
    module.load_state_dict(state)
    logger.info(f"loaded network weights from {path}")
    return network


def encoder_state_dict(state: Mapping) -> dict:
    """The ResNet parameters of a pretrained encoder's file, without its classification head (``fc``).

    Accepts a plain state dict of a ResNet (timm, torchvision and MONAI name the ResNet-50 layers alike:
    ``conv1``, ``bn1``, ``layer1.0.conv1``, ...; prefixes ``module.``/``encoder.`` are dropped) or a checkpoint
    holding one under ``"state_dict"``, as the released cDDPM's SparK pretraining writes it, whose encoder keys
    carry ``...sparse_encoder.sp_cnn.`` before the ResNet name (the released loader keeps what follows ``sp_cnn``
    and drops ``fc``; the SparK decoder's keys are left out here).
    """
    state = state.get("state_dict", state) if isinstance(state, Mapping) else state
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict or a checkpoint with 'state_dict', got {type(state).__name__}.")
    picked = {}
    sparse = any("sp_cnn." in k for k in state)
    for key, value in state.items():
        if sparse:
            if "sp_cnn." not in key:
                continue
            key = key.split("sp_cnn.", 1)[1]
        for prefix in ("module.", "encoder."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        if not key.startswith("fc."):
            picked[key] = value
    return picked


def load_encoder_weights(encoder: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load pretrained weights (e.g. cDDPM's SparK-pretrained ResNet-50) into ``encoder``, all but its ``fc`` head.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsafe or corrupt file, or weights that do not fit: naming the layer with both shapes, or the
            encoder's layers the file lacks (a ResNet-50 needs every one but ``fc``).
    """
    state = encoder_state_dict(safe_torch_load(path, map_location="cpu", what="encoder weights"))
    own = {k: v for k, v in encoder.state_dict().items() if not k.startswith("fc.")}
    head = {k: v for k, v in encoder.state_dict().items() if k.startswith("fc.")}
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        name, theirs, ours = mismatched[0]
        raise ValueError(f"encoder weights {path}: layer {name!r} has shape {theirs} in the file but {ours} in the "
                         f"encoder ({len(mismatched)} layer(s) differ; a 1-channel ResNet-50 is expected).")
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(f"encoder weights {path}: {len(missing)} encoder layer(s) missing from the file "
                         f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}.")
    encoder.load_state_dict({**state, **head})
    logger.info(f"loaded {len(state)} pretrained encoder tensors from {path} (fc head kept as initialised)")
    return encoder
