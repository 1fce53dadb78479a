"""A pickle reader that runs no code from the file: it rebuilds tensors, plain containers and numbers, and
records EDM's persistent objects (`torch_utils.persistence`) as inert placeholders.

Why this is safe. Unpickling can only call what `find_class` hands back (GLOBAL and STACK_GLOBAL go
through it), so `find_class` below returns nothing but callables written here: tensor and storage
rebuilders that check their arguments, a number rebuilder for numpy scalars, `OrderedDict`, and recording
placeholders. Every other name (`os.system`, `builtins.exec`, `subprocess.Popen`, EDM's
`torch_utils.persistence._src_to_module`, ...) is refused before anything is called. Two opcodes reach
objects without `find_class` and are handled here (the reader is Python's pure-Python unpickler with its
dispatch table amended):
  EXT1 / EXT2 / EXT4  take a callable from copyreg's process-wide extension cache, filled by any earlier
                      unpickling in the process: refused outright (EDM's files do not use them);
  BUILD               sets state on the object below it: allowed only on the recorded placeholders,
                      `OrderedDict`s, and (as a no-op, with empty state) tensors; BUILD on anything else,
                      e.g. one of the allowed functions, is refused.
Storage bytes are read with `torch.load(weights_only=True)`, torch's own code-free loader, which needs
torch >= 2.10 (`MIN_TORCH`): older versions have published flaws in that loader (CVE-2025-32434, remote
code execution below 2.6, and a memory-corruption advisory below 2.10). `safe_load` refuses to run on them.

What EDM's files hold (NVlabs/edm, torch_utils/persistence.py): a persistent object pickles as
`_reconstruct_persistent_obj(meta)` with meta = dict(type='class', version, module_src, class_name, state);
running it would `exec(module_src)`. Here it becomes `PersistentRecord(class_name, state)`; the source text
is kept only as its length. Plain torch modules inside them (`torch.nn.ModuleDict`) become
`RecordedObject`s holding their `__dict__`.
"""

from __future__ import annotations

import collections
import io
import pickle

import numpy as np
import torch
from torch.torch_version import TorchVersion

from ..errors import TeacherError

MIN_TORCH = (2, 10)  # the floor in pyproject.toml; tests/test_teacher_edm_pickle.py checks that they agree


def check_torch_version(version: str | None = None) -> None:
    """Refuse a torch whose weights_only loader has known flaws (see the module docstring)."""
    version = str(torch.__version__ if version is None else version)
    if TorchVersion(version) < MIN_TORCH:
        floor = ".".join(map(str, MIN_TORCH))
        raise TeacherError(
            f"torch {version} is too old to read EDM pickles safely: its weights_only loader has "
            f"published flaws (CVE-2025-32434 below 2.6, memory corruption below {floor}); "
            f"install torch>={floor}"
        )


class PersistentRecord:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would have built, without building
    it: the class name, the object's state (its __dict__: _parameters, _buffers, _modules, _init_kwargs, ...)
    and the size of the module source that was NOT executed."""

    def __init__(self, class_name: str, state: dict, version, source_chars: int):
        self.class_name = class_name
        self.state = state
        self.version = version
        self.source_chars = source_chars

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


class RecordedObject:
    """An instance of an allow-listed plain class (torch.nn.ModuleDict, ...) with its state recorded."""

    class_name = "object"

    def __init__(self, *args):
        if args:
            raise pickle.UnpicklingError(f"{self.class_name} takes no constructor arguments in a checkpoint")
        self.state = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.class_name}: expected a dict as state")
        self.state = state

    def __repr__(self) -> str:
        return f"RecordedObject({self.class_name})"


class RecordedDict(dict):
    """dnnlib.EasyDict (a dict subclass): kept as a plain dict."""

    def __setstate__(self, state):
        if state:  # a dict subclass pickles its __dict__ too; EasyDict has none
            raise pickle.UnpicklingError("EasyDict with instance attributes is not expected")


class RecordedDtype:
    """numpy.dtype(code, align, copy) plus its BUILD state: only the byte order and the code are used."""

    _ALLOWED_CODES = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")

    def __init__(self, code, align=False, copy=True):
        if code not in self._ALLOWED_CODES:
            raise pickle.UnpicklingError(f"numpy dtype {code!r} is not a plain number type")
        self.code = code
        self.byteorder = "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    def numpy(self) -> np.dtype:
        order = "<" if self.byteorder in ("|", "=") else self.byteorder
        return np.dtype(order + self.code)


def _numpy_scalar(dtype, data=None):
    """numpy.core.multiarray.scalar(dtype, bytes) -> the Python number it holds."""
    if not isinstance(dtype, RecordedDtype) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar with an unexpected payload")
    np_dtype = dtype.numpy()
    if len(data) != np_dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar of the wrong byte length")
    return np.frombuffer(data, dtype=np_dtype)[0].item()


def _load_storage(data):
    """torch.storage._load_from_bytes: a storage saved by torch.save, read with torch's code-free loader."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("storage payload is not bytes")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch refuses anything but tensors and storages here
        raise pickle.UnpicklingError(f"a storage payload is not a plain torch storage ({exc})") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"a storage payload holds {type(storage).__name__}, not a storage")
    return storage


