"""
Uploads: :class:`UploadedFile`, and :class:`FormReceiver`, which parses a
``multipart/form-data`` body as its chunks arrive.

The receiver is fed on the reactor thread, one network chunk at a time, so a
large upload never holds the reactor for long and never sits in memory whole:
a file part stays in memory up to ``max_in_memory_file_upload_size`` bytes and
is spooled to a ``houweb-upload-<pid>-*`` temp file beyond that. Parsing returns
values (form fields and files) or a :class:`FormError`; it dispatches nothing.

What a form holds in memory (its fields, its in-memory files) is counted
against a :class:`MemoryBudget` shared by every request of one server, so that
many concurrent forms cannot make the process grow without limit.

An :class:`UploadedFile` owns its temp file: the file is deleted when the
UploadedFile is no longer referenced (by its Request, the handler, or
anything the handler started), never while someone can still read it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import IO, Any

import multipart
from twisted.logger import Logger

log = Logger(namespace="houweb")

#: Prefix of the temp files that hold uploads on disk.
TEMP_PREFIX = "houweb-upload-"
#: Size of the pieces :meth:`UploadedFile.chunks` yields and copies use.
CHUNK_SIZE = 64 * 1024
#: Most parts one body may have (the ``multipart`` package's own default of
#: 128 is too few for a folder of textures).
MAX_PARTS = 10_000
#: Most bytes the non-file fields of one body may hold in all when the
#: settings set no ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``None``): they are kept
#: in memory as ``str``, so unlike files they cannot be spooled.
MAX_FIELDS_SIZE = 64 * 1024 * 1024
#: Most bytes the forms of all the requests of one server may hold in memory
#: at once (fields, and files kept in memory): past it, files go to disk and
#: fields are answered 503 until earlier requests are done.
FORM_MEMORY_BUDGET = 256 * 1024 * 1024
#: One request keeps at most this many ``max_in_memory_file_upload_size``
#: worth of files in memory; files arriving after that go to disk.
IN_MEMORY_BUDGET_FACTOR = 4
#: Longest header line a part may have (a long file name, percent-encoded).
MAX_PART_HEADER_SIZE = 8192

FORM_URLENCODED = "application/x-www-form-urlencoded"
MULTIPART_FORM = "multipart/form-data"
#: The ``errno`` values of a write that failed because the disk (or the
#: user's disk quota) is full.
DISK_FULL = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


class FormError(ValueError):
    """
    A body that cannot be read as ``multipart/form-data``. ``str(exc)`` is the
    message for the client and :attr:`status` the HTTP status to answer with.
    """

    #: What the message starts with.
    prefix = "request body could not be decoded: "

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(self.prefix + reason)
        self.status = status


class BodyNotStored(FormError):
    """A request body (or an upload in it) that could not be written to disk."""

    prefix = "request body could not be stored: "


def not_stored(error: OSError) -> BodyNotStored:
    """
    Log why a request body could not be written to its temp file.

    :returns: the error to answer with: 507 Insufficient Storage when the disk
        or the quota is full, else 500; its message names no server path.
    """
    log.warn(
        "houweb: could not store a request body in {directory}: {error}",
        directory=tempfile.gettempdir(),
        error=error,
    )
    reason = (error.strerror or "write error").lower()
    return BodyNotStored(reason, 507 if error.errno in DISK_FULL else 500)


def remove_quietly(path: str) -> None:
    """Delete ``path`` if it still exists (a handler may have moved it away)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warn("houweb: could not delete {path}: {error}", path=path, error=exc)


def new_temp_file() -> tuple[IO[bytes], str]:
    """
    :returns: a new ``houweb-upload-<pid>-*`` file in ``tempfile.gettempdir()``,
        open for writing; the pid lets :func:`remove_stale_uploads` of a later
        process tell the files of a dead process from those of a live one.
    """
    fd, path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    return os.fdopen(fd, "wb"), path


_OWNED_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


