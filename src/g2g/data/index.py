"""The image files under a folder, listed once and cached: a 200,000-file folder is listed with
`os.scandir` (no stat per file) and read back from a JSON file while none of its directories changes.

Adding, removing or renaming a file changes the modification time of the directory that holds it, so the
cache stores every directory's mtime and is used only while all of them are unchanged: checking costs one
stat per directory, not per file. The cache holds the listing only; which files decode (skip_bad_images)
is decided again by every run, so an edited file is never judged by an old verdict.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write
from .files import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Folders with fewer image files are listed in well under 0.1 s, so a cache would not pay for its file.
CACHE_MIN_FILES = 10_000
# A directory modified this recently may change again within the same timestamp tick, unseen by its mtime:
# such a listing is not cached (the next run lists the folder again).
SETTLE_NS = 2_000_000_000


@dataclass(frozen=True)
class FolderIndex:
    """files: image files under the folder, as paths relative to it ('cat/a.jpg'), sorted by path component
    (the order of sorted `Path` objects); dirs: every directory under it, relative ('' is the folder),
    with its modification time in ns."""

    files: list[str]
    dirs: dict[str, int]

    def top_dirs(self) -> list[str]:
        """The sorted names of the folder's own sub-folders, hidden ones (.name) left out."""
        return sorted(d for d in self.dirs if d and "/" not in d and not d.startswith("."))


def cache_dir() -> Path:
    """$G2G_CACHE_DIR, else $XDG_CACHE_HOME/g2g, else ~/.cache/g2g."""
    if os.environ.get("G2G_CACHE_DIR"):
        return Path(os.environ["G2G_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "g2g"


def folder_index(folder: str | Path) -> FolderIndex:
    """The image files (IMAGE_EXTENSIONS, any depth, hidden files left out) under folder; from the cache
    when the folder is unchanged since it was written. Links to folders are followed at the top level
    only (a class folder may be a link), so that a link cannot make the listing loop."""
    root = os.path.realpath(folder)
    cache = cache_dir() / "index" / (hashlib.sha256(root.encode()).hexdigest()[:32] + ".json")
    cached = _read_cache(cache, root)
    if cached is not None:
        return cached
    started = time.time_ns()
    index = _scan(root)
    if len(index.files) >= CACHE_MIN_FILES and max(index.dirs.values()) < started - SETTLE_NS:
        _write_cache(cache, root, index)
    return index


def _scan(root: str) -> FolderIndex:
    files: list[str] = []
    dirs: dict[str, int] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        path = os.path.join(root, rel) if rel else root
        try:
            dirs[rel] = os.stat(path).st_mtime_ns  # before listing: a change while listing makes it newer
            entries = list(os.scandir(path))
        except OSError:  # unreadable or vanished sub-folder: skipped, as Path.rglob does
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=not rel):
                pending.append(name)
            elif (not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
                  and entry.is_file()):
                files.append(name)
    files.sort(key=lambda f: f.split("/"))
    return FolderIndex(files, dirs)


def _read_cache(cache: Path, root: str) -> FolderIndex | None:
    """The cached index of root, or None when there is none, it is unreadable or the folder changed."""
    try:
        entry = json.loads(cache.read_text())
        if (entry["format"], entry["folder"], entry["extensions"]) != (CACHE_FORMAT, root, list(IMAGE_EXTENSIONS)):
            return None
        dirs, files = entry["dirs"], entry["files"]
        if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            return None
        for rel, mtime in dirs.items():
            if os.stat(os.path.join(root, rel) if rel else root).st_mtime_ns != mtime:
                return None
        return FolderIndex(files, dirs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a damaged or foreign file: list again
        return None


def _write_cache(cache: Path, root: str, index: FolderIndex) -> None:
    entry = {"format": CACHE_FORMAT, "folder": root, "extensions": list(IMAGE_EXTENSIONS), "dirs": index.dirs,
             "files": index.files}
    try:
        atomic_write(cache, lambda tmp: Path(tmp).write_text(json.dumps(entry)))
    except OSError as e:  # a read-only home or cache folder: every run lists the folder instead
        log.info("folder index not cached (%s); set G2G_CACHE_DIR to a writable folder to cache it", e)
