"""Seeded noise for Piper voices: the same text and seed give the same samples, always.

A Piper voice is a VITS model exported to ONNX. It draws Gaussian noise twice per sentence
(``RandomNormalLike`` nodes: the stochastic duration predictor's noise, scaled by
``noise_w``, and the prior sample ``z_p = m_p + ε·exp(logs_p)·noise_scale``). onnxruntime
keeps that generator's state inside the session, so the noise depends on everything the
session computed before: ``onnxruntime.set_seed`` before loading makes a *whole process*
reproducible, never one request in a process that already spoke other text.

:func:`seeded_voice_model` rewrites the graph instead: each ``RandomNormalLike`` becomes a
read of a new float32 input ``avgen_noise{k}_buffer`` (1-D; sliced to the size the node
needs, zero-padded when the buffer is too short, reshaped to the node's shape), the needed
size is exported as output ``avgen_noise{k}_need`` (int64, shape (1,)), and the duration
tensor (``Ceil``, frames per phoneme id) is exported for alignments as Piper's own
``patch_voice_with_alignment`` does. :class:`SeededSession` feeds those buffers from
:class:`numpy.random.Generator` streams keyed by ``(seed, sentence index, node index)``, so
a sentence's noise is a function of the request's seed and the sentence's position only —
not of the process history, the batch or the machine's state. The noise keeps the voice's
own distribution (standard normal, same scales), so nothing is lost in naturalness.

Requires the ``onnx`` package (model surgery; onnxruntime runs the result).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avgen_dagster.errors import BackendError

__all__ = ["NOISE_PREFIX", "SeededSession", "noise_stream", "seeded_voice_model"]

NOISE_PREFIX = "avgen_noise"
"""Prefix of the inputs (``…{k}_buffer``) and outputs (``…{k}_need``) added to the graph."""


def seeded_voice_model(model_path: Path) -> tuple[bytes, int]:
    """The Piper voice at ``model_path`` with seeded-noise inputs and the alignment output.

    Returns:
        ``(serialized ONNX model, number of noise inputs)``; outputs are, in order, the
        audio ``(1, 1, 1, n)`` float32, the frames per phoneme id ``(1, 1, ids)`` float32,
        then one ``avgen_noise{k}_need`` (1,) int64 per noise input.

    Raises:
        BackendError: ``onnx`` is missing, the file is not an ONNX model, it has no
            ``RandomNormalLike`` node or no single ``Ceil`` node (not a Piper/VITS export).
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:  # pragma: no cover - environment problem
        raise BackendError(f"the onnx package is needed for seeded Piper voices: {exc}") from exc
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise BackendError(f"cannot read Piper voice {model_path} as ONNX: {exc}") from exc
    graph = model.graph
    ceil = [out for node in graph.node if node.op_type == "Ceil" for out in node.output]
    if len(ceil) != 1:
        raise BackendError(
            f"Piper voice {model_path}: expected one Ceil node (phoneme durations), found "
            f"{len(ceil)}; not a Piper VITS export"
        )
    if all(out.name != ceil[0] for out in graph.output):
        graph.output.append(helper.make_tensor_value_info(ceil[0], TensorProto.FLOAT, None))

    nodes: list[Any] = []
    count = 0
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        p = f"{NOISE_PREFIX}{count}"
        buffer = f"{p}_buffer"
        graph.input.append(helper.make_tensor_value_info(buffer, TensorProto.FLOAT, [f"{p}_len"]))
        zero = helper.make_tensor(f"{p}_zero_value", TensorProto.INT64, [1], [0])
        nodes += [
            helper.make_node("Shape", [node.input[0]], [f"{p}_shape"]),
            helper.make_node("ReduceProd", [f"{p}_shape"], [f"{p}_need"], keepdims=1),
            helper.make_node("Shape", [buffer], [f"{p}_have"]),
            helper.make_node("Constant", [], [f"{p}_zero"], value=zero),
            helper.make_node("Sub", [f"{p}_need", f"{p}_have"], [f"{p}_short"]),
            helper.make_node("Max", [f"{p}_short", f"{p}_zero"], [f"{p}_padn"]),
            helper.make_node("Concat", [f"{p}_zero", f"{p}_padn"], [f"{p}_pads"], axis=0),
            helper.make_node("Pad", [buffer, f"{p}_pads"], [f"{p}_padded"]),
            helper.make_node("Slice", [f"{p}_padded", f"{p}_zero", f"{p}_need"], [f"{p}_flat"]),
            helper.make_node("Reshape", [f"{p}_flat", f"{p}_shape"], [node.output[0]]),
        ]
        graph.output.append(helper.make_tensor_value_info(f"{p}_need", TensorProto.INT64, [1]))
        count += 1
    if count == 0:
        raise BackendError(
            f"Piper voice {model_path} has no RandomNormalLike node: cannot seed its noise"
        )
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString(), count


