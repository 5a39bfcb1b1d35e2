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
(``atomic_dir``): a temporary directory beside the target, renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import interrupts
from .conventions import FORMAT1, Conventions, Framing, SearchDefaults, Specials, Text
from .errors import BundleError, OutputExistsError
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc})", "re-export the bundle") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} is not a manifest object", "re-export the bundle")
    manifest = Manifest.from_dict(data)
    for name, digest in manifest.files.items():
        f = bundle_path(directory, name)  # every file, checked or not, stays inside the bundle
        if not f.is_file():
            raise BundleError(f"bundle file {name} is missing", "re-export the bundle")
        if verify and sha256_file(f) != digest:
            raise BundleError(f"bundle file {name} does not match its sha256 in the manifest "
                              "(modified or corrupted)", "re-export the bundle")
    return manifest


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], force: bool = False,
               copy_from: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    ``copy_from`` seeds the temporary directory with an existing bundle (used to add files to a
    bundle: quantize, build-engines). On any exception (KeyboardInterrupt included) the temporary
    directory is removed and ``target`` is left as it was; so it is when a signal ends a
    command-line tool (``s2s_export.interrupts``: the same cleanup runs from the handler).

    Without ``force`` (and without ``copy_from``) an existing ``target`` is refused twice: before
    any work and by the final rename itself, which fails when another process created ``target``
    meanwhile (``rename`` does not replace a non-empty directory): of two exports racing for one
    output directory exactly one succeeds, the other raises ``OutputExistsError``. With ``force``
    the previous ``target`` is moved aside, the new one renamed in, the old one removed; the
    renames run as one ``interrupts.deferred()`` section."""
    target = Path(target).absolute()
    if os.path.lexists(target) and not target.is_dir():  # a file, or a dangling symbolic link
        raise OutputExistsError(f"output {target} exists and is not a directory", "choose another -o")
    replace = force or copy_from is not None
    if target.exists() and not replace:
        raise OutputExistsError(f"output directory {target} already exists",
                                "pass --force to replace it, or choose another -o")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise BundleError(f"cannot write to {parent} (a file, not a directory)", "choose another -o")
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
            shutil.copytree(copy_from, tmp, dirs_exist_ok=True)
        yield tmp
        with interrupts.deferred():
            if replace:
                if target.exists():
                    moved.append(parent / tmp.name.replace(".tmp-", ".old-", 1))  # unique, like tmp
                    os.replace(target, moved[0])
                os.replace(tmp, target)
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


def _rename_new(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, refusing a ``target`` that appeared meanwhile
    (``OutputExistsError``; ``rename`` replaces only an empty directory)."""
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise OutputExistsError(f"output directory {target} was created by another process while "
                                    "this one was writing it (left unchanged)",
                                    "pass --force to replace it, or choose another -o") from None


class AtomicFile:
    """A text file (UTF-8, ``\\n`` line ends) written through a temporary file beside ``path``
    and renamed over it by ``commit()`` (``discard()`` removes it; so does a signal, through
    ``interrupts``). Used for ``s2s translate -o`` and the Ray output file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from .errors import BadInputError

        self.path = Path(path)
        if self.path.is_dir():
            raise BadInputError(f"cannot write {self.path} (it is a directory)", "pass a file name to -o")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.tmp-", dir=self.path.absolute().parent)
        except OSError as exc:
            raise BadInputError(f"cannot write {self.path} ({exc.strerror})", "choose a writable path for -o") from None
        self.tmp = Path(tmp)
        self._token = interrupts.on_interrupt(lambda: self.tmp.unlink(missing_ok=True))
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
        os.fsync(self.file.fileno())
        self.file.close()
        with interrupts.deferred():
            os.replace(self.tmp, self.path)
            interrupts.discard(self._token)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)
        interrupts.discard(self._token)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[AtomicFile]:
    """``AtomicFile(target)``, committed when the block ends normally and discarded on any
    exception (``target`` is then left as it was); OS errors -> ``BadInputError``."""
    from .errors import BadInputError

    out = AtomicFile(target)
    try:
        yield out
        out.commit()
    except BaseException as exc:
        out.discard()
        if isinstance(exc, OSError):
            raise BadInputError(f"writing {out.path} failed ({exc.strerror or exc}); nothing was written",
                                "free disk space or choose a writable output path") from None
        raise