def remove_stale_uploads(directory: str | None = None) -> int:
    """
    Delete the upload temp files that processes which no longer exist left
    in ``directory`` (``tempfile.gettempdir()`` by default): a process killed
    mid-upload never deletes its own. Files of live processes, of this
    process, of other users, symlinks and files without a pid in their name
    are left alone.

    :returns: how many files were deleted.
    """
    if os.name != "posix":  # os.kill(pid, 0) only probes on POSIX
        return 0
    directory = directory or tempfile.gettempdir()
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    alive: dict[int, bool] = {os.getpid(): True}
    for name in names:
        match = _OWNED_NAME.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid not in alive:
            alive[pid] = _is_alive(pid)
        if alive[pid]:
            continue
        path = os.path.join(directory, name)
        try:
            status = os.lstat(path)
        except OSError:
            continue
        # Only regular files of this user: never a symlink, and never another
        # user's file in a shared /tmp (its process may live in another PID
        # namespace, and deleting it would fail and warn at every start).
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
            continue
        try:
            os.remove(path)
        except OSError:
            continue
        removed += 1
    if removed:
        log.info(
            "houweb: deleted {count} upload temp files left by ended processes in {directory}",
            count=removed,
            directory=directory,
        )
    return removed


def _is_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process id: never guess
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


class MemoryBudget:
    """
    The bytes the forms of one server's requests may hold in memory at once.
    Thread-safe: a :class:`FormMemory` gives its bytes back from whichever
    thread drops the last reference to its request.

    :param limit: the most bytes held at once.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = FORM_MEMORY_BUDGET if limit is None else limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """:returns: whether ``size`` more bytes fit (they are then counted)."""
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def give_back(self, size: int) -> None:
        """Stop counting ``size`` bytes."""
        with self._lock:
            self.held -= size


class FormMemory:
    """
    What one request's form holds of a :class:`MemoryBudget`. Its bytes are
    given back when this object is garbage (its Request, and whatever the
    handler started with it, are done), or by :meth:`give_back_all`.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._count = [0]  # shared with the finalizer, which cannot hold self
        self._finalizer = weakref.finalize(self, _give_back, budget, self._count)

    @property
    def held(self) -> int:
        """:returns: the bytes this form holds now."""
        return self._count[0]

    def take(self, size: int) -> bool:
        """:returns: whether ``size`` more bytes fit in the server's budget."""
        if not self._budget.take(size):
            return False
        self._count[0] += size
        return True

    def give_back(self, size: int) -> None:
        """Stop counting ``size`` of this form's bytes (they went to disk)."""
        self._count[0] -= size
        self._budget.give_back(size)

    def give_back_all(self) -> None:
        """The form will never be used (its body was bad): stop counting it."""
        self._finalizer()


def _give_back(budget: MemoryBudget, count: list[int]) -> None:
    held, count[0] = count[0], 0
    budget.give_back(held)


