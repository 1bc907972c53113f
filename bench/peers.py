"""The peers: OpenVINO and tract beside onnxruntime, on the same ONNX file, when they are installed.

A peer loads a scenario's ONNX export for one thread count and one set of input shapes, and gives a ``Runner``:
``run(feed)`` returns every output as numpy, in the graph's order (for the check against onnxruntime), and
``timed_call(feed, carry)`` the zero-argument call that is timed. ``carry`` pairs an output index with an input
name: after each call that output becomes that input of the next call (the state of a streaming step, passed in and
out as onnxruntime's ``run`` must); the other outputs are handed back as numpy arrays, as onnxruntime's are.

Each peer is driven through the fastest call path its Python API documents, so that a speedup over it is not an
artefact of a slow binding: OpenVINO's request keeps its input tensors bound to numpy buffers (new values are copied
into them; ``infer(list)`` spends ~60 us per call wrapping arrays), tract reuses one execution state and feeds its
own output tensors back as the next state (``Runnable.run`` spawns a state and copies every input per call).

A peer that is not installed, cannot use the thread count, or fails to load or run a model is reported with the
reason and not timed; it never fails the benchmark (the correctness gate is onnxruntime).
"""
from __future__ import annotations

import importlib.util

import numpy as np


class PeerUnavailable(Exception):
    """This peer cannot run this point; the message says why."""


def reason_of(exc: BaseException, limit: int = 300) -> str:
    """A one-line reason from an exception: tract's errors carry a Rust backtrace after the cause chain."""
    text = str(exc).split("Stack backtrace:")[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "Caused by:"]
    line = f"{type(exc).__name__}: " + " / ".join(lines)
    return line if len(line) <= limit else line[:limit - 3] + "..."


class Peer:
    name = ""          # the key in the JSON and in the timings ("openvino")
    label = ""         # for people ("OpenVINO")
    module = ""        # the import name
    install = ""       # how to get it

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str | None:
        """The installed version, None when it is not installed."""
        if not self.installed():
            return None
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version(self.module)
        except PackageNotFoundError:
            return "unknown"

    def unsupported_threads(self, threads: int) -> str | None:
        """Why this peer cannot run with ``threads`` threads, or None."""
        return None

    def settings(self, threads: int) -> str:
        """How the peer is configured for ``threads`` threads, for the JSON."""
        raise NotImplementedError

    def load(self, onnx_path: str, feed: dict, threads: int) -> "Runner":
        """A runner for feeds of these input names and shapes."""
        raise NotImplementedError


class Runner:
    def run(self, feed: dict) -> list:
        raise NotImplementedError

    def timed_call(self, feed: dict, carry=()):
        raise NotImplementedError


# ---------------------------------------------------------------------- OpenVINO
class OpenVINO(Peer):
    name, label, module, install = "openvino", "OpenVINO", "openvino", "pip install openvino"
    # f32 explicitly: on CPUs with AVX512_BF16 or AMX (this one) OpenVINO's default inference precision is bf16,
    # whose outputs differ from onnxruntime's by ~1e-3, far above the float32 tolerance of the check
    PRECISION = "f32"

    def config(self, threads: int) -> dict:
        return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": self.PRECISION}

    def settings(self, threads: int) -> str:
        cfg = ", ".join(f"{k}={v}" for k, v in self.config(threads).items())
        return (f"Core().compile_model(onnx, 'CPU', {{{cfg}}}); one InferRequest whose input tensors share numpy "
                f"buffers (values copied in), infer(), outputs read as numpy views")

    def load(self, onnx_path, feed, threads):
        return _OpenVINORunner(onnx_path, feed, self.config(threads))


