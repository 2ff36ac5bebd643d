"""Files nn_xp writes and reads: written atomically, read only when they are regular files.

Every file nn_xp writes (models, checkpoints, predictions, ONNX graphs, plots, reports) goes
through `atomic_write`: the bytes go to a temporary file beside the target, named
".{name}.nn-xp-tmp-{pid}-{random}", are flushed to disk and renamed over the target in one step.
A failure or a crash mid-write leaves any previous file untouched; the temporary file is removed
on failure, and one left behind by a killed process is removed at the next write of the same file.

`check_readable` refuses at once what cannot be read as a file (a FIFO, a device, a folder): opening
a FIFO would wait for a writer for ever, and /dev/zero never ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile

TEMP_MARK = ".nn-xp-tmp-"


def temp_prefix(path: str) -> str:
    """The start of the names of `path`'s temporary files (without the folder)."""
    return f".{os.path.basename(path)}{TEMP_MARK}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def clean_stale(path: str) -> list:
    """Remove the temporary files of `path` that processes no longer running left behind; returns them."""
    folder = os.path.dirname(os.path.abspath(path))
    removed = []
    for name in glob.glob(os.path.join(glob.escape(folder), glob.escape(temp_prefix(path)) + "*")):
        pid = os.path.basename(name)[len(temp_prefix(path)):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another running process is writing this file right now
        try:
            os.unlink(name)
            removed.append(name)
        except OSError:
            pass
    return removed


def _named(error: OSError, path: str, what: str, where: str = "") -> OSError:
    """The same kind of OSError (errno kept), its message naming the file."""
    if error.errno is None or str(error).startswith(f"{path}:"):
        return error
    return type(error)(error.errno, f"{path}: cannot write the {what}{where} ({error.strerror})")


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, what: str = "file", **open_kwargs):
    """Open a temporary file beside `path` for writing; on success it replaces `path` atomically.

    Yields the open file object (`mode` "wb" or "w"; `open_kwargs` go to `open`, e.g. newline="").
    Parent folders are created. On any exception inside the block the temporary file is removed,
    `path` is left as it was, and an OSError is re-raised naming `path` (`what` says what it is:
    "model file", "ONNX file", ...). The new file gets the mode the replaced one had (else 0o644).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(21, "it is a folder; give a file name")
        clean_stale(path)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f"{temp_prefix(path)}{os.getpid()}-")
    except IsADirectoryError as error:
        raise _named(error, path, what) from error
    except OSError as error:
        raise _named(error, path, what, " there") from error
    try:
        with os.fdopen(descriptor, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            permissions = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            permissions = 0o666 & ~_umask()
        os.chmod(temporary, permissions)
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            named = _named(error, path, what)
            if named is not error:
                raise named from error
        raise
    _sync_folder(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); best effort."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_readable(path, what: str = "file") -> str:
    """`path` as a str, when it names a regular file (or a link to one); raises at once otherwise.

    Raises:
        FileNotFoundError: nothing there ("PATH: no such data file").
        ValueError: "PATH: not a regular file (a FIFO)", a device, a folder or a socket: reading
            it could block for ever or never end.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"{path}: no such {what}") from None
    if stat.S_ISREG(mode):
        return path
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    raise ValueError(f"{path}: not a regular file ({kind}); give the {what} itself")
