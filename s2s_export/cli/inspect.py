"""``s2s inspect PATH``: what a checkpoint or a bundle holds.

A checkpoint (file): config, vocabulary sizes, tokenizer, parameter count, training meta.
A bundle (directory): format, model config, vocabularies, the IO table of each graph (name,
dtype, shape, role, batch axis), files with sizes, versions, parity, engines. Bundles are read
with the runtime's torch-free ``load_manifest`` (hashes checked unless ``--no-verify``);
checkpoints need torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import BadInputError
from .common import handle_errors


def _kv(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def _value(v: Any) -> str:
    """An importer's description value as text: dicts as ``k=v``, lists comma-separated."""
    if isinstance(v, dict):
        return _kv(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "none"
    return str(v)


def _config(d: dict[str, Any]) -> str:
    """A zoo config without the settings its attention does not read (``heads`` is multi-head
    only, ``window`` local-m/local-p only)."""
    attention = d.get("attention")
    unused = ({"heads"} if attention != "multihead" else set()) | (
        {"window"} if attention not in ("local-m", "local-p") else set())
    return _kv({k: v for k, v in d.items() if k not in unused or attention is None})


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def checkpoint_lines(path: Path, trust_pickle: bool, source_format: str | None = None
                     ) -> tuple[list[str], dict[str, Any]]:
    """A model file or directory: its format (detected unless given), architecture and what the
    importer refuses; for the zoo's checkpoints also config, sizes and training meta."""
    from ..importers import describe, detect_format

    fmt = source_format or detect_format(path)
    if fmt != "s2s":
        info = {"kind": "model", "path": str(path), **describe(path, fmt)}
        lines = [f"model {path}", f"format: {fmt}", f"architecture: {_value(info.get('architecture', '?'))}"]
        lines += [f"{k}: {_value(v)}" for k, v in info.items() if k not in ("kind", "path", "format", "architecture",
                                                                            "unsupported")]
        unsupported = info.get("unsupported") or []
        lines.append("unsupported: " + ("; ".join(map(str, unsupported)) if unsupported else "nothing (it exports)"))
        return lines, info
    from ..importers import check_weights
    from ..models import load_checkpoint

    ckpt = load_checkpoint(path, trust_pickle=trust_pickle)
    check_weights(ckpt.model, str(path))
    n_params = sum(p.numel() for p in ckpt.model.parameters())
    info = {"kind": "checkpoint", "format": "s2s", "path": str(path), "config": ckpt.config.to_dict(),
            "src_vocab_size": len(ckpt.src_vocab), "tgt_vocab_size": len(ckpt.tgt_vocab),
            "tokenizer": ckpt.tokenizer, "parameters": n_params, "meta": ckpt.meta}
    lines = [f"checkpoint {path}",
             "format: s2s (s2s-export checkpoint)",
             f"config: {_config(ckpt.config.to_dict())}",
             f"vocabularies: source {len(ckpt.src_vocab)} tokens, target {len(ckpt.tgt_vocab)} tokens; "
             f"tokenizer {ckpt.tokenizer}",
             f"parameters: {n_params:,}"]
    if ckpt.meta:
        lines.append(f"meta: {json.dumps(ckpt.meta, default=str, sort_keys=True)}")
    return lines, info


def bundle_lines(path: Path, verify: bool) -> tuple[list[str], dict[str, Any]]:
    from ..bundle import load_manifest

    m = load_manifest(path, verify=verify)
    lines = [f"bundle {path} (format {m.format_version}; hashes {'verified' if verify else 'not checked'})",
             f"model: {_config(m.model_config)}",
             f"vocabularies: source {len(m.src_vocab)} tokens, target {len(m.tgt_vocab)} tokens; "
             f"tokenizer {m.tokenizer}; special ids: source {_kv(m.src_specials.as_dict())}, target "
             f"{_kv(m.tgt_specials.as_dict())}",
             f"framing: {_kv(m.framing.model_dump())}; masked in the step graph (never generated): "
             + (", ".join(f"{i} {m.tgt_vocab[i]}" for i in m.io.blocked) or "none"),
             f"search defaults: {_kv(m.search.to_dict())}",
             f"top-K {m.topk}, opset {m.opset}, max batch {m.max_batch}, max src_len {m.max_src_len}",
             f"versions: {_kv(m.versions)}"]
    for precision, graphs in m.graphs.items():
        lines.append(f"graphs [{precision}]: " + ", ".join(f"{k} {v}" for k, v in graphs.items()))
    for spec in (m.io.encoder, m.io.step):
        rows = [["name", "dtype", "shape", "role", "batch axis"]]
        for kind, tensors in (("in", spec.inputs), ("out", spec.outputs)):
            for t in tensors:
                shape = "[" + ", ".join(str(a) for a in t.shape) + "]"
                rows.append([f"{kind} {t.name}", t.dtype, shape, t.role, str(t.batch_axis)])
        lines.append(f"{spec.name}:")
        lines += _table(rows)
    lines.append("files:")
    lines += _table([[name, f"{(path / name).stat().st_size:,} B" if (path / name).is_file() else "missing",
                      digest[:16]] for name, digest in m.files.items()] or [["(none)"]])
    p = m.parity
    if not p:
        lines.append("parity: not checked")
    else:
        lines.append(f"parity ({p.get('backend')}, atol {p.get('atol')}, rtol {p.get('rtol')}): "
                     f"{'passed' if p.get('passed') else 'FAILED'}; max abs {p.get('max_abs', 0):.2e}, "
                     f"max rel {p.get('max_rel', 0):.2e}")
        rows = [["output", "max abs", "max rel", "ok"]]
        rows += [[k, f"{r['max_abs']:.2e}", f"{r['max_rel']:.2e}", "yes" if r["ok"] else "NO"]
                 for k, r in p.get("outputs", {}).items()]
        lines += _table(rows)
        g = p.get("greedy")
        if g:
            lines.append(f"  greedy: {g['identical']}/{g['sentences']} sentences token-identical")
    for e in m.engines:
        lines.append(f"engine: {_kv(e)}")
    return lines, {"kind": "bundle", "path": str(path), **m.to_dict()}


@handle_errors
def inspect_command(
    path: Path = typer.Argument(..., help="a checkpoint (model.pt) or a bundle directory"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="check the bundle's sha256 hashes"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow checkpoints with pickled objects"),
    source_format: Optional[str] = typer.Option(None, "--from", help="the model's format (default: detected)"),
) -> None:
    """Show what a model (checkpoint, Joey NMT directory, g2p_en npz) or a bundle holds."""
    from ..bundle import MANIFEST

    if path.is_dir() and (path / MANIFEST).exists():
        lines, info = bundle_lines(path, verify)
    elif path.exists():
        lines, info = checkpoint_lines(path, trust_pickle, source_format)
    else:
        raise BadInputError(f"{path} does not exist", "pass a checkpoint file or a bundle directory")
    if as_json:
        from .textio import dumps

        typer.echo(dumps(info, indent=1))  # strict JSON: a non-finite figure is null
    else:
        for line in lines:
            typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
