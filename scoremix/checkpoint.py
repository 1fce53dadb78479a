"""Checkpoints: atomic writes, SHA-256 verified training state, generator weights as safetensors.

Training state (`checkpoints/state-NNNNNNN.pt`) is a torch file loadable with weights_only=True. Version 2
(the streaming writer): torch.save of {"format", "version": 2, "state"} written through SHA-256 straight
to disk (host memory stays near the state's own size), with the digest and the zip's length stored as
the zip archive comment (a fixed-size trailer). The digest covers the zip as torch wrote it, i.e. with
a comment length of 0. Version 1 ({"format", "version", "sha256", "payload"}, payload holding the
state's torch.save bytes, built in memory) still loads.
Generator weights (`generator.safetensors`) hold "raw.*" and (if EMA is on) "ema.*" tensors with the
resolved config as JSON in the metadata; diffusion runs write their denoiser the same way to
`denoiser.safetensors` (format tag scoremix-denoiser).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
import warnings

import torch

from .errors import CheckpointError

STATE_FORMAT = "scoremix-training-state"
STATE_VERSION = 1
_STATE_RE = re.compile(r"state-(\d+)\.pt$")
_TMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give a new file (mkstemp alone gives 0600)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush, fsync, then rename over `path`."""
    atomic_write_stream(path, lambda fh: fh.write(data))


def folder_error(folder: str, err: OSError) -> str:
    """Why `folder` cannot be created or written, in words ('a_file' is a file, not a folder; Permission denied)."""
    probe = os.path.abspath(folder)
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        return f"'{probe}' is a file, not a folder"
    return err.strerror or str(err)


def remove_stale_temp_files(folder: str) -> list[str]:
    """Delete the temporary files that writes killed half-way left in `folder` (never a finished file)."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), _TMP_PREFIX + "*")):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def atomic_write_stream(path: str, fill) -> None:
    """`fill(fh)` writes the content into a temporary file in the same folder; flush, fsync, then rename
    over `path` (and fsync the folder), so a reader sees the old file or the whole new one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


