"""The side-by-side benchmark of lstm-engine against onnxruntime and torch (issue 3's proof), with OpenVINO and
tract as peers where they are installed.

    python -m bench --quick           # or: lstm-engine bench --quick

Modules: ``scenarios`` (what is measured, and the targets), ``models`` (torch -> ONNX -> lstm-engine),
``peers`` (OpenVINO and tract on the same ONNX file), ``timing`` (interleaved per-call timing), ``coldstart``
(fresh processes), ``report`` (table, JSON, PNG), ``run`` (the whole). Only ``run_benchmark`` is needed from
outside.
"""


def run_benchmark(*args, **kwargs):
    """See ``bench.run.run_benchmark``; imported lazily so that ``import bench`` costs nothing."""
    from .run import run_benchmark as _run
    return _run(*args, **kwargs)


__all__ = ["run_benchmark"]
