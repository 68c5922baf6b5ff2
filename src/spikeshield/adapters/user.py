"""A user's model from a ``module.path:factory`` (or ``path/to/file.py:factory``) spec, as the CLI's ``--model``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from spikeshield.adapters.wrap import wrap


def import_model(spec: str, **wrap_options: Any) -> nn.Module:
    """The model ``spec`` names: ``"package.module:name"`` or ``"file.py:name"``, where ``name`` is an
    ``nn.Module`` instance or a callable taking no arguments that returns one.

    A model that already has spikeshield's contract (a ``forward_steps`` method: our models, a :func:`wrap`-ed one)
    is returned as is; any other module is wrapped with ``wrap(module, **wrap_options)`` (framework detected unless
    given).

    >>> model = import_model("examples/byo_snntorch.py:build", T=8)   # doctest: +SKIP
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"--model takes 'module.path:factory' or 'file.py:factory'; got {spec!r}")
    module = _import(where)
    if not hasattr(module, name):
        raise ValueError(f"{where} has no attribute {name!r}")
    obj = getattr(module, name)
    model = obj if isinstance(obj, nn.Module) else obj()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model if callable(getattr(model, "forward_steps", None)) else wrap(model, **wrap_options)


def _import(where: str):
    """A module by dotted name, or by file path (``.py``)."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ValueError(f"cannot import {where!r} ({e}); give a module on the Python path or a .py file") from None
