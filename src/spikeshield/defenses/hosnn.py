"""HoSNN's Neural Dynamic Signature (METHODS 1): collect it from a trained LIF network, install it in a TA-LIF one.

>>> nds = collect_nds(lif_model, train_loader)          # {"body.2": [T, 32, 28, 28], ...}   # doctest: +SKIP
>>> hosnn = create_model("lenet", neuron="talif", T=5)                                       # doctest: +SKIP
>>> install_nds(hosnn, nds)                              # frozen buffers, saved with the checkpoint  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from spikeshield.neurons import TALIF, SpikingNeuron, record


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    """Image batches in [0, 1] from a tensor ``[N, C, H, W]`` or an iterable of ``(x, y)`` / ``x`` batches."""
    if isinstance(data, torch.Tensor):
        for i in range(0, data.shape[0], batch_size):
            yield data[i:i + batch_size]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, tuple | list) else batch


@torch.no_grad()
def collect_nds(model: nn.Module, data, batch_size: int = 256, progress: bool = True) -> dict[str, torch.Tensor]:
    """The NDS of ``model``: per neuron layer, the mean pre-reset membrane per neuron and time step over ``data``.

    Args:
        model: a trained spikeshield SNN (a LIF network of the architecture the HoSNN will have). It runs in eval
            mode (BN statistics fixed, METHODS 1); its mode is restored afterwards.
        data: clean training images ``[N, C, H, W]`` in [0, 1], or an iterable of ``(x, y)`` batches (no
            augmentation).
        batch_size: images per forward pass for tensor input.
        progress: show a progress bar.

    Returns ``{layer name: [T, *neuron shape]}``, keyed like ``model.named_modules()``, on the CPU.
    """
    names = [name for name, m in model.named_modules() if isinstance(m, SpikingNeuron)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no spiking neuron layers: there is no NDS to collect")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    try:
        for x in tqdm(_batches(data, batch_size), disable=not progress, desc="NDS", leave=False):
            with record(model) as rec:
                model(x.to(device))
            for name in names:
                total = rec.membrane[name].double().sum(1).cpu()  # [T, *shape]
                sums[name] = total if name not in sums else sums[name] + total
            count += x.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("collect_nds got no images")
    return {name: (total / count).float() for name, total in sums.items()}


def install_nds(model: nn.Module, nds: dict[str, torch.Tensor]) -> None:
    """Give every TA-LIF layer of ``model`` its NDS (the layer of the same name in :func:`collect_nds`'s output)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, TALIF)}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no TA-LIF layers (build it with neuron='talif')")
    missing = sorted(set(layers) - set(nds))
    if missing:
        raise ValueError(f"no NDS for the TA-LIF layers {missing}; the NDS has {sorted(nds)}: collect it from a LIF "
                         "network of the same architecture")
    for name, layer in layers.items():
        layer.set_nds(nds[name].to(layer.nds.device, layer.nds.dtype))
