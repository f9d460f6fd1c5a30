"""Input checks shared by every module: shapes, dtypes, finiteness and plain settings.

The functions look only at ``.shape``/``.dtype`` (numpy arrays and TensorFlow tensors alike) or at
numpy values, raise :class:`ValueError` (or :class:`NonFiniteError`) with a message that names the
argument, what was expected and what was given, and return the checked value. They never convert
tensors; each module converts, then checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "NonFiniteError",
    "as_float_tensor",
    "check_finite",
    "check_numeric",
    "check_rank",
    "check_same_shape",
    "number",
    "per_level",
    "shape3",
    "shape_of",
]


class NonFiniteError(ValueError):
    """An array or value holds NaN or infinity where finite numbers are needed."""


def shape_of(x: Any) -> tuple:
    """The shape of an array, tensor or nested sequence as a tuple (None for unknown sizes)."""
    shape = getattr(x, "shape", None)
    if shape is None:
        return tuple(np.shape(x))
    as_list = getattr(shape, "as_list", None)  # tf.TensorShape
    if as_list is not None:
        return tuple(as_list()) if shape.rank is not None else ()
    return tuple(shape)


def shape3(shape: Iterable[Any], name: str = "shape", minimum: int = 1) -> tuple[int, int, int]:
    """Three integer sizes ``(d1, d2, d3)``, each >= ``minimum``.

    :raises ValueError: naming ``name`` for anything else (wrong length, non-integers, too small).
    """
    try:
        values = tuple(shape)
        sizes = tuple(int(s) for s in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three integers (d1, d2, d3), got {shape!r}") from None
    if len(sizes) != 3 or any(s != v for s, v in zip(sizes, values, strict=True)) or min(sizes) < minimum:
        raise ValueError(f"{name} must be three integers >= {minimum} (d1, d2, d3), got {shape!r}")
    return sizes  # type: ignore[return-value]


def _numpy_dtype(dtype: Any) -> np.dtype:
    dtype = getattr(dtype, "as_numpy_dtype", dtype)  # tf.DType
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(object)


def check_numeric(x: Any, name: str, expected: str = "") -> Any:
    """``x`` if its dtype is floating, integer or boolean; ValueError naming ``name`` (and the expected
    shape ``expected``, when given) otherwise."""
    dtype = _numpy_dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if dtype.kind not in "fiub":
        shape = f" of shape {expected}" if expected else ""
        raise ValueError(f"{name} must be a real-valued (float, int or bool) array{shape}, got dtype {dtype}")
    return x


def check_rank(x: Any, ranks: Sequence[int], name: str, expected: str) -> int:
    """The rank of ``x`` if it is one of ``ranks``; ValueError ``"{name} must have shape {expected}"``."""
    shape = shape_of(x)
    if len(shape) not in ranks:
        raise ValueError(f"{name} must have shape {expected}, got {shape}")
    return len(shape)


def check_same_shape(a: Any, b: Any, names: tuple[str, str], expected: str) -> None:
    """ValueError naming both arguments when their (known) shapes differ."""
    sa, sb = shape_of(a), shape_of(b)
    same = len(sa) == len(sb) and all(x is None or y is None or x == y for x, y in zip(sa, sb, strict=True))
    if not same:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape {expected}, got {sa} and {sb}")


def check_finite(x: Any, name: str, where: str = "") -> np.ndarray:
    """``x`` as a numpy array if every value is finite.

    :param where: context for the message, e.g. a file name, a pair name or a step.
    :raises NonFiniteError: with the number of NaN and infinite values and where they are.
    """
    arr = np.asarray(x)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        context = f" ({where})" if where else ""
        raise NonFiniteError(f"{name}{context} holds {nan} NaN and {inf} infinite value(s) of {arr.size}, "
                             f"the first at index {first}")
    return arr


def number(value: Any, name: str, low: float | None = None, high: float | None = None,
           low_open: bool = False, integer: bool = False) -> float | int:
    """A finite number (int with ``integer=True``) within ``[low, high]`` (``(low, high]`` if ``low_open``).

    Booleans are refused (``True`` is not a learning rate); numeric strings such as YAML's ``"1e-3"`` are
    read as numbers.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise NonFiniteError(f"{name} must be finite, got {value!r}")
    if integer:
        if out != int(out):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        out = int(out)
    if low is not None and (out < low or (low_open and out == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and out > high:
        raise ValueError(f"{name} must be <= {high:g}, got {value!r}")
    return out


def per_level(value: Any, n: int, name: str, cast=float) -> list:
    """A scalar applies to every one of ``n`` levels; a sequence must give exactly one value per level."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{name} must be one value or {n} values (one per level), got {len(value)}")
        return [cast(v) for v in value]
    return [cast(value)] * n


def as_float_tensor(x: Any, name: str, ranks: Sequence[int] | None = None, expected: str = "",
                    dtype: Any = None) -> Any:
    """``x`` as a floating TensorFlow tensor: floats keep their dtype (or become ``dtype``), integers and
    booleans become float32 (or ``dtype``).

    :param ranks: allowed ranks (None: any), described by ``expected`` in the error message.
    :raises ValueError: naming ``name`` for non-numeric input or a wrong rank.
    """
    import tensorflow as tf

    try:
        t = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real-valued array{' of shape ' + expected if expected else ''}, "
                         f"got {type(x).__name__}") from err
    check_numeric(t, name, expected)
    target = dtype if dtype is not None else (t.dtype if t.dtype.is_floating else tf.float32)
    if t.dtype != target:
        t = tf.cast(t, target)
    if ranks is not None:
        check_rank(t, ranks, name, expected)
    return t