class UploadedFile:
    """
    One uploaded file, as ``Request.files()`` gives it: in memory, or in a
    temp file. Safe to use from any thread. The temp file (one made by
    :meth:`saveToDisk` too) lives as long as this object: it is deleted once
    nothing refers to the UploadedFile or its Request any more (the request
    is finished, the handler returned, and no thread or task it started
    still holds them). Keep the object, not just its path, for as long as
    you need the file, or move the file away to keep it for good.

    :param field_name: the form field the file was sent as.
    :param name: the file name the client sent (untrusted: never use it as a
        path without ``os.path.basename``).
    :param content_type: the part's Content-Type as sent, ``""`` when absent.
    :param data: the content, for a file kept in memory.
    :param path: the temp file holding the content, for a file on disk.
    """

    def __init__(
        self,
        field_name: str,
        name: str,
        content_type: str,
        *,
        data: bytes | None = None,
        path: str | None = None,
    ) -> None:
        if (data is None) == (path is None):
            raise ValueError("UploadedFile needs either data or path")
        self._field_name = field_name
        self._name = name
        self._content_type = content_type
        self._data = data
        self._path = path
        self._size = len(data) if data is not None else os.path.getsize(path)  # type: ignore[arg-type]
        self._position = 0
        self._disk: _DiskCopy | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]
        self._lock = threading.Lock()
        if path is not None:
            self._own(path)

    def __repr__(self) -> str:
        where = "in memory" if self.isInMemory() else self.temporaryFilePath()
        return f"<UploadedFile {self._field_name}={self._name!r} {self._size} bytes {where}>"

    def name(self) -> str:
        """:returns: the file name the client sent."""
        return self._name

    def fieldName(self) -> str:
        """:returns: the name of the form field it came in (extension)."""
        return self._field_name

    def contentType(self) -> str:
        """:returns: the part's Content-Type as sent, ``""`` when absent (extension)."""
        return self._content_type

    def size(self) -> int:
        """:returns: the size in bytes."""
        return self._size

    def isInMemory(self) -> bool:
        """:returns: whether the content is held in memory rather than in a temp file."""
        return self._path is None

    def temporaryFilePath(self) -> str:
        """:returns: the temp file holding the content, ``""`` when in memory."""
        return self._path or ""

    def saveToDisk(self) -> None:
        """
        Write an in-memory upload to a temp file, so that it has a path (for
        tools that want a file name); a no-op for one already on disk. The
        read position is kept. The file is deleted with the request's others.
        """
        with self._lock:
            if self._data is None:
                return
            handle, path = new_temp_file()
            try:
                with handle:
                    handle.write(self._data)
            except OSError:  # the disk is full, say: leave nothing half-written
                remove_quietly(path)
                raise
            self._path, self._data = path, None
            self._own(path)

    def _own(self, path: str) -> None:
        """Delete ``path`` (closing its reader first) once this object is garbage."""
        self._disk = _DiskCopy(path)
        self._finalizer = weakref.finalize(self, self._disk.delete)

    def read(self, max_size: int = -1) -> bytes:
        """
        :param max_size: the most bytes to return; negative means all the rest.
        :returns: the next bytes from the read position, ``b""`` at the end.
        """
        with self._lock:
            if self._data is not None:
                end = self._size if max_size < 0 else self._position + max_size
                result = self._data[self._position : end]
            else:
                reader = self._open_reader()
                reader.seek(self._position)
                result = reader.read(max_size if max_size >= 0 else -1)
            self._position += len(result)
            return result

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """
        :returns: a generator of the whole content in pieces of at most
            ``chunk_size`` bytes, from the start, without loading it whole.
            It does not move :meth:`read`'s position (extension).
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be more than 0, not {chunk_size}")
        with self._lock:
            data, path = self._data, self._path
        if data is not None:
            return (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))
        return _file_chunks(path, chunk_size, self)  # type: ignore[arg-type]

    def _open_reader(self) -> IO[bytes]:
        assert self._disk is not None
        return self._disk.open()

    def _delete(self) -> None:
        """Close and delete the temp file now: no handler will ever see it."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()


class _DiskCopy:
    """
    The temp file of an :class:`UploadedFile` and its open reader, apart from
    the UploadedFile so that its finalizer can delete them without keeping
    the UploadedFile alive.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        """:returns: the reader, opened on first use."""
        if self.reader is None:
            self.reader = open(self.path, "rb")
        return self.reader

    def delete(self) -> None:
        """Close the reader and delete the file (a handler may have moved it away)."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        remove_quietly(self.path)


def _file_chunks(path: str, chunk_size: int, owner: UploadedFile) -> Iterator[bytes]:
    # ``owner`` is held so that its temp file lives until the last chunk.
    with open(path, "rb") as source:
        while True:
            piece = source.read(chunk_size)
            if not piece:
                return
            yield piece


def delete_uploads(files: Iterable[UploadedFile]) -> None:
    """Delete the temp files of ``files`` (their request is over)."""
    for upload in files:
        upload._delete()


class _FileSpool:
    """
    The content of one file part as it arrives: in memory up to ``limit``
    bytes, moved to a temp file as soon as it grows past that.
    """

    def __init__(self, limit: int, memory: FormMemory) -> None:
        self._limit = limit
        self._memory = memory
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None
        self._path: str | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None and (self.size > self._limit or not self._memory.take(len(chunk))):
            self._file, self._path = new_temp_file()
            self._file.write(self._buffer)
            self._memory.give_back(len(self._buffer))
            self._buffer = bytearray()
        if self._file is not None:
            self._file.write(chunk)
        else:
            self._buffer += chunk

    def finish(self, field_name: str, name: str, content_type: str) -> UploadedFile:
        """
        :returns: the complete file; its temp file, if any, is closed.
        :raises OSError: if the last bytes could not be written (the temp
            file is deleted then).
        """
        if self._file is None:
            return UploadedFile(field_name, name, content_type, data=bytes(self._buffer))
        try:
            self._file.close()
        except OSError:
            self.abandon()
            raise
        return UploadedFile(field_name, name, content_type, path=self._path)

    def abandon(self) -> None:
        """Drop a part that will never complete, deleting its temp file."""
        self._memory.give_back(len(self._buffer))
        self._buffer = bytearray()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # its last bytes could not be written: they are not wanted
                pass
            remove_quietly(self._path)  # type: ignore[arg-type]


