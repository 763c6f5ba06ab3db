"""A content-addressed blob folder: a file is stored under its SHA-256, so the same bytes are kept once
and a path in an event can never come to mean other bytes.

    <root>/uploads/ab/abcdef...      uploads, by hash (first two hex digits as a fan-out folder)
    <root>/renditions/<video>/<n>/   each processing attempt writes its own folder

Renditions get one folder per attempt (worker and epoch in its name): a fenced zombie's late output
lands beside the winner's, never over it, and only the folder a `VideoProcessingSucceeded` names is
the real one. Workers delete their own failed, fenced and abandoned attempt folders; only a worker
killed mid-job leaves one behind (docs/EXAMPLES.md, "Attempt folders").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import msgspec

from chronik.errors import InvalidInput


class StoredBlob(msgspec.Struct, frozen=True):
    path: str
    size_bytes: int
    sha256: str


class BlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)

    def put_file(self, source: Path) -> StoredBlob:
        """Copy a file in (hashing it on the way), atomically; the same content is stored once.

        The copy goes to a temporary file beside the uploads and is renamed into place only when
        complete, so a failed copy (a read error, a full disk, an interrupt) must delete that
        temporary file, or every failed upload would leave a half-written file behind for good.
        A source that is not a readable file is refused before anything is written.
        """
        if not source.is_file():
            reason = "no such file" if not source.exists() else "not a regular file"
            raise InvalidInput(f"cannot upload {source}: {reason}")
        digest = hashlib.sha256()
        handle, temporary = tempfile.mkstemp(dir=self.root / "uploads", prefix=".incoming-")
        try:
            size = 0
            with os.fdopen(handle, "wb") as sink, source.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                sink.flush()
                os.fsync(sink.fileno())
            sha = digest.hexdigest()
            final = self.upload_path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, final)
        except BaseException:  # KeyboardInterrupt too: no half-written file may stay behind
            Path(temporary).unlink(missing_ok=True)
            raise
        return StoredBlob(str(final), size, sha)

    def upload_path(self, sha256: str) -> Path:
        return self.root / "uploads" / sha256[:2] / sha256

    def attempt_folder(self, video_id: str, worker: str, epoch: int, attempt: int) -> Path:
        safe_worker = "".join(c if c.isalnum() or c in "-_." else "_" for c in worker)
        return self.root / "renditions" / video_id / f"attempt{attempt}-{safe_worker}-e{epoch}"

    def remove_attempt(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
