"""Pickle-free storage of nested training state (optimizer ``state_dict`` and the like).

:func:`split_tensors` turns a nested structure of dicts, lists, tuples, numbers, strings and tensors into a
JSON-ready tree plus a flat ``{key: tensor}`` dict for safetensors; :func:`join_tensors` reverses it exactly
(tuples stay tuples, integer dict keys stay integers, tensors keep dtype and values).
"""

from __future__ import annotations

from typing import Any

import torch

_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Return ``(json_tree, tensors)``; tensors are replaced by ``{"__tensor__": key}`` references."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().to("cpu").contiguous().clone()
            return {_TENSOR: path}
        if isinstance(node, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in node):
                return {k: walk(v, f"{path}/{k}") for k, v in node.items()}
            for k in node:
                if not isinstance(k, (str, int, float, bool)) and k is not None:
                    raise TypeError(f"cannot store dict key {k!r} ({type(k).__name__}) at {path or '/'}")
            return {_ITEMS: [[k, walk(v, f"{path}/{k}")] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {_TUPLE: [walk(v, f"{path}/{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store a {type(node).__name__} at {path or '/'} without pickle")

    return walk(obj, prefix), tensors


def join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the structure split by :func:`split_tensors` (raises ValueError on a missing tensor)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {_TENSOR}:
                key = node[_TENSOR]
                if key not in tensors:
                    raise ValueError(f"training state is damaged: tensor {key!r} is missing")
                return tensors[key]
            if set(node) == {_TUPLE}:
                return tuple(walk(v) for v in node[_TUPLE])
            if set(node) == {_ITEMS}:
                return {k: walk(v) for k, v in node[_ITEMS]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(tree)
