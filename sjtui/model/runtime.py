"""The encoders at run time: onnxruntime only, imported lazily, one thread.

``load_model()`` finds a model directory (the user's own model first, then
the shipped one), checks its manifest (format version, feature constants,
input layout, sha256 of each file) and returns an :class:`EncoderPair`:

>>> loaded = load_model()                      # doctest: +SKIP
>>> guitar = loaded.model.embed_guitar(fp)     # (1, 128), L2-normalised
>>> grooves = loaded.model.embed_grooves(lib)  # (n, 128)
>>> best_grooves(guitar[0], grooves, top_k=5)  # indices and scores, best first

Compatibility of a guitar window and a groove is the dot product of their
embeddings. Groove embeddings depend on the groove encoder only; a library
that stores them keys them with :attr:`EncoderPair.groove_encoder_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sjtui.constants import feature_constants
from sjtui.model import inputs as model_inputs
from sjtui.model.errors import ModelError, ModelInputError
from sjtui.model.manifest import (
    MANIFEST_FILE,
    check_compatible,
    read_manifest,
    verify_encoder_file,
    verify_file,
)

SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models"  # package data: in a wheel too
"""``sjtui/data/models/`` (package data, so in a wheel too): the shipped encoders and their manifest."""

GROOVE_BATCH = 256
"""Grooves per onnxruntime call when embedding a library (bounds memory: 256 x 28 x 4 x 60 float32 = 6.9 MB)."""


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - a dependency of sjtui
        raise ModelError(
            "onnxruntime is not installed; reinstall sjtui (`make`), which installs it"
        ) from error
    return onnxruntime


def session_options():
    """onnxruntime options of every sjtui session: one thread, sequential, quiet."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return options


