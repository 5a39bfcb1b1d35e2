"""The bundle: a directory of graphs + ``manifest.json`` (torch-free; the runtime reads it).

Layout::

    bundle/
      manifest.json
      encoder.onnx, decoder_step.onnx            fp32 (always)
      encoder.fp16.onnx, decoder_step.fp16.onnx  mixed precision (TensorRT path)
      encoder.int8.onnx, decoder_step.int8.onnx  dynamic INT8 (CPU path)
      *.plan, timing.cache                       TensorRT engines (built on the target)

``manifest["graphs"][precision] = {"encoder": file, "decoder_step": file}``. Every file is listed
with its sha256 in ``manifest["files"]``; loading refuses a mismatch, and any file that resolves
outside the bundle (a symbolic link to elsewhere). ``manifest.json`` is validated completely
at load (``schema.py``); format 2 adds each vocabulary's special ids, the source framing and the
search defaults and style (``conventions.py``); format 1 bundles load as the fixed format-1
conventions. Writes are atomic
(``atomic_dir``): a temporary directory beside the target, renamed into place at the end; an
output directory never overlaps an input (``check_apart``); an in-place rewrite (quantize,
build-engines) fails when another process replaced the bundle meanwhile (``BundleChangedError``).
``AtomicFile`` writes a text output file (``s2s translate -o``), atomically when it is a regular
file (``output_target`` says how each kind of path is written).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import interrupts
from .conventions import FORMAT1, Conventions, Framing, SearchDefaults, Specials, Text
from .errors import BundleChangedError, BundleError, OutputExistsError, UsageError
from .graphio import BundleIO

FORMAT_VERSION = 2  # 2: per-side special ids, source framing, search defaults (format 1 still loads)
MANIFEST = "manifest.json"
GRAPHS = ("encoder", "decoder_step")  # the two graphs of every precision (keys of graphs[precision])
GREEDY = "greedy"  # optional third key: the fused greedy graph (export/greedy.py; ONNX Runtime only)
ENCODER_GREEDY = "encoder_greedy"  # optional: the encoder and the fused greedy graph in one graph (same)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Manifest:
    """Everything the runtime needs to know about a bundle (``manifest.json``, validated by
    ``schema.validate_manifest``).

    ``src_specials``/``tgt_specials``: the special ids of each vocabulary; ``framing``: what every
    entry point adds around a source and the decoder's start token; ``search``: the search
    defaults and style (``conventions``)."""

    model_config: dict[str, Any]
    src_vocab: list[str]
    tgt_vocab: list[str]
    text: Text
    io: BundleIO
    opset: int
    max_batch: int
    max_src_len: int
    src_specials: Specials = FORMAT1
    tgt_specials: Specials = FORMAT1
    framing: Framing = field(default_factory=Framing)
    search: SearchDefaults = field(default_factory=SearchDefaults)
    graphs: dict[str, dict[str, str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    engines: list[dict[str, Any]] = field(default_factory=list)
    trt_compat: list[str] = field(default_factory=list)  # TensorRT-compatibility problems found
    format_version: int = FORMAT_VERSION  # of the document read (1 or 2); saving writes the current
    # sha256 of the manifest.json bytes this was read from (load_manifest; None when built): what
    # an in-place rewrite expects to still find when it commits (atomic_dir's ``expect``)
    digest: str | None = field(default=None, compare=False, repr=False)

    @property
    def topk(self) -> int:
        return self.io.topk

    @property
    def tokenizer(self) -> str:
        """The tokenizer kinds (``char``, ``char:word``, ``sentencepiece:bpe``...)."""
        return self.text.tokenizer

    @property
    def conventions(self) -> Conventions:
        """Both sides' special ids and the framing."""
        return Conventions(src=self.src_specials, tgt=self.tgt_specials, framing=self.framing)

    @property
    def start_id(self) -> int:
        """The decoder's first input token."""
        return self.framing.start_id(self.tgt_specials)

    def to_dict(self) -> dict[str, Any]:
        from .schema import specials_doc

        return {
            "format_version": FORMAT_VERSION, "model_config": self.model_config,
            "src_vocab": self.src_vocab, "tgt_vocab": self.tgt_vocab,
            "specials": {"src": specials_doc(self.src_specials, self.src_vocab),
                         "tgt": specials_doc(self.tgt_specials, self.tgt_vocab)},
            "framing": self.framing.model_dump(), "search": self.search.to_dict(),
            "tokenizer": self.tokenizer, "text": self.text.model_dump(), "io": self.io.to_dict(), "topk": self.topk,
            "opset": self.opset, "max_batch": self.max_batch, "max_src_len": self.max_src_len,
            "graphs": self.graphs, "files": self.files, "versions": self.versions,
            "parity": self.parity, "engines": self.engines, "trt_compat": self.trt_compat,
        }

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        """Validate a manifest document (format 1 or 2) and read it (``BundleError`` naming
        every problem; a newer format is refused naming both versions)."""
        from .schema import validate_manifest

        version = d.get("format_version") if isinstance(d, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BundleError("manifest.json has no valid format_version", "re-export the bundle with s2s-export")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is newer than this s2s-export reads ({FORMAT_VERSION})",
                "upgrade s2s-export (pip install -U s2s-export) or re-export with this version")
        doc = validate_manifest(d)
        return cls(
            model_config=doc.model_config_, src_vocab=list(doc.src_vocab), tgt_vocab=list(doc.tgt_vocab),
            text=doc.text_sides, io=BundleIO.from_dict(doc.io.model_dump()), opset=doc.opset,
            max_batch=doc.max_batch, max_src_len=doc.max_src_len, src_specials=doc.specials.src.specials(),
            tgt_specials=doc.specials.tgt.specials(), framing=doc.framing, search=doc.search,
            graphs={p: {str(k): v for k, v in g.items()} for p, g in doc.graphs.items()}, files=dict(doc.files),
            versions=dict(doc.versions), parity=dict(doc.parity),
            engines=[e.model_dump() for e in doc.engines], trt_compat=list(doc.trt_compat),
            format_version=version)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Hash every file listed in ``graphs``/``engines``/``files`` and write the manifest."""
        directory = Path(directory)
        names = set(self.files)
        names.update(f for g in self.graphs.values() for f in g.values())
        names.update(e["file"] for e in self.engines if "file" in e)
        names.update(f for f in (self.text.src.file, self.text.tgt.file) if f is not None)
        self.files = {n: sha256_file(directory / n) for n in sorted(names)}
        (directory / MANIFEST).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def bundle_path(directory: str | os.PathLike[str], name: str) -> Path:
    """``directory / name`` resolved, refusing (``BundleError``) a file that resolves outside the
    bundle (a symbolic link to elsewhere, a ``..`` component)."""
    root = Path(directory).resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise BundleError(f"bundle file {name} resolves outside the bundle ({path})",
                          "re-export the bundle; never load a bundle whose files point elsewhere")
    return path


def load_manifest(directory: str | os.PathLike[str], verify: bool = True) -> Manifest:
    """Read ``directory/manifest.json``; with ``verify`` check every file's sha256."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BundleError(f"{directory} is a file, not a bundle directory",
                          "pass the directory written by s2s-export (checkpoints go to s2s-export)")
    if not directory.is_dir():
        raise BundleError(f"bundle directory {directory} does not exist",
                          "pass the directory written by s2s-export")
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(f"{directory} has no {MANIFEST}", "pass a bundle written by s2s-export")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc})", "re-export the bundle") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} is not a manifest object", "re-export the bundle")
    manifest = Manifest.from_dict(data)
    manifest.digest = hashlib.sha256(raw).hexdigest()
    for name, digest in manifest.files.items():
        f = bundle_path(directory, name)  # every file, checked or not, stays inside the bundle
        problem = file_problem(f)
        if problem is not None:
            raise BundleError(f"bundle file {name} {problem}", "re-export the bundle")
        if verify and sha256_file(f) != digest:
            raise BundleError(f"bundle file {name} does not match its sha256 in the manifest "
                              "(modified or corrupted)", "re-export the bundle")
    return manifest


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words ("a directory", "a FIFO", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a regular file (symbolic links followed), else what is wrong, to
    follow its name in a message: "is missing" or "is not a regular file (a FIFO)"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None if stat.S_ISREG(mode) else f"is not a regular file ({kind_of(mode)})"


def check_apart(output: str | os.PathLike[str], inputs: list[tuple[str, str | os.PathLike[str]]]) -> None:
    """Refuse (``UsageError``, exit 1) an output directory that is, contains or lies inside one of
    ``inputs`` (``[(what, path)]``, e.g. ``("the model", path)``): replacing it (``--force``)
    would delete the input, and writing inside an input directory changes what is read (a
    repository nested in the bundle it copies). Paths are compared resolved (symbolic links
    followed, ``..`` removed); "lies inside" only applies to an input directory. Called by every
    command that writes an output directory (``s2s-export``, ``s2s triton-repo``) before any work;
    quantize and build-engines rewrite their bundle in place by design."""
    out = Path(output).resolve()
    for what, given in inputs:
        path = Path(given).resolve()
        if out == path:
            relation = "is"
        elif out in path.parents:
            relation = "contains"
        elif path in out.parents and path.is_dir():
            relation = "lies inside"
        else:
            continue
        raise UsageError(f"output directory {output} {relation} {what} {given}, which this command reads "
                         "(writing there would replace or change it)",
                         f"choose an -o outside {given} that does not contain it")


def _digest(manifest: Path) -> str | None:
    """sha256 of a ``manifest.json``, None when it cannot be read (gone, replaced by a rename)."""
    try:
        return hashlib.sha256(manifest.read_bytes()).hexdigest()
    except OSError:
        return None


def _link_target(target: Path) -> Path:
    """``target``, or the directory it names when it is a symbolic link to one: a bundle
    written to a link replaces the directory the link points to and keeps the link."""
    if target.is_symlink() and target.is_dir():
        return Path(os.path.realpath(target))
    return target


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], force: bool = False,
               copy_from: str | os.PathLike[str] | None = None, expect: str | None = None,
               action: str = "it was being rewritten") -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    ``copy_from`` seeds the temporary directory with an existing bundle (used to add files to a
    bundle: quantize, build-engines). On any exception (KeyboardInterrupt included) the temporary
    directory is removed and ``target`` is left as it was; so it is when a signal ends a
    command-line tool (``s2s_export.interrupts``: the same cleanup runs from the handler). A
    ``target`` that is a symbolic link to a directory is resolved: the directory it points to is
    replaced, the link stays, nothing is left beside it.

    Without ``force`` (and without ``copy_from``) an existing ``target`` is refused twice: before
    any work and by the final rename itself, which fails when another process created ``target``
    meanwhile (``rename`` does not replace a non-empty directory): of two exports racing for one
    output directory exactly one succeeds, the other raises ``OutputExistsError``. With ``force``
    the previous ``target`` is moved aside, the new one renamed in, the old one removed; the
    renames run as one ``interrupts.deferred()`` section (a target another writer moved away or
    filled meanwhile is handled: the last writer's bundle wins, nothing is left over).

    In-place rewrites (``copy_from``) are checked against lost updates: ``expect`` is the
    ``Manifest.digest`` of the manifest the caller's work is based on (default: the one found
    when copying). The copy must match it, and at commit, inside the deferred section, the
    current ``target`` is first renamed aside and its manifest compared with ``expect``: when
    another process replaced the bundle meanwhile (``s2s-export --force``, another quantize),
    that bundle is put back and ``BundleChangedError`` (exit 1, "the bundle changed while
    ``action``"; run again) is raised, nothing of this run kept. Comparing the directory already
    renamed aside, which no other writer can reach any more, leaves no window between the check
    and the swap; another writer filling ``target`` between the two renames keeps its bundle and
    this run fails the same way. (The manifest lists every file's sha256, so equal manifest bytes
    mean an equal bundle.) Chosen over a lock file (``fcntl.flock``), which would leave a lock
    file beside every bundle, need every writer (``--force`` exports included) to take part, and
    fail silently on file systems without locks; this needs nothing but ``rename``."""
    target = _link_target(Path(target).absolute())
    if os.path.lexists(target) and not target.is_dir():  # a file, or a dangling symbolic link
        raise OutputExistsError(f"output {target} exists and is not a directory", "choose another -o")
    replace = force or copy_from is not None
    if target.exists() and not replace:
        raise OutputExistsError(f"output directory {target} already exists",
                                "pass --force to replace it (force=True in Python), or choose another -o")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise BundleError(f"cannot write to {parent} (a file, not a directory)", "choose another -o")
    if copy_from is not None and expect is None:
        expect = _digest(Path(copy_from) / MANIFEST)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a bundle gets the usual mode
    except OSError as exc:
        raise BundleError(f"cannot write to {parent} ({exc.strerror})",
                          "choose a writable output directory") from None
    moved: list[Path] = []  # the previous target, once moved aside (.old-*)

    def rollback() -> None:
        """Undo everything not committed (also run by the signal handler, at any bytecode)."""
        if moved and moved[0].exists() and not target.exists():
            os.replace(moved[0], target)
        shutil.rmtree(tmp, ignore_errors=True)

    token = interrupts.on_interrupt(rollback)
    committed = False
    try:
        if copy_from is not None:
            _copy_checked(Path(copy_from), tmp, expect, _changed(target, action))
        yield tmp
        with interrupts.deferred():
            if copy_from is not None:
                _swap_checked(tmp, target, moved, expect, _changed(target, action))
            elif replace:
                _swap_force(tmp, target, moved)
            else:
                _rename_new(tmp, target)
            committed = True
            interrupts.discard(token)
            if moved:  # a signal from here on only has the old copy left to remove
                token = interrupts.on_interrupt(lambda: shutil.rmtree(moved[0], ignore_errors=True))
    except BaseException as exc:
        if not committed:
            rollback()
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise BundleError(f"writing {target} failed ({exc.strerror or exc}); nothing was changed",
                              "free disk space or choose a writable output directory") from None
        raise
    finally:
        if committed and moved:
            shutil.rmtree(moved[0], ignore_errors=True)
        interrupts.discard(token)


def _changed(target: Path, action: str) -> BundleChangedError:
    return BundleChangedError(f"the bundle {target} changed while {action} (another process wrote it; "
                              "its bundle was kept, nothing of this run)", "run the command again")


def _aside(tmp: Path) -> Path:
    """Where the previous target goes while the new one is renamed in (unique, like ``tmp``)."""
    return tmp.parent / tmp.name.replace(".tmp-", ".old-", 1)


def _copy_checked(source: Path, tmp: Path, expect: str | None, changed: BundleChangedError) -> None:
    """Copy the bundle ``source`` into ``tmp``; ``changed`` when the copy's manifest is not the
    ``expect``-ed one (the bundle was replaced before or while it was copied)."""
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    except OSError:
        if _digest(source / MANIFEST) != expect:  # renamed away or replaced under the copy
            raise changed from None
        raise
    if _digest(tmp / MANIFEST) != expect:
        raise changed


def _swap_checked(tmp: Path, target: Path, moved: list[Path], expect: str | None,
                  changed: BundleChangedError) -> None:
    """Commit an in-place rewrite (``atomic_dir``'s docstring): ``target`` aside, compared with
    ``expect``, then ``tmp`` in; ``changed`` (the other writer's bundle kept) when it differs or
    when another writer filled ``target`` in between."""
    aside = _aside(tmp)
    try:
        os.replace(target, aside)
    except FileNotFoundError:  # another writer is between its own renames: its bundle comes next
        raise changed from None
    moved.append(aside)
    if _digest(aside / MANIFEST) != expect:  # another writer committed since this run read the bundle
        moved.clear()
        try:
            os.rename(aside, target)  # put the other writer's bundle back
        except OSError:  # a third writer filled target meanwhile: its bundle is newer still
            shutil.rmtree(aside, ignore_errors=True)
        raise changed
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        moved.clear()  # another writer filled target after this run moved the old bundle aside:
        shutil.rmtree(aside, ignore_errors=True)  # the old bundle is superseded, the other one stays
        raise changed from None


def _swap_force(tmp: Path, target: Path, moved: list[Path], attempts: int = 3) -> None:
    """``--force`` commit: the current ``target`` (if any) aside, ``tmp`` in. A ``target`` that
    another writer renamed away meanwhile has nothing to move aside; one filled again before the
    rename in is moved aside in turn (the older copy removed), up to ``attempts`` times."""
    for attempt in range(attempts):
        if moved:  # superseded by the bundle another writer put there since
            shutil.rmtree(moved.pop(), ignore_errors=True)
        try:
            os.replace(target, _aside(tmp))
            moved.append(_aside(tmp))
        except FileNotFoundError:
            pass
        try:
            os.replace(tmp, target)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or attempt == attempts - 1:
                raise


def _rename_new(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, refusing a ``target`` that appeared meanwhile
    (``OutputExistsError``; ``rename`` replaces only an empty directory)."""
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise OutputExistsError(f"output directory {target} was created by another process while "
                                    "this one was writing it (left unchanged)",
                                    "pass --force to replace it (force=True in Python), or choose another -o") from None


def output_target(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """How an output file ``path`` is written: ``(where, direct)``.

    A symbolic link is followed (the link stays, its target is written). A regular file, or a
    path that does not exist yet (a dangling link: the file it names), is written atomically:
    ``(the resolved path, False)``, a temporary file beside it renamed over it. An existing file
    that is not regular (a character device such as a terminal or ``/dev/null``, a FIFO, a
    socket, ``/dev/stdout``) cannot be replaced and is written directly: ``(path, True)``; no
    atomicity is possible there (what was written before a failure stays written). A directory
    or an unreadable path raises ``BadInputError`` (exit 4)."""
    from .errors import BadInputError

    path = Path(path)
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:  # absent, or a dangling link
        mode = None
    except OSError as exc:
        raise BadInputError(f"cannot write {path} ({exc.strerror})", "choose a writable output path") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise BadInputError(f"cannot write {path} (it is a directory)", "pass a file name")
    if mode is not None and not stat.S_ISREG(mode):
        return path, True
    return Path(os.path.realpath(path)), False


def open_direct(path: Path, binary: bool = False) -> Any:
    """Open an existing non-regular file for writing, as a shell's ``>`` does (a FIFO waits for
    its reader). This process's own stdout/stderr (``/dev/stdout``, also when it is a socket,
    which cannot be opened by name) are written through a duplicate of their descriptor."""
    st = os.stat(path)
    fd = None
    for std in (1, 2):
        try:
            s = os.fstat(std)
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
            fd = os.dup(std)
            break
    if fd is None:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    if binary:
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


class AtomicFile:
    """A text file (UTF-8, ``\\n`` line ends) for ``s2s translate -o`` and the Ray output file,
    written as ``output_target`` says: a regular file (or a new one; a symbolic link's target)
    through a temporary file beside it, renamed over it by ``commit()`` (``discard()`` removes it;
    so does a signal, through ``interrupts``), so that a failure leaves it as it was; a FIFO, a
    device or ``/dev/stdout`` directly, never replaced (no atomicity possible: a failure leaves
    what was written; ``discard()`` only closes it). A directory or an unwritable place:
    ``BadInputError`` (exit 4)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from .errors import BadInputError

        self.path = Path(path)
        where, self.direct = output_target(self.path)
        self.tmp: Path | None = None
        self._token: int | None = None
        if self.direct:
            try:
                self.file = open_direct(where)
            except OSError as exc:
                raise BadInputError(f"cannot write {self.path} ({exc.strerror})",
                                    "choose a writable path for -o") from None
            return
        self.target = where
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{where.name}.tmp-", dir=where.parent)
        except OSError as exc:
            raise BadInputError(f"cannot write {self.path} ({exc.strerror})", "choose a writable path for -o") from None
        self.tmp = Path(tmp)
        self._token = interrupts.on_interrupt(lambda: Path(tmp).unlink(missing_ok=True))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; an output file gets the usual mode
        self.file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def write(self, text: str) -> None:
        self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def commit(self) -> None:
        self.file.flush()
        if self.tmp is None:  # written directly
            self.file.close()
            return
        os.fsync(self.file.fileno())
        self.file.close()
        with interrupts.deferred():
            os.replace(self.tmp, self.target)
            if self._token is not None:
                interrupts.discard(self._token)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        if self._token is not None:
            interrupts.discard(self._token)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[AtomicFile]:
    """``AtomicFile(target)``, committed when the block ends normally and discarded on any
    exception (a regular ``target`` is then left as it was; a FIFO or device keeps what was
    written to it); OS errors -> ``BadInputError``."""
    from .errors import BadInputError

    out = AtomicFile(target)
    try:
        yield out
        out.commit()
    except BaseException as exc:
        out.discard()
        if isinstance(exc, OSError):
            kept = "what was written before stays" if out.direct else "nothing was written"
            raise BadInputError(f"writing {out.path} failed ({exc.strerror or exc}); {kept}",
                                "free disk space or choose a writable output path") from None
        raise