def noise_stream(seed: int, sentence: int, node: int, size: int) -> np.ndarray:
    """The first ``size`` standard-normal float32 values of stream ``(seed, sentence, node)``.

    A prefix of a longer draw equals a shorter draw (PCG64, sequential), so a buffer grown on
    a retry starts with the same values.

    Returns:
        (size,) float32.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, sentence, node]))
    return rng.standard_normal(size, dtype=np.float32)


class SeededSession:
    """Stands in for a Piper voice's ``InferenceSession`` during one request.

    Piper calls ``session.run(None, feeds)`` once per sentence; each call gets the noise
    streams of ``(seed, sentence index)`` and returns ``[audio, frames per phoneme id]``.
    Buffers are sized from what earlier sentences needed per phoneme id; when a sentence
    needs more, it runs once more with exact sizes (same noise prefix, so the same audio).

    Args:
        session: the ``onnxruntime.InferenceSession`` of :func:`seeded_voice_model`'s bytes.
        noise_inputs: the number of ``avgen_noise{k}_buffer`` inputs.
        seed: 0 ≤ seed < 2**63.
        per_id: shared, per-voice record of the largest buffer size per phoneme id seen
            (a mutable list of ``noise_inputs`` floats; only a speed hint: a short buffer
            costs one more run, never different audio).
        per_id_lock: guards ``per_id`` (sessions of one voice run in several threads).

    Attributes:
        sentences: sentences synthesised so far (the next sentence's index).
        reruns: extra runs made because a noise buffer was short (at most 2 per sentence).
    """

    def __init__(
        self,
        session: Any,
        noise_inputs: int,
        seed: int,
        per_id: list[float],
        per_id_lock: threading.Lock,
    ) -> None:
        self._session = session
        self._noise_inputs = noise_inputs
        self._seed = seed
        self._per_id = per_id
        self._per_id_lock = per_id_lock
        self.sentences = 0
        self.reruns = 0

    def run(
        self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray], *_: Any
    ) -> list[np.ndarray]:
        """Synthesise one sentence; ``[audio (1,1,1,n) float32, frames per id (1,1,ids)]``."""
        sentence = self.sentences
        self.sentences += 1
        ids = int(np.asarray(feeds["input"]).shape[-1])
        length_scale = float(np.asarray(feeds["scales"]).reshape(-1)[1])
        with self._per_id_lock:
            sizes = [int(np.ceil(r * ids * max(length_scale, 1.0))) + 1 for r in self._per_id]
        names = [f"{NOISE_PREFIX}{k}_buffer" for k in range(self._noise_inputs)]
        for _attempt in range(3):
            full = dict(feeds)
            for k, name in enumerate(names):
                full[name] = noise_stream(self._seed, sentence, k, sizes[k])
            result = self._session.run(None, full)
            need = [int(np.asarray(x).reshape(-1)[0]) for x in result[2 : 2 + self._noise_inputs]]
            with self._per_id_lock:
                for k, n in enumerate(need):
                    self._per_id[k] = max(self._per_id[k], 1.25 * n / max(ids, 1))
            if all(n <= s for n, s in zip(need, sizes, strict=True)):
                return list(result[:2])
            self.reruns += 1
            sizes = need
        raise BackendError(  # pragma: no cover - sizes are exact on the second run
            f"seeded Piper noise: buffer sizes did not settle ({sizes})"
        )