class _Part:
    """The part being received: its headers, and where its content goes."""

    def __init__(self, segment: multipart.MultipartSegment, spool: _FileSpool | None) -> None:
        self.field_name: str = segment.name or ""
        self.file_name: str | None = segment.filename
        self.content_type: str = segment.header("Content-Type", "") or ""
        self.spool = spool
        self.value = bytearray()


class FormReceiver:
    """
    Parses one ``multipart/form-data`` body fed chunk by chunk with
    :meth:`feed`; :meth:`finish` gives the fields and files. After the first
    error the rest of the body is ignored (not buffered) and :meth:`finish`
    raises it. :meth:`discard` deletes every temp file it made.

    :param boundary: the boundary from the request's Content-Type; ``None``
        when it had none, which is an error reported by :meth:`finish`.
    :param in_memory_limit: the largest file part kept in memory.
    :param budget: the server's budget of form bytes held in memory; a
        budget of this body's own by default.
    :param max_fields_size: the most bytes of non-file fields (the settings'
        ``DATA_UPLOAD_MAX_MEMORY_SIZE``); ``None`` for :data:`MAX_FIELDS_SIZE`.
    :param max_fields: the most non-file fields (the settings'
        ``DATA_UPLOAD_MAX_NUMBER_FIELDS``); ``None`` for no limit.
    :param max_files: the most file parts (the settings'
        ``DATA_UPLOAD_MAX_NUMBER_FILES``); ``None`` for no limit. Each one past
        the in-memory budget is a temp file made on the reactor thread, so a
        body of thousands of tiny files would stall every other client.
    """

    def __init__(
        self,
        boundary: str | None,
        in_memory_limit: int,
        *,
        budget: MemoryBudget | None = None,
        max_fields_size: int | None = None,
        max_fields: int | None = None,
        max_files: int | None = None,
    ) -> None:
        self._in_memory_limit = in_memory_limit
        self._memory_left = in_memory_limit * IN_MEMORY_BUDGET_FACTOR
        #: What this body holds in memory, counted against the server's budget.
        self.memory = FormMemory(budget if budget is not None else MemoryBudget())
        self._max_fields_size = MAX_FIELDS_SIZE if max_fields_size is None else max_fields_size
        self._max_fields = max_fields
        self._max_files = max_files
        self._fields_size = 0
        self._field_count = 0
        self._file_count = 0
        self._handed_over = False
        self._fields: dict[str, list[str]] = {}
        self._files: dict[str, UploadedFile] = {}
        self._all_files: list[UploadedFile] = []
        self._part: _Part | None = None
        self.error: FormError | None = None
        self._parser: multipart.PushMultipartParser | None = None
        if boundary is None:
            self.error = FormError("multipart/form-data without a boundary")
            return
        try:
            self._parser = multipart.PushMultipartParser(
                boundary,
                max_header_size=MAX_PART_HEADER_SIZE,
                max_segment_count=MAX_PARTS,
            )
        except multipart.MultipartError as exc:
            self.error = FormError(f"bad multipart boundary: {_reason(exc)}")

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body (a no-op after an error)."""
        if not chunk or self.error is not None or self._parser is None:
            return
        try:
            for event in self._parser.parse(chunk):
                self._on_event(event)
        except multipart.MultipartError as exc:
            self._fail(FormError(_reason(exc)))
        except FormError as exc:
            self._fail(exc)
        except OSError as exc:  # a temp file could not be written: the disk is full
            self._fail(not_stored(exc))

    def finish(self) -> tuple[dict[str, list[str]], dict[str, UploadedFile]]:
        """
        The body is complete.

        :returns: the form fields (every value, in order) and the files by
            field name (the last of a name wins).
        :raises FormError: if the body was not valid ``multipart/form-data``
            or could not be stored (its temp files are deleted then).
        """
        if self.error is None and self._parser is not None:
            try:
                self._parser.close()
            except multipart.MultipartError as exc:
                self._fail(FormError(_reason(exc)))
        if self.error is not None:
            raise self.error
        # From now on the files are the Request's: they are deleted when it
        # (and whatever holds them) is done, not by discard().
        self._handed_over = True
        fields, files = self._fields, self._files
        self._all_files, self._fields, self._files = [], {}, {}
        return fields, files

    def discard(self) -> None:
        """
        The request is over: delete the temp files of a body that was never
        handed over by :meth:`finish` (cut short, or bad); a no-op after a
        successful :meth:`finish`.
        """
        if self._handed_over:
            return
        if self._part is not None and self._part.spool is not None:
            self._part.spool.abandon()
        self._part = None
        delete_uploads(self._all_files)
        self._all_files = []
        self._files = {}
        self._fields = {}
        self.memory.give_back_all()

    def _fail(self, error: FormError) -> None:
        self.error = error
        self.discard()

    def _on_event(self, event: object) -> None:
        if isinstance(event, multipart.MultipartSegment):
            self._start_part(event)
        elif event is None:
            self._end_part()
        else:
            self._add_content(event)  # type: ignore[arg-type]

    def _start_part(self, segment: multipart.MultipartSegment) -> None:
        is_file = segment.filename is not None
        if is_file:
            self._file_count += 1
            if self._max_files is not None and self._file_count > self._max_files:
                raise FormError(
                    f"more than {self._max_files} files in one request "
                    "(DATA_UPLOAD_MAX_NUMBER_FILES in the settings)"
                )
        else:
            self._field_count += 1
            if self._max_fields is not None and self._field_count > self._max_fields:
                raise FormError(
                    f"more than {self._max_fields} form fields "
                    "(DATA_UPLOAD_MAX_NUMBER_FIELDS in the settings)"
                )
        limit = min(self._in_memory_limit, max(self._memory_left, 0))
        self._part = _Part(segment, _FileSpool(limit, self.memory) if is_file else None)

    def _add_content(self, chunk: bytes) -> None:
        part = self._part
        assert part is not None
        if part.spool is not None:
            part.spool.write(chunk)
            return
        self._fields_size += len(chunk)
        if self._fields_size > self._max_fields_size:
            raise FormError(
                f"form fields exceed {self._max_fields_size} bytes "
                "(DATA_UPLOAD_MAX_MEMORY_SIZE in the settings)",
                413,
            )
        if not self.memory.take(len(chunk)):
            raise FormError(
                "the server holds too much form data in memory right now; try again later",
                503,
            )
        part.value += chunk

    def _end_part(self) -> None:
        part, self._part = self._part, None
        assert part is not None
        if part.spool is None:
            self._add_field(part)
        elif part.file_name or part.spool.size:  # an empty file input sends neither
            self._add_file(part)

    def _add_field(self, part: _Part) -> None:
        try:
            value = part.value.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError(f"form field {part.field_name!r} is not valid UTF-8") from None
        self._fields.setdefault(part.field_name, []).append(value)

    def _add_file(self, part: _Part) -> None:
        assert part.spool is not None and part.file_name is not None
        upload = part.spool.finish(part.field_name, part.file_name, part.content_type)
        if upload.isInMemory():
            self._memory_left -= upload.size()
        self._all_files.append(upload)
        self._files[part.field_name] = upload


def _reason(exc: multipart.MultipartError) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def boundary_of(content_type: str) -> str | None:
    """:returns: the boundary parameter of a Content-Type, ``None`` when absent."""
    _, options = multipart.parse_options_header(content_type)
    return options.get("boundary") or None


def form_receiver(content_type: str, in_memory_limit: int, **limits: Any) -> FormReceiver | None:
    """
    :param limits: the keyword arguments of :class:`FormReceiver` (budget, limits).
    :returns: a receiver for a ``multipart/form-data`` body with this
        Content-Type (one that reports the error if the boundary is missing),
        or ``None`` for any other kind of body.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != MULTIPART_FORM:
        return None
    return FormReceiver(boundary_of(content_type), in_memory_limit, **limits)
