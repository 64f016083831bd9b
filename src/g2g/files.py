"""Writing files safely: a crash or a kill never leaves half a file where a whole one is expected."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call write(tmp_path) and rename the result into place: a crash never leaves half a file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if not _stopped_short(e):
            raise
        free = shutil.disk_usage(path.parent).free / 2**20
        full = OSError(f"could not write {path}: out of room (disk full, quota or file size limit; "
                      f"{free:.0f} MB free in {path.parent}); free space there or write elsewhere "
                      f"(the file there before, if any, is unchanged)")
        full.errno = errno.ENOSPC  # kept out of the message, which is one plain line
        raise full from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _stopped_short(e: BaseException) -> bool:
    """A write that ran out of room: ENOSPC, EDQUOT or EFBIG, or torch.save's zip writer finding fewer bytes
    written than it sent ("unexpected pos")."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return "unexpected pos" in str(e) or "file write failed" in str(e)
