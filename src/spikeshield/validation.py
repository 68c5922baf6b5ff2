"""Input checks shared by models, attacks and configs: each raises an error that names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ValueError:
    """Build the error for an unknown registry name, suggesting the closest valid one."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}.{hint}")


def check_eps(eps: float, name: str = "eps") -> float:
    """Check that a perturbation budget is a number in [0, 1] (pixel units) and return it as a float."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in pixel units, e.g. 8/255; got {eps!r}") from None
    if not 0.0 <= value <= 1.0 or value != value:
        raise ValueError(f"{name} must lie in [0, 1] (pixel units, e.g. 8/255 = {8 / 255:.4f}); got {value}")
    return value


_UNCLAMPED: ContextVar[bool] = ContextVar("spikeshield_unclamped_pixels", default=False)


@contextmanager
def unclamped_pixels() -> Iterator[None]:
    """Within the block models accept pixels outside [0, 1]: the non-standard unclamped threat model (METHODS 1),
    entered only by attacks built with ``clamp=False`` and by the scoring of their outputs."""
    token = _UNCLAMPED.set(True)
    try:
        yield
    finally:
        _UNCLAMPED.reset(token)


_NONFINITE = "the input contains NaN or inf values: check the data pipeline or the attack that made it"
_RANGE = ("pixel values must lie in [0, 1] (pixel space; the model normalises internally), got range "
          "[{lo}, {hi}]: divide by 255 or undo any normalisation")
_RANGE_ASYNC = ("pixel values must lie in [0, 1] (pixel space; the model normalises internally), but some do not "
                "(checked on the device, range not read back): divide by 255 or undo any normalisation")


def check_images(x: torch.Tensor, channels: int, size: int, dataset: str) -> None:
    """Check that ``x`` is a finite ``[B, channels, size, size]`` float batch in [0, 1] (any range inside
    :func:`unclamped_pixels`).

    Type, dtype and shape are checked on the host. The values are checked without a device-to-host copy when ``x``
    is not on the CPU: asynchronous device-side asserts (:func:`torch._assert_async`), so a model's forward never
    waits for the accelerator; a failed one surfaces as a ``RuntimeError`` at the next synchronisation, and on CUDA
    it leaves the process's CUDA context unusable (a device-side assert). CPU tensors raise the ``ValueError`` at once.
    """
    expected = f"[B, {channels}, {size}, {size}]"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the model takes a torch.Tensor of shape {expected}; got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1]; got dtype {x.dtype}: divide uint8 images by 255")
    if x.dim() != 4:
        raise ValueError(f"images must have shape {expected} ({dataset}); got {list(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"the model expects {channels} channel(s) ({dataset} images are {expected}) but the input has "
            f"{x.shape[1]} channel(s), shape {list(x.shape)}: convert the images or build the model for their dataset"
        )
    if tuple(x.shape[2:]) != (size, size):
        raise ValueError(
            f"the model expects {size}x{size} images ({dataset}) but got {x.shape[2]}x{x.shape[3]}: resize or crop "
            f"the images, or build the model for their dataset"
        )
    if x.numel() == 0:
        raise ValueError("the input batch is empty")
    if x.device.type != "cpu":
        _assert_images_async(x, clamped=not _UNCLAMPED.get())
        return
    if not torch.isfinite(x).all():
        raise ValueError(_NONFINITE)
    lo, hi = torch.aminmax(x)
    if (lo < 0 or hi > 1) and not _UNCLAMPED.get():
        raise ValueError(_RANGE.format(lo=f"{lo.item():.4g}", hi=f"{hi.item():.4g}"))


def _assert_images_async(x: torch.Tensor, clamped: bool) -> None:
    """The value checks of :func:`check_images` as asynchronous device-side asserts (no host synchronisation; the
    range is not reported, reading it would synchronise). Works on CPU tensors too, where it raises at once."""
    x = x.detach()
    torch._assert_async(torch.isfinite(x).all(), _NONFINITE)
    if clamped:
        torch._assert_async(((x >= 0) & (x <= 1)).all(), _RANGE_ASYNC)


def parse_eps(value: str | float, name: str = "eps") -> float:
    """Parse a budget given as a number or a fraction string such as ``"8/255"``, and check it with
    :func:`check_eps`."""
    if isinstance(value, str):
        text = value.strip()
        try:
            num, _, den = text.partition("/")
            value = float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{name} must be a number or a fraction like 8/255; got {text!r}") from None
    return check_eps(value, name)
