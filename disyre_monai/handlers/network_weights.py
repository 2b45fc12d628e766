"""Loading the network's weights when an engine starts (in place of MONAI's ``CheckpointLoader``)."""

from __future__ import annotations

import os

import torch
from ignite.engine import Engine, Events

from disyre_monai.networks.loading import load_network_weights


class LoadNetworkWeights:
    """Ignite handler: :func:`~disyre_monai.networks.load_network_weights` when the engine starts.

    Unlike MONAI's ``CheckpointLoader`` it loads weights only and checks every parameter's shape first.

    Args:
        load_path: the model file.
        network: the network to fill.
        map_location: device of the loaded tensors.
        on_attach: load when attached instead of when the engine starts. Training's initial weights
            (``--init_weights``) load this way, before :class:`~disyre_monai.handlers.CheckpointResumer` (attached
            after it) puts a resumed run's own weights over them.
    """

    def __init__(self, load_path: str | os.PathLike, network: torch.nn.Module, map_location=None,
                 on_attach: bool = False) -> None:
        self.load_path, self.network, self.map_location = load_path, network, map_location
        self.on_attach = bool(on_attach)

    def attach(self, engine: Engine) -> None:
        if self.on_attach:
            self()
            return
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        load_network_weights(self.network, self.load_path, self.map_location)
