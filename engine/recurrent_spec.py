"""What the attributes of the recurrent ops (LSTM, GRU, RNN) mean, in one place.

The converters call ``canonical`` to turn a source's attributes (an ONNX node's, or the ones a PyTorch module
implies) into the stored form; an op's ``validate`` calls ``check`` on a stored node (or ``canonical`` on it: the
stored form canonicalises to itself).

Stored form, every key present, in this order:
    hidden_size   int >= 1
    direction     "forward" | "reverse" | "bidirectional"  (D = 1, 1, 2 directions)
    layout        0: X (T, B, I), states (D, B, H) | 1: X (B, T, I), states (B, D, H)
    activations   [[Name, alpha, beta]] * (len(default_activations) * D): forward direction's first, alpha/beta
                  filled in (engine/ops/activations.py), so the kernels never look at defaults
    clip          None (no clip) | float > 0
    the op's own 0/1 flags (LSTM input_forget, GRU linear_before_reset), default 0
    extensions    attributes no ONNX op has (LSTM proj_size: PyTorch's projection, 0 = none)
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

from .errors import ModelFileError, UnsupportedModelError

DIRECTIONS = {"forward": (0,), "reverse": (1,), "bidirectional": (0, 1)}   # direction -> 1 = runs backwards
_COMMON = ("hidden_size", "direction", "layout", "activations", "clip")
_ONNX_ONLY = ("activation_alpha", "activation_beta")   # folded into the stored activations


@dataclass(frozen=True)
class RecurrentSpec:
    op: str
    gates: tuple                # the gate blocks along W's and R's rows, ONNX order
    default_activations: tuple  # one direction's activation functions
    flags: tuple = ()           # the op's own 0/1 attributes (default 0)
    extensions: tuple = ()      # stored integer attributes with no ONNX equivalent (default 0)

    @property
    def n_gates(self) -> int:
        return len(self.gates)

    @property
    def attributes(self) -> tuple:
        """The stored attributes, in order."""
        return _COMMON + self.flags + self.extensions

    @property
    def onnx_attributes(self) -> tuple:
        """The attributes the ONNX op defines."""
        return _COMMON + _ONNX_ONLY + self.flags


SPECS = {
    "LSTM": RecurrentSpec("LSTM", ("i", "o", "f", "c"), ("Sigmoid", "Tanh", "Tanh"), ("input_forget",), ("proj_size",)),
    "GRU": RecurrentSpec("GRU", ("z", "r", "h"), ("Sigmoid", "Tanh"), ("linear_before_reset",)),
    "RNN": RecurrentSpec("RNN", ("i",), ("Tanh",)),
}


def num_directions(direction: str) -> int:
    return len(DIRECTIONS[direction])


def canonical(op: str, attrs: dict, num_directions: int | None = None, *, where: str | None = None,
              onnx: bool = False) -> dict:
    """A node's attributes -> the stored form, every default filled in.

    ``attrs`` may be ONNX's (strings or bytes, ``activations`` as names with ``activation_alpha`` /
    ``activation_beta``, anything absent = ONNX's default) or already stored (``activations`` as [name, alpha, beta]).
    ``num_directions``, if given, must agree with ``direction`` (it sets how many default activations are filled in).
    An absent ``hidden_size`` stays None: the ONNX converter infers it from R. With ``onnx=True`` only the ONNX
    op's attributes are accepted (no extensions). Raises UnsupportedModelError("<where>: ...").
    """
    spec = SPECS[op]
    where = where or op

    def fail(msg):
        return UnsupportedModelError(f"{where}: {msg}")

    direction = _text(attrs.get("direction", "forward"))
    if direction not in DIRECTIONS:
        raise fail(f"direction {direction!r} is not one of forward, reverse, bidirectional")
    D = len(DIRECTIONS[direction])
    if num_directions is not None and num_directions != D:
        raise fail(f"direction {direction!r} has {D} direction(s), not {num_directions}")
    H = attrs.get("hidden_size")
    if H is not None and not _integer(H, 1):
        raise fail(f"hidden_size must be a positive integer, got {H!r}")
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise fail(f"layout {layout} is not 0 or 1")
    acts = _activations(spec, attrs, D, direction, fail)
    clip = attrs.get("clip")
    if clip is not None and (not _number(clip) or not clip > 0):
        raise fail(f"clip must be positive, got {clip}")
    known = spec.onnx_attributes + (() if onnx else spec.extensions)
    unknown = set(attrs) - set(known)
    if unknown:
        raise fail(f"unsupported attribute(s) {sorted(unknown)} (an {op} supports {sorted(known)})")
    out = {"hidden_size": None if H is None else int(H), "direction": direction, "layout": layout, "activations": acts,
           "clip": None if clip is None else float(clip)}
    for key in spec.flags:
        try:
            value = int(attrs.get(key, 0))
        except (TypeError, ValueError):
            value = attrs.get(key)
        if value not in (0, 1):
            raise fail(f"{key} must be 0 or 1, got {value}")
        out[key] = value
    for key in spec.extensions:
        value = attrs.get(key, 0)
        if not _integer(value, 0):
            raise fail(f"{key} must be a non-negative integer, got {value!r}")
        out[key] = int(value)
    return out


def check(op: str, attrs: dict, num_directions: int | None = None, *, where: str | None = None) -> None:
    """Check a stored node's attributes (every key of the stored form present and valid; other keys are not looked
    at here: Model.validate refuses a node with attributes its op does not read, before this runs).

    ModelFileError for a malformed value, UnsupportedModelError for a well-formed one the engine does not run;
    messages start with ``where`` (default: the op).
    """
    spec = SPECS[op]
    where = where or op
    missing = [n for n in spec.attributes if n not in attrs]
    if missing:
        raise ModelFileError(f"{where}: lacks attribute(s) {', '.join(missing)}")
    H = attrs["hidden_size"]
    if not _integer(H, 1):
        raise ModelFileError(f"{where}: hidden_size must be a positive integer, got {H!r}")
    if not isinstance(attrs["direction"], str) or attrs["direction"] not in DIRECTIONS:
        raise UnsupportedModelError(f"{where}: direction {attrs['direction']!r} is not one of forward, reverse, "
                                    f"bidirectional")
    D = len(DIRECTIONS[attrs["direction"]])
    if num_directions is not None and num_directions != D:
        raise ModelFileError(f"{where}: direction {attrs['direction']!r} has {D} direction(s), not {num_directions}")
    if not _integer(attrs["layout"], 0) or attrs["layout"] > 1:
        raise UnsupportedModelError(f"{where}: layout must be 0 or 1, got {attrs['layout']!r}")
    acts = attrs["activations"]
    n = len(spec.default_activations) * D
    if not isinstance(acts, list) or len(acts) != n:
        raise ModelFileError(f"{where}: expected {n} activations, got {acts!r}")
    from .ops.activations import ACTIVATIONS   # here, not at the top: engine/ops import this module
    for act in acts:
        if (not isinstance(act, list) or len(act) != 3 or not isinstance(act[0], str)
                or act[0].lower() not in ACTIVATIONS):
            raise UnsupportedModelError(f"{where}: unsupported activation {act!r}")
        if not all(_number(v) for v in act[1:]):
            raise ModelFileError(f"{where}: activation {act!r} needs a numeric alpha and beta")
    clip = attrs["clip"]
    if clip is not None and (not _number(clip) or not clip > 0):
        raise ModelFileError(f"{where}: clip must be a positive number or null, got {clip!r}")
    for key in spec.flags:
        if attrs[key] not in (0, 1) or isinstance(attrs[key], bool):
            raise ModelFileError(f"{where}: {key} must be 0 or 1, got {attrs[key]!r}")
    for key in spec.extensions:
        if not _integer(attrs[key], 0):
            raise ModelFileError(f"{where}: {key} must be a non-negative integer, got {attrs[key]!r}")


def _integer(value, minimum) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and minimum <= value <= 2 ** 62


def _number(value) -> bool:
    """A real number that converts to a float64 (10**400 does not)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _activations(spec, attrs, D, direction, fail):
    """ONNX names (+ activation_alpha/beta) or stored [name, alpha, beta] triples -> [[Name, alpha, beta]]."""
    from .ops.activations import normalize   # here, not at the top: engine/ops import this module

    given = attrs.get("activations")
    if given is None:
        given = list(spec.default_activations) * D
    given = [_text(a) for a in given]
    if len(given) != len(spec.default_activations) * D:
        raise fail(f"expected {len(spec.default_activations) * D} activations for direction {direction!r}, "
                   f"got {len(given)}")
    try:
        if all(isinstance(a, str) for a in given):
            return [list(a) for a in normalize(given, attrs.get("activation_alpha"), attrs.get("activation_beta"))]
        if attrs.get("activation_alpha") is not None or attrs.get("activation_beta") is not None:
            raise fail("activations given as [name, alpha, beta] take no activation_alpha / activation_beta")
        out = []
        for act in given:
            if (not isinstance(act, (list, tuple)) or len(act) != 3 or not isinstance(act[0], str)
                    or not _number(act[1]) or not _number(act[2])):
                raise fail(f"an activation is a name or [name, alpha, beta], got {act!r}")
            name = normalize([act[0]], None, None)[0][0]
            out.append([name, float(act[1]), float(act[2])])
        return out
    except ValueError as e:   # an unknown name
        raise fail(str(e)) from None
