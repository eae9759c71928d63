"""Build `face/models/`: the face-tracker model files facecast ships, from the mediapipe 0.10.21 wheel.

Run: `python -m facecast.training face-models build --from mediapipe-0.10.21-cp311-cp311-manylinux_2_17_x86_64.whl`
(any platform's 0.10.21 wheel, or the `mediapipe` folder of an installed 0.10.21: the model files are the
same; `pip download mediapipe==0.10.21 --no-deps --python-version 3.11 --only-binary=:all:` fetches one).

Current mediapipe releases (1.x) no longer ship face models and dropped the legacy `solutions` API
facecast was measured with; their Tasks API still runs the 0.10.21 model files (Apache-2.0, see
`face/models/NOTICE.md`) once one of them is rewritten:

* `face_landmarker.task`: the bundle the Tasks `FaceLandmarker` loads, a stored zip of
  `face_detector.tflite` (0.10.21's `face_detection_short_range.tflite`, unchanged) and
  `face_landmarks_detector.tflite` (0.10.21's `face_landmark_with_attention.tflite`, patched below);
* `face_detection_short_range.tflite`, `face_detection_full_range_sparse.tflite` (the Tasks
  `FaceDetector`'s two ranges) and `selfie_segmentation.tflite` (`ImageSegmenter`), unchanged.

The patch: the attention landmark model has 7 outputs (mesh 468x3, lips 80x2, eyes 2x71x2, irises
2x5x2, face flag); the legacy graph merged them in a `LandmarksRefinementCalculator`, the Tasks
graph expects one (1,1,1,1434) tensor of 478x3 landmarks and the face flag. Seven appended ops
(CONCATENATION, RESHAPE, GATHER, MEAN, CONCATENATION, GATHER, RESHAPE) do the legacy refinement
inside the model: mesh x, y, z; the lips and eye heads overwrite x, y of their points; the iris
heads give x, y of points 468-477, whose z is the mean z of the 16 eye-contour points of their eye.
No weight changes; the TFLite metadata's output list is trimmed to the two outputs.

The build is deterministic: the source files and the results are checked against the SHA-256 sums
below (`--force` writes results whose sums differ, for a deliberate change; then update the sums).
Needs only the standard library, numpy and flatbuffers with the TFLite schema module inside mediapipe.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

OUTPUT = Path(__file__).resolve().parents[1] / "face" / "models"

#: Source files inside the wheel (paths relative to the `mediapipe` package) and their SHA-256 in 0.10.21.
SOURCES = {
    "face_landmark_with_attention": ("modules/face_landmark/face_landmark_with_attention.tflite",
                                     "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),
    "face_detection_short_range": ("modules/face_detection/face_detection_short_range.tflite",
                                   "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "face_detection_full_range_sparse": ("modules/face_detection/face_detection_full_range_sparse.tflite",
                                         "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    "selfie_segmentation": ("modules/selfie_segmentation/selfie_segmentation.tflite",
                            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
}
#: The shipped files and their SHA-256 (tests/face/test_tracker.py checks the shipped files against them).
SHIPPED = {
    "face_landmarker.task": "5ce4427669a699a587d9d6e86a6145716d1d30019a44dca9f653b49fc29564e6",
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    "selfie_segmentation.tflite": "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    "LICENSE": "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
}
#: Zip members of the landmarker bundle, named as the Tasks FaceLandmarker looks for them.
BUNDLE_DETECTOR = "face_detector.tflite"
BUNDLE_LANDMARKS = "face_landmarks_detector.tflite"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)        # fixed member dates: the bundle's bytes depend only on its contents

# The legacy refinement (mediapipe/modules/face_landmark/tensors_to_face_landmarks_with_attention.pbtxt):
# which of the 468 mesh points each lips/eye head point overwrites, and the iris points.
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
        76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
        62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407)
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
            130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
            226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
            35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
            156, 70, 63, 105, 66, 107, 55, 193)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
             359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
             446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
             265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
             383, 300, 293, 334, 296, 336, 285, 417)
LEFT_IRIS = (468, 469, 470, 471, 472)
RIGHT_IRIS = (473, 474, 475, 476, 477)
#: Iris z is the mean z of these eye-contour points (the first 16 of each eye head).
IRIS_Z_POINTS = (LEFT_EYE[:16], RIGHT_EYE[:16])
#: Output sizes of the model's six landmark heads, in the order of its outputs.
HEADS = (("mesh", 1404), ("lips", 160), ("left_eye", 142), ("right_eye", 142), ("left_iris", 10), ("right_iris", 10))


def gather_indices() -> tuple[np.ndarray, np.ndarray]:
    """(1434,) indices into [the six heads concatenated | left iris z | right iris z] giving the 478x3
    landmarks, and (2, 16) indices of the mesh z values each iris z averages."""
    offset, start = {}, 0
    for name, size in HEADS:
        offset[name] = start
        start += size
    iris_z = {"left_iris": start, "right_iris": start + 1}
    out = np.zeros((478, 3), np.int32)
    for i in range(468):
        out[i] = (3 * i, 3 * i + 1, 3 * i + 2)
    for name, points in (("lips", LIPS), ("left_eye", LEFT_EYE), ("right_eye", RIGHT_EYE)):
        for k, i in enumerate(points):
            out[i, :2] = (offset[name] + 2 * k, offset[name] + 2 * k + 1)     # z stays the mesh's
    for name, points in (("left_iris", LEFT_IRIS), ("right_iris", RIGHT_IRIS)):
        for k, i in enumerate(points):
            out[i] = (offset[name] + 2 * k, offset[name] + 2 * k + 1, iris_z[name])
    z_points = np.array([[3 * i + 2 for i in eye] for eye in IRIS_Z_POINTS], np.int32)
    return out.reshape(-1), z_points


def patch_landmark_model(model: bytes) -> bytes:
    """The attention landmark model with its refinement appended: outputs [478x3 landmarks, face flag]."""
    import flatbuffers  # build-time only: the TFLite schema's object API
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    graph = m.subgraphs[0]
    outputs = list(graph.outputs)
    if len(outputs) != 7:
        raise SystemExit(f"expected the 7-output face_landmark_with_attention model, got {len(outputs)} outputs")
    heads, face_flag = outputs[:6], outputs[6]
    for tensor_index, (name, size) in zip(heads, HEADS):
        shape = tuple(graph.tensors[tensor_index].shape)
        if int(np.prod(shape)) != size:
            raise SystemExit(f"output {name}: expected {size} values, got shape {shape}")
    op_types, options = schema.BuiltinOperator, schema.BuiltinOptions

    def opcode(code: int) -> int:
        for i, existing in enumerate(m.operatorCodes):
            if max(existing.builtinCode, existing.deprecatedBuiltinCode) == code:
                return i
        new = schema.OperatorCodeT()
        new.builtinCode, new.deprecatedBuiltinCode, new.version = code, min(code, 127), 1
        m.operatorCodes.append(new)
        return len(m.operatorCodes) - 1

    def tensor(name: str, shape: list[int], kind: int = schema.TensorType.FLOAT32,
               data: np.ndarray | None = None) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type = name.encode(), np.array(shape, np.int32), kind
        buffer = schema.BufferT()
        if data is not None:
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        m.buffers.append(buffer)
        t.buffer = len(m.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def operator(code: int, inputs: list[int], outputs: list[int], option_type: int, option: object) -> None:
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode(code), np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = option_type, option
        graph.operators.append(o)

    def concatenation(axis: int) -> object:
        o = schema.ConcatenationOptionsT()
        o.axis = axis
        return o

    def reshape(shape: list[int]) -> object:
        o = schema.ReshapeOptionsT()
        o.newShape = np.array(shape, np.int32)
        return o

    def gather() -> object:
        o = schema.GatherOptionsT()
        o.axis = 0
        return o

    total = sum(size for _, size in HEADS)
    index, z_points = gather_indices()
    joined = tensor("facecast_heads", [1, 1, 1, total])
    operator(op_types.CONCATENATION, heads, [joined], options.ConcatenationOptions, concatenation(3))
    flat = tensor("facecast_heads_flat", [total])
    operator(op_types.RESHAPE, [joined, tensor("facecast_flat_shape", [1], schema.TensorType.INT32,
                                               np.array([total], np.int32))],
             [flat], options.ReshapeOptions, reshape([total]))
    contour_z = tensor("facecast_iris_contour_z", [2, 16])
    operator(op_types.GATHER, [flat, tensor("facecast_iris_contour_index", [2, 16], schema.TensorType.INT32,
                                            z_points)],
             [contour_z], options.GatherOptions, gather())
    iris_z = tensor("facecast_iris_z", [2])
    mean = schema.ReducerOptionsT()
    mean.keepDims = False
    operator(op_types.MEAN, [contour_z, tensor("facecast_mean_axis", [1], schema.TensorType.INT32,
                                               np.array([1], np.int32))],
             [iris_z], options.ReducerOptions, mean)
    extended = tensor("facecast_heads_iris_z", [total + 2])
    operator(op_types.CONCATENATION, [flat, iris_z], [extended], options.ConcatenationOptions, concatenation(0))
    landmarks = tensor("facecast_landmarks_flat", [478 * 3])
    operator(op_types.GATHER, [extended, tensor("facecast_landmark_index", [478 * 3], schema.TensorType.INT32,
                                                index)],
             [landmarks], options.GatherOptions, gather())
    out = tensor("output_landmarks_478", [1, 1, 1, 478 * 3])
    operator(op_types.RESHAPE, [landmarks, tensor("facecast_out_shape", [4], schema.TensorType.INT32,
                                                  np.array([1, 1, 1, 478 * 3], np.int32))],
             [out], options.ReshapeOptions, reshape([1, 1, 1, 478 * 3]))
    graph.outputs = np.array([out, face_flag], np.int32)
    m.signatureDefs = None                   # the old signature lists the 7 outputs

    for entry in m.metadata or []:           # the metadata's output list must match the outputs
        if entry.name == b"TFLITE_METADATA":
            raw = bytes(m.buffers[entry.buffer].data)
            metadata = meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(raw, 0))
            sub = metadata.subgraphMetadata[0]
            first, last = sub.outputTensorMetadata[0], sub.outputTensorMetadata[-1]
            first.name = b"output_landmarks_478"
            sub.outputTensorMetadata = [first, last]
            builder = flatbuffers.Builder(1024)
            builder.Finish(metadata.Pack(builder), file_identifier=b"M001")
            m.buffers[entry.buffer].data = np.frombuffer(bytes(builder.Output()), np.uint8)

    builder = flatbuffers.Builder(len(model) + 65536)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def task_bundle(detector: bytes, landmarks: bytes) -> bytes:
    """The FaceLandmarker `.task` bundle: a stored (uncompressed) zip with fixed dates."""
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in ((BUNDLE_DETECTOR, detector), (BUNDLE_LANDMARKS, landmarks)):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            bundle.writestr(info, data)
    return out.getvalue()


class _Source:
    """The mediapipe 0.10.21 package files, from a wheel or an installed `mediapipe` folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file():
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            names = self._zip.namelist()
            versions = {PurePosixPath(n).parts[0] for n in names if ".dist-info/" in n}
        else:
            self._zip = None
            if (path / "mediapipe").is_dir():
                path = self.path = path / "mediapipe"
            versions = {p.name for p in path.parent.glob("mediapipe-*.dist-info")}
        if versions and not any(v.startswith("mediapipe-0.10.21.") for v in versions):
            raise SystemExit(f"{self.path} is not mediapipe 0.10.21 ({', '.join(sorted(versions))})")

    def read(self, relpath: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(f"mediapipe/{relpath}")
            return (self.path / relpath).read_bytes()
        except (KeyError, FileNotFoundError):
            raise SystemExit(f"{relpath} not found in {self.path}: give a mediapipe 0.10.21 wheel "
                             "or its installed mediapipe folder") from None

    def licence(self) -> bytes:
        if self._zip is not None:
            for name in self._zip.namelist():
                if name.startswith("mediapipe-0.10.21.dist-info/") and name.endswith("/LICENSE"):
                    return self._zip.read(name)
        else:
            for path in self.path.parent.glob("mediapipe-0.10.21.dist-info/LICENSE*"):
                return path.read_bytes()
        raise SystemExit(f"no LICENSE of mediapipe 0.10.21 found beside {self.path}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(source: Path, output: Path = OUTPUT, force: bool = False) -> dict[str, str]:
    """Write the shipped model files into `output`; returns their SHA-256 sums."""
    src = _Source(Path(source))
    files = {name: src.read(relpath) for name, (relpath, _) in SOURCES.items()}
    for name, (relpath, expected) in SOURCES.items():
        if expected and sha256(files[name]) != expected and not force:
            raise SystemExit(f"{relpath} differs from mediapipe 0.10.21's (SHA-256 {sha256(files[name])}); "
                             "--force builds from it anyway")
    built = {
        "face_landmarker.task": task_bundle(files["face_detection_short_range"],
                                            patch_landmark_model(files["face_landmark_with_attention"])),
        "face_detection_short_range.tflite": files["face_detection_short_range"],
        "face_detection_full_range_sparse.tflite": files["face_detection_full_range_sparse"],
        "selfie_segmentation.tflite": files["selfie_segmentation"],
        "LICENSE": src.licence(),
    }
    sums = {name: sha256(data) for name, data in built.items()}
    changed = [name for name, digest in sums.items() if SHIPPED.get(name) and SHIPPED[name] != digest]
    if changed and not force:
        raise SystemExit(f"the build differs from the shipped {', '.join(changed)}; --force writes it "
                         "(then update face_models.SHIPPED and face/models/NOTICE.md)")
    output.mkdir(parents=True, exist_ok=True)
    for name, data in built.items():
        tmp = output / f".{name}.tmp"
        tmp.write_bytes(data)
        shutil.move(tmp, output / name)
    return sums
