"""The activation functions of the ONNX recurrent ops, by code, with their alpha/beta conventions.

ONNX lets ``activations`` name any of these per gate; ``activation_alpha`` / ``activation_beta`` are consumed in
order by the functions that take them (onnxruntime's convention), with the defaults below where a list runs out.
The ONNX spec gives no defaults for the recurrent ops; these are onnxruntime's, found by experiment
(tests/test_lstm_vs_onnxruntime.py): LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, and 0 for everything else, so a
bare Affine or ScaledTanh is the zero function and a bare ThresholdedRelu is a Relu (not the standalone ops'
defaults of 1.0). The converters store every activation with its own (alpha, beta) filled in, so the kernels never
look at defaults.
"""
import numpy as np

SIGMOID, TANH, RELU, AFFINE, LEAKY_RELU, THRESHOLDED_RELU, SCALED_TANH, HARD_SIGMOID, ELU, SOFTSIGN, SOFTPLUS = range(11)

# name (lower case) -> (code, uses alpha, uses beta, default alpha, default beta)
ACTIVATIONS = {
    "sigmoid": (SIGMOID, False, False, 0.0, 0.0),
    "tanh": (TANH, False, False, 0.0, 0.0),
    "relu": (RELU, False, False, 0.0, 0.0),
    "affine": (AFFINE, True, True, 0.0, 0.0),
    "leakyrelu": (LEAKY_RELU, True, False, 0.01, 0.0),
    "thresholdedrelu": (THRESHOLDED_RELU, True, False, 0.0, 0.0),
    "scaledtanh": (SCALED_TANH, True, True, 0.0, 0.0),
    "hardsigmoid": (HARD_SIGMOID, True, True, 0.2, 0.5),
    "elu": (ELU, True, False, 1.0, 0.0),
    "softsign": (SOFTSIGN, False, False, 0.0, 0.0),
    "softplus": (SOFTPLUS, False, False, 0.0, 0.0),
}
CANONICAL_NAMES = {
    "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "affine": "Affine", "leakyrelu": "LeakyRelu",
    "thresholdedrelu": "ThresholdedRelu", "scaledtanh": "ScaledTanh", "hardsigmoid": "HardSigmoid", "elu": "Elu",
    "softsign": "Softsign", "softplus": "Softplus",
}


def normalize(names, alphas, betas):
    """ONNX attributes -> [(CanonicalName, alpha, beta)], consuming alpha/beta lists as onnxruntime does.

    Raises ValueError naming an unknown activation.
    """
    alphas = list(alphas or [])
    betas = list(betas or [])
    out = []
    for name in names:
        key = name.lower() if isinstance(name, str) else name
        if key not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r} (supported: {', '.join(CANONICAL_NAMES.values())})")
        _, uses_a, uses_b, def_a, def_b = ACTIVATIONS[key]
        a = alphas.pop(0) if uses_a and alphas else def_a
        b = betas.pop(0) if uses_b and betas else def_b
        out.append((CANONICAL_NAMES[key], float(a), float(b)))
    return out


def codes_of(activations):
    """[(name, alpha, beta)] -> (int64 codes, float64 alphas, float64 betas) for the kernels."""
    codes = np.array([ACTIVATIONS[n.lower()][0] for n, _, _ in activations], dtype=np.int64)
    alphas = np.array([a for _, a, _ in activations], dtype=np.float64)
    betas = np.array([b for _, _, b in activations], dtype=np.float64)
    return codes, alphas, betas


def __getattr__(name):
    # the compiled ``activate`` lives with the other numeric kernels; imported on demand so that this module (the
    # activation names and codes the planner needs) does not import Numba
    if name == "activate":
        from .numeric import activate
        return activate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