class Encoder:
    """One ONNX encoder: named float32 inputs with a batch axis -> ``(n, embedding_dim)``.

    ``entry`` is the encoder's manifest entry; the session's own inputs must
    agree with it.
    """

    def __init__(self, path: Path, entry: dict, kind: str) -> None:
        ort = _onnxruntime()
        self.kind = kind
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(
                f"{kind} encoder {path} cannot be loaded by onnxruntime ({error}); export the model again"
            ) from error
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        for spec in entry["inputs"]:
            if spec.get("dtype") != "float32":
                raise ModelError(
                    f"{kind} encoder input {spec.get('name')!r} has dtype {spec.get('dtype')!r}; sjtui feeds float32"
                )
            self.input_shapes[spec["name"]] = tuple(int(d) for d in spec["shape"][1:])
        actual = {i.name: tuple(i.shape[1:]) for i in self.session.get_inputs()}
        if actual != self.input_shapes:
            raise ModelError(
                f"{kind} encoder {path} takes inputs {actual}, its manifest says {self.input_shapes}; "
                "the manifest and the file do not belong together: export the model again"
            )
        self.output_name = entry["outputs"][0]["name"]
        self.embedding_dim = int(entry["outputs"][0]["shape"][1])

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Embeddings ``(n, embedding_dim)`` float32 of a batch; every input ``(n, *shape)``."""
        if set(feeds) != set(self.input_shapes):
            raise ModelInputError(
                f"{self.kind} encoder takes inputs {sorted(self.input_shapes)}, got {sorted(feeds)}"
            )
        batch = None
        arrays = {}
        for name, shape in self.input_shapes.items():
            array = np.ascontiguousarray(feeds[name], dtype=np.float32)
            if array.ndim != len(shape) + 1 or array.shape[1:] != shape:
                raise ModelInputError(
                    f"{self.kind} encoder input {name!r} has shape {array.shape}; it takes (n, {', '.join(map(str, shape))})"
                )
            if batch is None:
                batch = array.shape[0]
            elif array.shape[0] != batch:
                raise ModelInputError(
                    f"{self.kind} encoder inputs disagree on the batch size ({batch} and {array.shape[0]} in {name!r})"
                )
            arrays[name] = array
        if not batch:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self.session.run([self.output_name], arrays)[0]


class EncoderPair:
    """The guitar and groove encoders of one model directory, checked against the running code."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        check_compatible(
            self.manifest, feature_constants(), model_inputs.input_layout(), where=f"model {self.directory}"
        )
        try:
            self.guitar = Encoder(
                verify_encoder_file(self.directory, self.manifest, "guitar"),
                self.manifest["encoders"]["guitar"],
                "guitar",
            )
            self.groove = Encoder(
                verify_encoder_file(self.directory, self.manifest, "groove"),
                self.manifest["encoders"]["groove"],
                "groove",
            )
            self.embedding_dim = int(self.manifest["embedding_dim"])
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ModelError(
                f"model manifest {self.directory / MANIFEST_FILE} is malformed ({type(error).__name__}: {error}); "
                "export the model again"
            ) from error
        for encoder in (self.guitar, self.groove):
            if encoder.embedding_dim != self.embedding_dim:
                raise ModelError(
                    f"{encoder.kind} encoder of {self.directory} gives {encoder.embedding_dim}-d embeddings, "
                    f"the manifest says {self.embedding_dim}; export the model again"
                )

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def trained(self) -> bool:
        return self.manifest.get("training", {}).get("status") == "trained"

    @property
    def groove_encoder_id(self) -> str:
        """sha256 of the groove encoder: stored groove embeddings are valid while it is unchanged."""
        return str(self.manifest["encoders"]["groove"]["sha256"])

    def describe(self) -> str:
        status = "trained" if self.trained else "UNTRAINED (random initialisation)"
        return f"{self.name} {self.version} ({status}) from {self.directory}"

    def check_reference(self) -> dict:
        """Recompute the stored reference windows with the running code and compare.

        The export stored a few fingerprints and grooves with the embeddings
        torch gave them (:mod:`sjtui.model.reference`). A difference above the
        stored ``atol`` means something on the way changed without a new
        model (input layout, descriptors, analysis constants, onnxruntime):
        raises :class:`ModelError` naming the tower. Returns the differences.
        """
        from sjtui.model.reference import load_reference

        entry = self.manifest.get("reference")
        if not isinstance(entry, dict):
            raise ModelError(
                f"model {self.directory} stores no reference outputs; export it again with this sjtui"
            )
        path = verify_file(self.directory, entry, "reference file")
        fingerprints, grooves, guitar_expected, groove_expected = load_reference(path)
        atol = float(entry.get("atol", 1e-4))
        result = {
            "guitar_max_abs_diff": float(np.max(np.abs(self.embed_guitar(fingerprints) - guitar_expected))),
            "groove_max_abs_diff": float(np.max(np.abs(self.embed_grooves(grooves) - groove_expected))),
            "atol": atol,
        }
        for kind in ("guitar", "groove"):
            diff = result[f"{kind}_max_abs_diff"]
            if not diff <= atol:
                raise ModelError(
                    f"{kind} embeddings of the reference windows stored with model {self.directory} differ by "
                    f"{diff:.3g} (> {atol:g}) from what it gave at export: the input layout, descriptors or "
                    "runtime changed without a new model; retrain and export, or bump the input layout version"
                )
        return result

    def embed_guitar_inputs(self, grid: np.ndarray, context: np.ndarray) -> np.ndarray:
        """``(n, 128)`` from prepared inputs ``grid`` ``(n, 13, 4, 60)`` and ``context`` ``(n, 10)``."""
        return self.guitar.run({"grid": grid, "context": context})

    def embed_groove_inputs(
        self, grid: np.ndarray, descriptors: np.ndarray, context: np.ndarray
    ) -> np.ndarray:
        """``(n, 128)`` from prepared inputs (see :func:`sjtui.model.inputs.groove_inputs`)."""
        return self.groove.run({"grid": grid, "descriptors": descriptors, "context": context})

    def embed_guitar(self, fingerprints) -> np.ndarray:
        """``(n, 128)`` float32 L2-normalised embeddings of one fingerprint or a sequence of them."""
        return self.guitar.run(model_inputs.guitar_inputs(fingerprints))

    def embed_grooves(
        self, grooves, descriptors: np.ndarray | None = None, batch_size: int = GROOVE_BATCH
    ) -> np.ndarray:
        """``(n, 128)`` float32 embeddings of grooves (at most 4 bars each), in batches of ``batch_size``.

        ``descriptors``: optional ``(n, 16)`` raw descriptor vectors already
        computed by the library; computed here when omitted.
        """
        items = model_inputs.as_list(grooves, "groove")
        if descriptors is not None:
            descriptors = np.asarray(descriptors, dtype=np.float32)
            if descriptors.shape != (len(items), model_inputs.DESCRIPTOR_DIM):
                raise ModelInputError(
                    f"descriptors have shape {descriptors.shape} for {len(items)} grooves; "
                    f"give ({len(items)}, {model_inputs.DESCRIPTOR_DIM}) or leave them out"
                )
        out = np.empty((len(items), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            stop = min(start + batch_size, len(items))
            feeds = model_inputs.groove_inputs(
                items[start:stop], None if descriptors is None else descriptors[start:stop]
            )
            out[start:stop] = self.groove.run(feeds)
        return out


def best_grooves(
    guitar_embedding: np.ndarray,
    groove_embeddings: np.ndarray,
    top_k: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` grooves of highest dot product with one guitar embedding, best first.

    ``guitar_embedding``: ``(d,)`` or ``(1, d)``; ``groove_embeddings``:
    ``(n, d)``; ``allowed``: optional ``(n,)`` bool, for example the grooves
    whose tempo and meter fit (MODEL-NOTES: treat them as hard filters).
    Returns ``(indices (k,) int64, scores (k,) float32)`` with
    ``k = min(top_k, number allowed)``. O(n) selection with
    ``argpartition``, then a sort of the k winners only.
    """
    query = np.asarray(guitar_embedding, dtype=np.float32)
    if query.ndim == 2 and query.shape[0] == 1:
        query = query[0]
    library = np.asarray(groove_embeddings, dtype=np.float32)
    if query.ndim != 1 or library.ndim != 2 or library.shape[1] != query.shape[0]:
        raise ModelInputError(
            f"best_grooves takes one guitar embedding (d,) and groove embeddings (n, d); got {query.shape} and {library.shape}"
        )
    if top_k < 1:
        raise ModelInputError(f"top_k is {top_k}; ask for at least 1 groove")
    scores = library @ query
    candidates = None
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (library.shape[0],):
            raise ModelInputError(
                f"allowed has shape {allowed.shape}; give one bool per groove ({library.shape[0]},)"
            )
        candidates = np.flatnonzero(allowed)
        scores = scores[candidates]
    k = min(int(top_k), scores.shape[0])
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if k < scores.shape[0]:
        top = np.argpartition(-scores, k - 1)[:k]
    else:
        top = np.arange(scores.shape[0])
    top = top[np.argsort(-scores[top], kind="stable")]
    indices = top if candidates is None else candidates[top]
    return indices.astype(np.int64), scores[top]


def user_model_dir() -> Path:
    """Where a user's fine-tuned model lives: ``model/`` in the data folder.

    The data folder is the groove library's and the labels' own
    (:func:`sjtui.grooves.store.default_data_dir`: ``$SJTUI_DATA_DIR`` or
    ``platformdirs.user_data_dir("sjtui")``).
    """
    from sjtui.grooves.store import default_data_dir

    return default_data_dir() / "model"


@dataclass
class LoadedModel:
    """The model in use, where it came from, and why a preferred model was skipped (or ``None``)."""

    model: EncoderPair
    directory: Path
    fallback_reason: str | None = None


def load_model(
    path: str | Path | None = None,
    *,
    shipped_dir: str | Path = SHIPPED_MODEL_DIR,
    user_dir: str | Path | None = None,
) -> LoadedModel:
    """Load the model to use, falling back to the shipped one.

    Tries ``path`` when given, else the user's model directory
    (:func:`user_model_dir`, or ``user_dir``) when it holds a manifest, then
    ``shipped_dir``. A model that fails its checks is skipped and the reason
    kept in :attr:`LoadedModel.fallback_reason` for the app to show. Raises
    :class:`ModelError` with every reason when no model can be used.
    """
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    else:
        preferred = Path(user_dir) if user_dir is not None else user_model_dir()
        if (preferred / MANIFEST_FILE).exists():
            candidates.append(preferred)
    shipped = Path(shipped_dir)
    if shipped not in candidates:
        candidates.append(shipped)
    reasons: list[str] = []
    for directory in candidates:
        try:
            pair = EncoderPair(directory)
        except ModelError as error:
            reasons.append(str(error))
            continue
        reason = None
        if reasons:
            reason = "; ".join(reasons) + f"\nusing {pair.describe()} instead"
        return LoadedModel(model=pair, directory=directory, fallback_reason=reason)
    raise ModelError("no usable model:\n" + "\n".join(f"- {reason}" for reason in reasons))