def _ints(values, what: str) -> tuple:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of non-negative integers")
    return tuple(values)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2: a tensor viewing `storage`, copied out so it owns its memory."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("a tensor refers to something that is not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError("tensor storage offset must be a non-negative integer")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError("tensor size and stride differ in length")
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    untyped = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
    numel = untyped.nbytes() // torch.empty(0, dtype=dtype).element_size()
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else storage_offset - 1
    if last >= numel:
        raise pickle.UnpicklingError("a tensor reaches past the end of its storage")
    tensor = torch.empty(0, dtype=dtype).set_(untyped, storage_offset, size, stride)
    return tensor.clone()


def _rebuild_tensor_v1(storage, storage_offset, size, stride):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """torch._utils._rebuild_parameter(_with_state): parameters are kept as plain tensors."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter holds no tensor")
    return data


def _reconstruct_persistent_obj(meta):
    """EDM's torch_utils.persistence._reconstruct_persistent_obj, recorded instead of executed."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("a persistent object without EDM's meta dict")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError("a persistent object without class name or state")
    source = meta.get("module_src")
    return PersistentRecord(class_name, state, meta.get("version"), len(source) if isinstance(source, str) else 0)


def _codecs_encode(text, encoding="utf-8"):
    """_codecs.encode as protocol-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("unexpected use of _codecs.encode")
    return text.encode("latin1")


def _recorded_class(qualified_name: str) -> type:
    return type(qualified_name.rsplit(".", 1)[-1], (RecordedObject,), {"class_name": qualified_name})


_RECORDED_TORCH_CLASSES = {
    name: _recorded_class(f"torch.nn.modules.container.{name}") for name in ("ModuleDict", "ModuleList", "Sequential")
}

_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v1,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): RecordedDict,
    ("numpy", "dtype"): RecordedDtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _codecs_encode,
    **{("torch.nn.modules.container", name): cls for name, cls in _RECORDED_TORCH_CLASSES.items()},
}


class RefusedGlobal(TeacherError):
    """The pickle names a callable outside the allow-list."""


class RefusedOpcode(TeacherError):
    """The pickle uses an opcode that could reach objects outside the allow-list."""


_BUILD_TARGETS = (RecordedObject, RecordedDict, RecordedDtype, collections.OrderedDict)


class SafeUnpickler(pickle._Unpickler):
    """Python's pure-Python unpickler whose find_class hands out only the allow-listed rebuilders above, with
    the EXT opcodes refused and BUILD restricted (module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not used by EDM network pickles")

    def _refuse_extension(self):
        raise RefusedOpcode(
            "it uses the EXT1/EXT2/EXT4 opcodes, which take objects from copyreg's extension "
            "registry without the allow-list"
        )

    def _checked_build(self):
        if len(self.stack) < 2:
            raise pickle.UnpicklingError("BUILD with nothing to build")
        state, target = self.stack[-1], self.stack[-2]
        if isinstance(target, torch.Tensor):
            if state:
                raise RefusedOpcode("it sets state on a tensor (BUILD), which EDM network pickles never do")
            self.stack.pop()
            return
        if not isinstance(target, _BUILD_TARGETS):
            raise RefusedOpcode(
                f"it sets state on a {type(target).__name__} (BUILD); only recorded network "
                "objects and containers take state"
            )
        pickle._Unpickler.load_build(self)

    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = _refuse_extension
    dispatch[pickle.BUILD[0]] = _checked_build
    del _opcode


def safe_load(path: str):
    """The object in pickle file `path`, read by SafeUnpickler. Raises TeacherError (one line) when torch is
    older than MIN_TORCH, or the file names anything outside the allow-list, uses a refused opcode or is not
    a readable pickle."""
    check_torch_version()
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f).load()
    except RefusedGlobal as exc:
        raise TeacherError(
            f"{path}: refused to load, the pickle calls {exc} which could run code; only "
            "tensors, plain containers and EDM's persistent network records are read"
        ) from None
    except RefusedOpcode as exc:
        raise TeacherError(f"{path}: refused to load, {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RuntimeError,
        MemoryError,
        UnicodeDecodeError,
    ) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TeacherError(f"{path}: not a readable EDM network pickle ({message})") from None
    except OSError as exc:
        raise TeacherError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


__all__ = ["PersistentRecord", "RecordedObject", "SafeUnpickler", "safe_load", "check_torch_version", "MIN_TORCH"]
