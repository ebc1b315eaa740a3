"""Checkpoint files without any framework: atomic writes, safe unpickling, and the
Gluon ``.params``, Paddle ``.pdparams`` and ``.safetensors`` formats as dicts of numpy arrays.

Nothing is unpickled beyond plain containers and numpy arrays: :func:`safe_load_pickle`
refuses every other global, so a file from a stranger cannot run code.
"""
import codecs
import io
import os
import pickle
import struct
import tempfile
from contextlib import contextmanager

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or written; the message names the file."""


# --------------------------------------------------------------------------- atomic writes
def _temporary_beside(path):
    """A new temporary file next to ``path``, readable as a plain new file would be
    (mkstemp creates it 0600; the umask decides, as for ``open``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


@contextmanager
def atomic_open(path, mode="wb"):
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A crash or an exception leaves any previous ``path`` untouched and no partial file.
    """
    path = os.fspath(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` for a library that writes by file name
    (``save_parameters``, ``paddle.save``...); rename it over ``path`` on success."""
    path = os.fspath(path)
    fd, tmp = _temporary_beside(path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- safe pickles
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
# numpy >= 2 writes numpy._core where numpy 1.x reads numpy.core (same objects).
_NUMPY_GLOBALS.update({("numpy._core.multiarray", name): obj
                       for (module, name), obj in list(_NUMPY_GLOBALS.items())
                       if module == "numpy.core.multiarray"})
# protocol 2 pickles of Python 2 byte strings go through _codecs.encode
_SAFE_GLOBALS = {**_NUMPY_GLOBALS, ("_codecs", "encode"): codecs.encode}


class _Refused(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to load {module}.{name}: only plain containers and numpy "
                           "arrays are allowed") from None


def _unpickle(f, source, encoding):
    try:
        return _RestrictedUnpickler(f, encoding=encoding).load()
    except _Refused as e:
        raise CheckpointError(f"{source}: {e}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError, IndexError,
            KeyError, AttributeError, UnicodeDecodeError, MemoryError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise CheckpointError(f"{source}: not a readable pickle, truncated or of another format "
                              f"({detail})") from None


def safe_load_pickle(path, encoding="ASCII"):
    """Unpickle ``path`` allowing only builtin containers, scalars and numpy arrays."""
    try:
        with open(path, "rb") as f:
            return _unpickle(f, path, encoding)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None


def safe_loads_pickle(data, source, encoding="ASCII"):
    """Like :func:`safe_load_pickle` for bytes already in memory; ``source`` names them."""
    return _unpickle(io.BytesIO(data), source, encoding)


# --------------------------------------------------------------------------- Paddle .pdparams
PADDLE_NAME_TABLE_KEY = "StructuredToParameterName@@"


def load_pdparams(path):
    """Read a Paddle ``.pdparams``/``.pdopt`` file (a protocol-4 pickle of numpy arrays)
    without Paddle and without running pickled code. Returns ``{name: ndarray}``; the
    structured-name table Paddle adds is dropped."""
    state = safe_load_pickle(path, encoding="latin1")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of arrays, found {type(state).__name__}")
    state = {k: v for k, v in state.items() if k != PADDLE_NAME_TABLE_KEY}
    return _require_arrays(state, path)


def save_pdparams(state, path):
    """Write ``{name: ndarray}`` as a ``.pdparams`` file that ``paddle.load`` reads."""
    state = {k: np.ascontiguousarray(v) for k, v in state.items()}
    state[PADDLE_NAME_TABLE_KEY] = {k: k for k in state}
    with atomic_open(path) as f:
        pickle.dump(state, f, protocol=4)


# --------------------------------------------------------------------------- Gluon .params
_PARAMS_FILE_MAGIC = 0x112
_ARRAY_MAGICS = (0xF993FAC9, 0xF993FACA)  # legacy nd, numpy-mode np
_MX_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
              6: np.int64}
_MX_DTYPE_CODES = {np.dtype(v): k for k, v in _MX_DTYPES.items()}


class _Reader:
    def __init__(self, data, path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CheckpointError(f"{self.path}: truncated .params file (needs {size} more bytes "
                                  f"at offset {self.pos}, file has {len(self.data)})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype, shape):
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if self.pos + nbytes > len(self.data):
            raise CheckpointError(f"{self.path}: truncated .params file (an array of {nbytes} "
                                  f"bytes at offset {self.pos}, file has {len(self.data)})")
        # a view into the file's buffer: no second copy of the weights
        out = np.frombuffer(self.data, dtype=np.dtype(dtype).newbyteorder("<"), count=count,
                            offset=self.pos).reshape(shape)
        self.pos += nbytes
        return out


def load_gluon_params(path):
    """Read an MXNet ``.params`` file (``save_parameters``, legacy ``save_params`` or the
    ``arg:``/``aux:`` file of ``export``) into ``{name: ndarray}``, without MXNet."""
    try:
        with open(path, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)
            f.readinto(data)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    r = _Reader(data, path)
    if len(data) < 24 or r.take("<Q")[0] != _PARAMS_FILE_MAGIC:
        raise CheckpointError(f"{path}: not an MXNet .params file (bad magic number)")
    r.take("<Q")
    (count,) = r.take("<Q")
    arrays = []
    for i in range(count):
        (magic,) = r.take("<I")
        if magic not in _ARRAY_MAGICS:
            raise CheckpointError(f"{path}: array {i} has an unknown header {magic:#x}")
        (stype,) = r.take("<i")
        if stype != 0:
            raise CheckpointError(f"{path}: array {i} is sparse (storage type {stype}); only "
                                  "dense arrays are supported")
        (ndim,) = r.take("<I")
        shape = r.take(f"<{ndim}q") if ndim else ()
        r.take("<ii")  # device type and id
        (code,) = r.take("<i")
        if code not in _MX_DTYPES:
            raise CheckpointError(f"{path}: array {i} has unsupported dtype code {code}")
        arrays.append(r.array(_MX_DTYPES[code], shape))
    (name_count,) = r.take("<Q")
    if name_count != count:
        raise CheckpointError(f"{path}: {count} arrays but {name_count} names")
    names = []
    for _ in range(name_count):
        (length,) = r.take("<Q")
        if r.pos + length > len(data):
            raise CheckpointError(f"{path}: truncated .params file (in the name table)")
        names.append(data[r.pos:r.pos + length].decode("utf-8"))
        r.pos += length
    return dict(zip(names, arrays))


def save_gluon_params(state, path):
    """Write ``{name: ndarray}`` as an MXNet ``.params`` file that ``load_parameters`` reads,
    streaming each array (no copy of the whole state in memory)."""
    arrays = {}
    for name, value in state.items():
        value = np.ascontiguousarray(np.atleast_1d(value))  # MXNet's nd format has no 0-d arrays
        if value.dtype not in _MX_DTYPE_CODES:
            raise CheckpointError(f"{path}: {name} has dtype {value.dtype}, which MXNet cannot store")
        arrays[name] = value.astype(value.dtype.newbyteorder("<"), copy=False)
    with atomic_open(path) as f:
        f.write(struct.pack("<QQQ", _PARAMS_FILE_MAGIC, 0, len(arrays)))
        for value in arrays.values():
            f.write(struct.pack("<IiI", _ARRAY_MAGICS[0], 0, value.ndim))
            f.write(struct.pack(f"<{value.ndim}q", *value.shape))
            f.write(struct.pack("<iii", 1, 0, _MX_DTYPE_CODES[value.dtype]))
            f.write(memoryview(value).cast("B"))
        f.write(struct.pack("<Q", len(arrays)))
        for name in arrays:
            encoded = name.encode("utf-8")
            f.write(struct.pack("<Q", len(encoded)) + encoded)


# --------------------------------------------------------------------------- safetensors
def load_safetensors(path):
    """Read a ``.safetensors`` file into ``{name: ndarray}``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def save_safetensors(state, path, metadata=None):
    """Write ``{name: ndarray}`` as ``.safetensors`` (atomically, streamed to the file)."""
    from safetensors.numpy import save_file
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, tmp, metadata=metadata)


def _require_arrays(state, path):
    bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not arrays: {', '.join(map(str, bad[:5]))}")
    return state
