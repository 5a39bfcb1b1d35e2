"""The bundle: a directory of graphs + ``manifest.json`` (torch-free; the runtime reads it).

Layout::

    bundle/
      manifest.json
      encoder.onnx, decoder_step.onnx            fp32 (always)
      encoder.fp16.onnx, decoder_step.fp16.onnx  mixed precision (TensorRT path)
      encoder.int8.onnx, decoder_step.int8.onnx  dynamic INT8 (CPU path)
      *.plan, timing.cache                       TensorRT engines (built on the target)

``manifest["graphs"][precision] = {"encoder": file, "decoder_step": file}``. Every file is listed
with its sha256 in ``manifest["files"]``; loading refuses a mismatch. Writes are atomic
(``atomic_dir``): a temporary directory beside the target, renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import BundleError, OutputExistsError
from .graphio import BundleIO

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPHS = ("encoder", "decoder_step")  # the two graphs of every precision (keys of graphs[precision])
GREEDY = "greedy"  # optional third key: the fused greedy graph (export/greedy.py; ONNX Runtime only)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_name(name: object) -> None:
    """A bundle file name: a relative path inside the bundle (no absolute path, no ``..``)."""
    if not isinstance(name, str) or not name or name == MANIFEST:
        raise BundleError(f"manifest.json names an invalid bundle file {name!r}", "re-export the bundle")
    if Path(name).is_absolute() or "\\" in name or ".." in Path(name).parts:
        raise BundleError(f"manifest.json names a file outside the bundle ({name!r})",
                          "re-export the bundle; never load a bundle whose manifest points elsewhere")


def _check_file_tables(d: dict[str, Any]) -> None:
    """Types of ``files``/``graphs``/``engines`` and every file name they hold (BundleError)."""
    files, graphs, engines = d.get("files", {}), d.get("graphs", {}), d.get("engines", [])
    ok = (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())
          and isinstance(graphs, dict) and all(isinstance(g, dict) for g in graphs.values())
          and isinstance(engines, list) and all(isinstance(e, dict) for e in engines))
    if not ok:
        raise BundleError("manifest.json is malformed (files, graphs or engines has the wrong type)",
                          "re-export the bundle with s2s-export")
    for name in [*files, *(f for g in graphs.values() for f in g.values()),
                 *(e["file"] for e in engines if "file" in e)]:
        _check_name(name)


@dataclass
class Manifest:
    """Everything the runtime needs to know about a bundle (``manifest.json``)."""

    model_config: dict[str, Any]
    src_vocab: list[str]
    tgt_vocab: list[str]
    specials: dict[str, int]
    tokenizer: str
    io: BundleIO
    opset: int
    max_batch: int
    max_src_len: int
    graphs: dict[str, dict[str, str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    engines: list[dict[str, Any]] = field(default_factory=list)
    trt_compat: list[str] = field(default_factory=list)  # TensorRT-compatibility problems found
    format_version: int = FORMAT_VERSION

    @property
    def topk(self) -> int:
        return self.io.topk

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version, "model_config": self.model_config,
            "src_vocab": self.src_vocab, "tgt_vocab": self.tgt_vocab, "specials": self.specials,
            "tokenizer": self.tokenizer, "io": self.io.to_dict(), "topk": self.topk,
            "opset": self.opset, "max_batch": self.max_batch, "max_src_len": self.max_src_len,
            "graphs": self.graphs, "files": self.files, "versions": self.versions,
            "parity": self.parity, "engines": self.engines, "trt_compat": self.trt_compat,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        version = d.get("format_version")
        if not isinstance(version, int):
            raise BundleError("manifest.json has no format_version", "re-export the bundle with s2s-export")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is newer than this s2s-export reads ({FORMAT_VERSION})",
                "upgrade s2s-export (pip install -U s2s-export) or re-export with this version")
        _check_file_tables(d)
        try:
            return cls(
                model_config=d["model_config"], src_vocab=list(d["src_vocab"]),
                tgt_vocab=list(d["tgt_vocab"]), specials=dict(d["specials"]),
                tokenizer=d["tokenizer"], io=BundleIO.from_dict(d["io"]), opset=int(d["opset"]),
                max_batch=int(d["max_batch"]), max_src_len=int(d["max_src_len"]),
                graphs=d.get("graphs", {}), files=d.get("files", {}), versions=d.get("versions", {}),
                parity=d.get("parity", {}), engines=d.get("engines", []),
                trt_compat=list(d.get("trt_compat", [])), format_version=version)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            raise BundleError(f"manifest.json is malformed ({type(exc).__name__}: {exc})",
                              "re-export the bundle with s2s-export") from None

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Hash every file listed in ``graphs``/``engines``/``files`` and write the manifest."""
        directory = Path(directory)
        names = set(self.files)
        names.update(f for g in self.graphs.values() for f in g.values())
        names.update(e["file"] for e in self.engines if "file" in e)
        self.files = {n: sha256_file(directory / n) for n in sorted(names)}
        (directory / MANIFEST).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


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
    if verify:
        hashed = set(manifest.files)
        used = [f for g in manifest.graphs.values() for f in g.values()]
        used += [e["file"] for e in manifest.engines if "file" in e]
        for name in used:
            if name not in hashed:
                raise BundleError(f"bundle file {name} has no sha256 in the manifest (modified manifest)",
                                  "re-export the bundle")
        for name, digest in manifest.files.items():
            f = directory / name
            if not f.is_file():
                raise BundleError(f"bundle file {name} is missing", "re-export the bundle")
            if sha256_file(f) != digest:
                raise BundleError(f"bundle file {name} does not match its sha256 in the manifest "
                                  "(modified or corrupted)", "re-export the bundle")
    return manifest


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], force: bool = False,
               copy_from: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    ``copy_from`` seeds the temporary directory with an existing bundle (used to add files to a
    bundle: quantize, build-engines). On any exception (KeyboardInterrupt included) the temporary
    directory is removed and ``target`` is left as it was."""
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"output {target} exists and is not a directory", "choose another -o")
    if target.exists() and not force and copy_from is None:
        raise OutputExistsError(f"output directory {target} already exists",
                                "pass --force to replace it, or choose another -o")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a bundle gets the usual mode
    except OSError as exc:
        raise BundleError(f"cannot write to {parent} ({exc.strerror})",
                          "choose a writable output directory") from None
    old: Path | None = None
    committed = False
    try:
        if copy_from is not None:
            shutil.copytree(copy_from, tmp, dirs_exist_ok=True)
        yield tmp
        if target.exists():
            old = parent / tmp.name.replace(".tmp-", ".old-", 1)  # unique, like tmp
            os.replace(target, old)
        os.replace(tmp, target)
        committed = True
    except BaseException as exc:
        # interrupted between the two renames: put the previous bundle back
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise BundleError(f"writing {target} failed ({exc.strerror or exc}); nothing was changed",
                              "free disk space or choose a writable output directory") from None
        raise
    finally:
        if committed and old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Any]:
    """Yield a text file (UTF-8, ``\\n`` line ends) open on a temporary file beside ``target``;
    on success it is renamed to ``target`` (replacing it), on any exception it is removed and
    ``target`` is left as it was. OS errors (unwritable folder, disk full) -> ``BadInputError``."""
    from .errors import BadInputError

    target = Path(target).absolute()
    if target.is_dir():
        raise BadInputError(f"output {target} is a directory", "pass a file path to -o")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; an output file gets the usual mode
    except OSError as exc:
        raise BadInputError(f"cannot write to {target.parent} ({exc.strerror})", "choose a writable output path") from None
    tmp = Path(name)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BadInputError(f"writing {target} failed ({exc.strerror or exc}); nothing was written",
                                "free disk space or choose a writable output path") from None
        raise
