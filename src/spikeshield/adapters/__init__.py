"""Foreign models in, ours out: SpikingJelly / snnTorch / Norse networks wrapped with spikeshield's contract
(:func:`wrap`), NIR graphs imported (:func:`from_nir`) and spikeshield models exported (:func:`to_nir`).

The core never imports this package; the frameworks are imported only when a model of theirs is wrapped.
"""

from spikeshield.adapters.nir import from_nir, to_nir
from spikeshield.adapters.user import import_model
from spikeshield.adapters.wrap import WrappedModel, wrap

__all__ = ["WrappedModel", "from_nir", "import_model", "to_nir", "wrap"]