STATE_VERSION_STREAMED = 2
_TRAILER_TAG = b"SCOREMIX-SHA256 "
_TRAILER_LEN = len(_TRAILER_TAG) + 64 + 1 + 16  # tag, hex digest, space, hex length of the zip
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes, its last 2 the comment length


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it to `fh`."""

    def __init__(self, fh):
        self.fh, self.sha, self.size, self.tail = fh, hashlib.sha256(), 0, b""

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.fh.write(view)
        self.size += len(view)
        self.tail = (self.tail + bytes(view[-22:]))[-22:]
        return len(view)

    def flush(self) -> None:
        self.fh.flush()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_training_state(state: dict, path: str) -> None:
    """Stream the state through SHA-256 to a temporary file, put the digest in the zip comment, fsync, rename."""

    def fill(fh):
        writer = _HashingWriter(fh)
        torch.save({"format": STATE_FORMAT, "version": STATE_VERSION_STREAMED, "state": state}, writer)
        if not (writer.tail.startswith(_EOCD) and writer.tail[-2:] == b"\x00\x00"):
            raise RuntimeError("torch.save did not end with a plain zip end-of-central-directory record")
        trailer = _TRAILER_TAG + writer.sha.hexdigest().encode() + b" " + f"{writer.size:016x}".encode()
        fh.seek(writer.size - 2)
        fh.write(len(trailer).to_bytes(2, "little") + trailer)

    atomic_write_stream(path, fill)


def save_training_state_v1(state: dict, path: str) -> None:
    """The version-1 writer (the payload's bytes built in memory, then wrapped): kept for tests and the
    memory benchmark; its peak host memory is 3-4x the state's size."""
    payload = _torch_bytes(state)
    wrapper = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    atomic_write_bytes(path, _torch_bytes(wrapper))


def _streamed_digest(path: str) -> tuple[str, int] | None:
    """(digest, zip length) from a version-2 file's trailer, or None when it has none."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < _TRAILER_LEN + 22:
            return None
        fh.seek(size - _TRAILER_LEN)
        trailer = fh.read(_TRAILER_LEN)
    if not trailer.startswith(_TRAILER_TAG):
        return None
    try:
        digest, length = trailer[len(_TRAILER_TAG) :].decode("ascii").split(" ")
        return digest, int(length, 16)
    except ValueError:
        return None


def _verify_streamed(path: str, digest: str, length: int) -> bool:
    """SHA-256 of the zip as written (comment length 0), read in 1 MiB chunks."""
    if os.path.getsize(path) != length + _TRAILER_LEN:
        return False
    sha, left = hashlib.sha256(), length - 2
    chunk = bytearray(1 << 20)
    with open(path, "rb") as fh:
        while left > 0:
            got = fh.readinto(memoryview(chunk)[: min(left, len(chunk))])
            if not got:
                return False
            sha.update(memoryview(chunk)[:got])
            left -= got
    sha.update(b"\x00\x00")
    return sha.hexdigest() == digest


def load_training_state(path: str, map_location="cpu") -> dict:
    """Load and verify a training-state file; CheckpointError says what is wrong with it.

    Both the wrapper and the payload are read with weights_only=True, so a file can hold only tensors
    and plain containers: a pickle that would import or call anything else is refused, never run."""
    if os.path.isdir(path):
        raise CheckpointError(
            f"checkpoint '{path}' is a folder; pass a state-*.pt file (or --resume latest with --out RUN_FOLDER)"
        )
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    streamed = _streamed_digest(path)
    if streamed is not None and not _verify_streamed(path, *streamed):
        raise CheckpointError(f"checkpoint '{path}' fails its checksum (corrupted); resume from an earlier one")
    try:
        wrapper = _torch_load(path, map_location if streamed is not None else "cpu")
    except pickle.UnpicklingError as err:  # weights_only refused it: a foreign or malicious pickle
        raise CheckpointError(
            f"checkpoint '{path}' is not a tensors-only torch file ({_first_line(err)}); refusing to load it"
        ) from None
    except Exception as err:  # truncated zip, not a torch file
        raise CheckpointError(
            f"checkpoint '{path}' is unreadable or truncated (not a complete torch file: "
            f"{type(err).__name__}); use an earlier checkpoint"
        ) from None
    if not isinstance(wrapper, dict) or wrapper.get("format") != STATE_FORMAT:
        raise CheckpointError(f"'{path}' is not a scoremix training-state checkpoint")
    if wrapper.get("version") == STATE_VERSION_STREAMED:
        if streamed is None:
            raise CheckpointError(
                f"checkpoint '{path}' has lost its checksum trailer (damaged); resume from an earlier one"
            )
        if not isinstance(wrapper.get("state"), dict):
            raise CheckpointError(f"checkpoint '{path}' payload is not a training state")
        return wrapper["state"]
    digest, blob = wrapper.get("sha256"), wrapper.get("payload")
    if not (
        isinstance(digest, str) and isinstance(blob, torch.Tensor) and blob.dtype == torch.uint8 and blob.ndim == 1
    ):
        raise CheckpointError(f"checkpoint '{path}' is damaged (no payload or checksum); resume from an earlier one")
    payload = blob.numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"checkpoint '{path}' fails its checksum (corrupted); resume from an earlier one")
    try:
        state = _torch_load(io.BytesIO(payload), map_location)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint '{path}' is not a tensors-only torch file ({_first_line(err)}); refusing to load it"
        ) from None
    except Exception as err:
        raise CheckpointError(f"checkpoint '{path}' payload is unreadable ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' payload is not a training state")
    return state


def _first_line(err: Exception) -> str:
    """The gist of a weights_only refusal (torch's message runs over many lines)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for key in ("GLOBAL", "Unsupported", "unsupported"):
        for line in lines:
            if key in line:
                return line[:160]
    return type(err).__name__


def _torch_load(source, map_location):
    """torch.load(weights_only=True) without torch's pickle-protocol warnings on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(source, map_location=map_location, weights_only=True)


def checkpoint_step(path: str) -> int:
    match = _STATE_RE.search(os.path.basename(path))
    return int(match.group(1)) if match else -1


def list_checkpoints(folder: str) -> list[str]:
    """Training-state files in `folder`, oldest first."""
    paths = [p for p in glob.glob(os.path.join(folder, "state-*.pt")) if checkpoint_step(p) >= 0]
    return sorted(paths, key=checkpoint_step)


def load_latest_valid(folder: str, map_location="cpu", report=None) -> tuple[str, dict] | None:
    """The newest checkpoint that loads and verifies; corrupt newer ones are reported and skipped.

    `report(message)` receives one line per skipped file (default: warnings.warn)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_training_state(path, map_location)
        except CheckpointError as err:
            message = f"skipping corrupt checkpoint: {err}"
            if report is None:
                warnings.warn(message, stacklevel=2)
            else:
                report(message)
    return None


def prune_checkpoints(folder: str, keep_last: int, keep_every: int = 0) -> list[str]:
    """Delete all but the newest `keep_last` (and every `keep_every`-th step when > 0)."""
    paths = list_checkpoints(folder)
    removed = []
    for path in paths[:-keep_last] if keep_last > 0 else []:
        step = checkpoint_step(path)
        if keep_every > 0 and step % keep_every == 0:
            continue
        os.unlink(path)
        removed.append(path)
    return removed


def save_generator(
    path: str,
    raw: dict,
    ema: dict | None,
    config: dict,
    step: int,
    data_shape: tuple = (),
    num_classes: int = 0,
    kind: str = "generator",
) -> None:
    """`kind` tags the format: 'generator' (one-step generators) or 'denoiser' (diffusion runs)."""
    from safetensors.torch import save

    tensors = {f"raw.{k}": v.detach().cpu().contiguous().clone() for k, v in raw.items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous().clone() for k, v in ema.items()})
    meta = {
        "format": f"scoremix-{kind}",
        "config": json.dumps(config),
        "step": str(step),
        "has_ema": str(ema is not None),
        "data_shape": json.dumps(list(data_shape)),
        "num_classes": str(num_classes),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))