class _OpenVINORunner(Runner):
    def __init__(self, onnx_path, feed, config):
        import openvino as ov
        self.compiled = ov.Core().compile_model(onnx_path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.buffers = {}
        self._bind(feed)

    def _bind(self, feed):
        """Bind each input to a numpy buffer of the feed's shape (rebound only when a shape changes)."""
        import openvino as ov
        for name, value in feed.items():
            buf = self.buffers.get(name)
            if buf is None or buf.shape != value.shape or buf.dtype != value.dtype:
                buf = np.array(value, order="C")
                self.buffers[name] = buf
                self.request.set_tensor(name, ov.Tensor(buf, shared_memory=True))
            else:
                np.copyto(buf, value)

    def _outputs(self):
        request = self.request
        return [request.get_output_tensor(i).data for i in range(len(self.compiled.outputs))]

    def run(self, feed):
        self._bind(feed)
        self.request.infer()
        return [np.array(o) for o in self._outputs()]

    def timed_call(self, feed, carry=()):
        self._bind(feed)
        request = self.request
        n_out = len(self.compiled.outputs)
        # output tensors are fetched once: with the shapes fixed they keep their memory from call to call (checked
        # over two calls here; where they do not, the call fetches them each time, as it must)
        pointers = []
        for _ in range(2):
            request.infer()
            pointers.append([request.get_output_tensor(i).data.ctypes.data for i in range(n_out)])
        stable = pointers[0] == pointers[1]
        fixed = [request.get_output_tensor(i) for i in range(n_out)]
        moves = [(i, self.buffers[name]) for i, name in carry]
        carried = {i for i, _ in carry}
        handed = [i for i in range(n_out) if i not in carried]

        def call():
            request.infer()
            outs = fixed if stable else [request.get_output_tensor(i) for i in range(n_out)]
            for i, buf in moves:
                np.copyto(buf, outs[i].data)
            return [outs[i].data for i in handed]
        return call


# ---------------------------------------------------------------------- tract
class Tract(Peer):
    name, label, module, install = "tract", "tract", "tract", "pip install tract"

    def unsupported_threads(self, threads):
        if threads != 1:
            return ("tract's Python API has no thread setting (its matrix products run on one thread), so it is "
                    "timed in the 1-thread points only")
        return None

    def settings(self, threads):
        return ("tract.onnx().load(onnx); set_input_fact per input (the point's shapes, f32); into_model(); "
                "into_runnable(); one spawned state, run with tract Tensors made once, state outputs fed back as "
                "tensors, other outputs to_numpy(); single-threaded")

    def version(self):
        v = super().version()
        if v is not None:
            try:
                import tract
                return tract.version()
            except Exception:  # noqa: BLE001 - a broken install is only shown by its package version
                return v
        return v

    def load(self, onnx_path, feed, threads):
        reason = self.unsupported_threads(threads)
        if reason:
            raise PeerUnavailable(reason)
        return _TractRunner(onnx_path, feed)


_TRACT_TYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.int64): "i64",
                np.dtype(np.int32): "i32", np.dtype(np.bool_): "bool"}


class _TractRunner(Runner):
    def __init__(self, onnx_path, feed):
        import tract
        model = tract.onnx().load(onnx_path)
        self.names = [model.input_name(i) for i in range(model.input_count())]
        missing = [n for n in self.names if n not in feed]
        if missing:
            raise PeerUnavailable(f"the feed has no value for the inputs {missing}")
        for i, name in enumerate(self.names):
            value = np.asarray(feed[name])
            dtype = _TRACT_TYPES.get(value.dtype)
            if dtype is None:
                raise PeerUnavailable(f"input {name!r} has dtype {value.dtype}, not mapped to a tract type")
            model.set_input_fact(i, ",".join([*map(str, value.shape), dtype]))
        self.shapes = {n: np.shape(feed[n]) for n in self.names}
        self.runnable = model.into_model().into_runnable()
        self.state = self.runnable.spawn_state()

    def _tensors(self, feed):
        import tract
        for n in self.names:
            if np.shape(feed[n]) != self.shapes[n]:
                raise PeerUnavailable(f"tract was loaded for {n} of shape {self.shapes[n]}, got {np.shape(feed[n])}")
        return [tract.Tensor.from_numpy(np.asarray(feed[n])) for n in self.names]

    def run(self, feed):
        return [t.to_numpy() for t in self.state.run(self._tensors(feed))]

    def timed_call(self, feed, carry=()):
        tensors = self._tensors(feed)
        state = self.state
        moves = [(i, self.names.index(name)) for i, name in carry]
        carried = {i for i, _ in carry}

        def call():
            outs = state.run(tensors)
            for i, k in moves:
                tensors[k] = outs[i]
            return [t.to_numpy() for i, t in enumerate(outs) if i not in carried]
        return call


PEERS = [OpenVINO(), Tract()]
BY_NAME = {p.name: p for p in PEERS}