WEIGHTS_FORMATS = ("scoremix-generator", "scoremix-denoiser")


def load_generator(path: str) -> tuple[dict, dict | None, dict, dict]:
    """(raw state dict, EMA state dict or None, config dict, info) from a generator (or diffusion
    denoiser) safetensors file; info has step, data_shape and num_classes (the config's method.name says which)."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise CheckpointError(f"generator file '{path}' does not exist")
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:
        raise CheckpointError(
            f"'{path}' is not a readable safetensors file ({type(err).__name__}); "
            "pass a run folder, a generator.safetensors or a state-*.pt file"
        ) from None
    if meta.get("format") not in WEIGHTS_FORMATS or "config" not in meta:
        raise CheckpointError(f"'{path}' is a safetensors file but not a scoremix generator (no config metadata)")
    raw = {k[4:]: v for k, v in tensors.items() if k.startswith("raw.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")} or None
    info = {
        "step": int(meta.get("step", -1)),
        "data_shape": tuple(json.loads(meta.get("data_shape", "[]"))),
        "num_classes": int(meta.get("num_classes", 0)),
    }
    return raw, ema, json.loads(meta["config"]), info


# -- exported folders (`scoremix export RUN --format folder`) ------------------------------------------
EXPORT_FORMAT = "scoremix-export"
EXPORT_VERSION = 1
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"


def is_export_folder(path: str) -> bool:
    """True when `path` is a folder written by `scoremix export --format folder` (its config.json says so)."""
    config = os.path.join(path, EXPORT_CONFIG)
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as fh:
            return json.load(fh).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_folder_of(path: str) -> str | None:
    """The exported folder that `path` (the folder or its model.safetensors) belongs to, else None."""
    if os.path.isdir(path):
        return path if is_export_folder(path) else None
    if os.path.basename(path) == EXPORT_WEIGHTS and is_export_folder(os.path.dirname(os.path.abspath(path))):
        return os.path.dirname(os.path.abspath(path))
    return None


def write_export_folder(folder: str, state_dict: dict, description: dict) -> None:
    """config.json (`description`, tagged with the format) and model.safetensors (the network's state dict
    under its own parameter names) into the existing folder `folder`."""
    from safetensors.torch import save

    description = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, **description}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    meta = {
        "format": EXPORT_FORMAT,
        "network": str(description.get("network", "")),
        "weights": str(description.get("weights", "")),
    }
    atomic_write_bytes(os.path.join(folder, EXPORT_WEIGHTS), save(tensors, metadata=meta))
    atomic_write_bytes(os.path.join(folder, EXPORT_CONFIG), (json.dumps(description, indent=2) + "\n").encode())


def read_export_folder(folder: str) -> tuple[dict, dict]:
    """(state dict, config.json as a dict) of an exported folder; CheckpointError says what is wrong."""
    from safetensors import safe_open

    config_path, weights_path = os.path.join(folder, EXPORT_CONFIG), os.path.join(folder, EXPORT_WEIGHTS)
    try:
        with open(config_path) as fh:
            description = json.load(fh)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"'{config_path}' is not readable JSON ({type(err).__name__}); "
            "export the run again with `scoremix export RUN --format folder`"
        ) from None
    if description.get("format_version", 0) > EXPORT_VERSION:
        raise CheckpointError(
            f"'{folder}' was exported in format version {description.get('format_version')}, "
            f"newer than this scoremix reads ({EXPORT_VERSION}); upgrade scoremix"
        )
    missing = [k for k in ("config", "data_shape", "num_classes", "weights", "network") if k not in description]
    if missing:
        raise CheckpointError(f"'{config_path}' lacks {', '.join(missing)}; export the run again")
    if not os.path.isfile(weights_path):
        raise CheckpointError(f"exported folder '{folder}' has no {EXPORT_WEIGHTS}; export the run again")
    try:
        with safe_open(weights_path, framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:
        raise CheckpointError(
            f"'{weights_path}' is not a readable safetensors file ({type(err).__name__}); export the run again"
        ) from None
    return tensors, description
