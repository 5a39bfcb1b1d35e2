"""Joey NMT 2.3 recurrent models: a model directory (``config.yaml``, ``src_vocab.txt``,
``trg_vocab.txt``, ``best.ckpt``) or a ``.ckpt`` inside one -> ``ImportedModel``.

Read without Joey: ``config.yaml`` with ``yaml.safe_load``; the vocabularies as Joey 2.3 builds
them (``vocabulary.py`` ``Vocabulary``: the special tokens of ``data.special_symbols``, then its
``lang_tags``, then the file's lines (``str.splitlines``), each token once; id = position); a
line ``str.splitlines`` would break (U+2028, U+0085, CR...) is refused naming it; the values
of ``config.yaml`` the importer reads are validated first (``joeynmt_config``); the
checkpoint with ``torch.load(weights_only=True)``, its ``model_state`` only. The module is
``models.joeynmt.JoeyRecurrent``.

Conventions (Joey 2.3 ``datasets.py`` ``collate_fn``, ``search.py``, ``config.py``
``parse_test_args``): sources end with ``</s>``, the decoder starts from ``<s>``; the search
style is ``joeynmt``; the ``testing`` section gives the defaults: ``beam_size`` (1),
``n_best`` (1), ``beam_alpha`` (-1; the obsolete ``alpha`` wins when present; Joey applies the
GNMT penalty only when it is > 0), ``max_output_length`` (unset or negative: int(1.5 x the
longest source of the batch)), ``generate_unk`` (True). ``min_output_length`` is always 1:
Joey 2.3's ``prediction.py`` ``predict`` does not pass the configured value to ``search``
(measured: a model configured with 2 outputs one token and ``</s>``). ``<s>``,
``<pad>``, a separator token and language tags are never generated.

Refused (``CheckpointError``, one line each): Transformer encoders or decoders (Joey's decoder
``type`` defaults to ``transformer``), attention other than ``bahdanau``/``luong``, an
activation other than ``tanh`` (Joey 2.3's recurrent decoder fails with the others), a
unidirectional encoder (Joey 2.3's ``RecurrentEncoder.forward`` fails on it), vocabulary files
that do not match the checkpoint's embedding or output rows, and tensors that do not fit.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ..conventions import Framing, SearchDefaults, Specials, Text, TextSide
from ..errors import CheckpointError, Problem, one_line, unreadable_as_checkpoint_error
from ..text.spec import bundle_name
from .base import ImportedModel

SPACE = "\u2581"  # Joey's BasicTokenizer.SPACE_ESCAPE: a space at char level (sentencepiece's ▁)

FORMAT = "joeynmt"
CONFIG, SRC_VOCAB, TGT_VOCAB, BEST = "config.yaml", "src_vocab.txt", "trg_vocab.txt", "best.ckpt"
SPECIAL_DEFAULTS = {"unk": ("<unk>", 0), "pad": ("<pad>", 1), "bos": ("<s>", 2), "eos": ("</s>", 3)}
FIX_DIR = "pass a Joey NMT model directory (config.yaml, src_vocab.txt, trg_vocab.txt, best.ckpt) or a .ckpt in one"


# ---------------------------------------------------------------------- files
def _paths(path: Path) -> tuple[Path, Path]:
    """(model directory, checkpoint file) of a directory or a .ckpt path."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path} does not exist", FIX_DIR)
    if path.is_dir():
        return path, path / BEST
    return path.parent, path


def detect(path: Path) -> bool:
    """A Joey model directory or a ``.ckpt`` file beside ``config.yaml`` and both vocab files."""
    path = Path(path)
    if not path.is_dir() and path.suffix != ".ckpt":
        return False
    if not path.exists():
        return False
    model_dir, ckpt = _paths(path)
    named = all((model_dir / f).is_file() for f in (CONFIG, SRC_VOCAB, TGT_VOCAB))
    return named and (ckpt.exists() or any(model_dir.glob("*.ckpt")))


def read_config(model_dir: Path) -> dict[str, Any]:
    """``config.yaml`` as a dict (``CheckpointError`` when missing or not YAML)."""
    import yaml

    f = model_dir / CONFIG
    if not f.is_file():
        raise CheckpointError(f"{model_dir} has no {CONFIG}", FIX_DIR)
    try:
        cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{f} is not valid YAML ({one_line(exc, 160)})",
                              "restore the config.yaml Joey NMT wrote into the model directory") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise CheckpointError(f"{f} has no 'model' section, so it is not a Joey NMT config",
                              "restore the config.yaml Joey NMT wrote into the model directory")
    from .joeynmt_config import validate_config

    validate_config(cfg, str(f))  # every value read below has its type and range checked
    return cfg


def _specials_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    return _section(_section(cfg, "data"), "special_symbols")


def read_vocab(file: Path, cfg: dict[str, Any]) -> tuple[list[str], Specials, list[int]]:
    """Joey 2.3's vocabulary from ``file``: (tokens in id order, special ids, ids never generated
    beyond pad/bos: separator and language tags)."""
    if not file.is_file():
        raise CheckpointError(f"{file.parent} has no {file.name}", FIX_DIR)
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{file} is not UTF-8 text ({one_line(exc, 120)})",
                              "restore the vocabulary file Joey NMT wrote") from None
    broken = _broken_lines(file, text)
    if broken:
        raise CheckpointError(broken)
    # helpers.read_list_from_file: read_text (universal newlines), then str.splitlines
    lines = [line.rstrip("\n") for line in text.replace("\r\n", "\n").splitlines()]
    sym = _specials_cfg(cfg)
    names = {k: str(sym.get(f"{k}_token", tok)) for k, (tok, _) in SPECIAL_DEFAULTS.items()}
    sep = sym.get("sep_token")
    tags = [str(t) for t in sym.get("lang_tags", []) or []]
    head = [names["unk"], names["pad"], names["bos"], names["eos"]] + ([str(sep)] if sep else [])
    tokens: list[str] = []
    seen: set[str] = set()
    for t in head + tags + lines:  # Vocabulary.add_tokens: each token once, first place wins
        if t not in seen:
            seen.add(t)
            tokens.append(t)
    ids = {k: tokens.index(names[k]) for k in names}
    for k, (_, default) in SPECIAL_DEFAULTS.items():
        want = sym.get(f"{k}_id", default)
        if want != ids[k]:
            raise CheckpointError(f"{file}: {names[k]!r} is id {ids[k]} but config.yaml says {k}_id {want}",
                                  "use the vocabulary files and config.yaml of one Joey NMT model")
    blocked = ([tokens.index(str(sep))] if sep else []) + [tokens.index(t) for t in tags]
    return tokens, Specials(**ids), blocked


# characters str.splitlines breaks a line at, besides "\n" (and "\r", which read_text's universal
# newlines already turns into one): Joey's reader splits a token holding one into several lines
_LINE_BREAKS = {"\r": "CR", "\v": "U+000B", "\f": "U+000C", "\x1c": "U+001C", "\x1d": "U+001D", "\x1e": "U+001E",
                "\x85": "U+0085 NEXT LINE", "\u2028": "U+2028 LINE SEPARATOR", "\u2029": "U+2029 PARAGRAPH SEPARATOR"}


def _broken_lines(file: Path, text: str) -> list[Problem]:
    """One ``Problem`` per line (at most 3, then a count) holding a character Joey NMT 2.3's
    vocabulary reader (helpers.py ``read_list_from_file``: ``read_text().splitlines()``) breaks
    the line at, so that the token becomes empty or several tokens (a CRLF line end is fine)."""
    out = []
    fix = ("remove that line or character from the file: Joey NMT 2.3 splits the line there too, so the "
           "token never matched the model's ids")
    found = [(n, line) for n, line in enumerate(text.split("\n"), 1)
             if any(ch in _LINE_BREAKS for ch in line.removesuffix("\r"))]
    for n, line in found[:3]:
        names = sorted({_LINE_BREAKS[ch] for ch in line.removesuffix("\r") if ch in _LINE_BREAKS})
        out.append(Problem(f"{file}: line {n} ({line!r}) holds {', '.join(names)}, where Joey NMT's vocabulary "
                           "reader (str.splitlines) breaks the line", fix))
    if len(found) > 3:
        out.append(Problem(f"{file}: {len(found) - 3} more lines hold such characters", fix))
    return out


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's ``model_state`` (weights only: no code from the file runs)."""
    import torch

    if ckpt.is_symlink() and not ckpt.exists():
        raise CheckpointError(f"{ckpt} is a link to {ckpt.readlink()}, which does not exist",
                              "pass one of the directory's <step>.ckpt files")
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt} does not exist",
                              "pass a model directory with best.ckpt, or one of its .ckpt files")
    with unreadable_as_checkpoint_error(ckpt, "pass a complete checkpoint written by Joey NMT"):
        try:
            data = torch.load(ckpt, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(f"{ckpt} holds objects a weights-only load refuses ({one_line(exc, 120)})",
                                  "pass a checkpoint written by Joey NMT 2.3") from None
    state = data.get("model_state") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt} has no 'model_state', so it is not a Joey NMT checkpoint",
                              "pass a checkpoint written by Joey NMT 2.3")
    return state


# ---------------------------------------------------------------------- architecture
def _section(cfg: Any, key: str) -> dict[str, Any]:
    """``cfg[key]`` when it is a dict, else {} (a config with the section left out)."""
    d = cfg.get(key) if isinstance(cfg, dict) else None
    return d if isinstance(d, dict) else {}


def unsupported(cfg: dict[str, Any]) -> list[Problem]:
    """What the module cannot reproduce, by name (empty: supported)."""
    m = cfg["model"]
    enc, dec = _section(m, "encoder"), _section(m, "decoder")
    out: list[Problem] = []
    fix = "only Joey NMT's recurrent (GRU/LSTM) models can be exported"
    if enc.get("type", "recurrent") == "transformer":
        out.append(Problem("a Transformer encoder (model.encoder.type: transformer) is not supported", fix))
    if dec.get("type", "transformer") == "transformer":
        out.append(Problem("a Transformer decoder (model.decoder.type is transformer, Joey's default) "
                           "is not supported", fix))
    if out:
        return out
    if dec.get("attention", "bahdanau") not in ("bahdanau", "luong"):
        out.append(Problem(f"attention {dec.get('attention')!r} is not supported (Joey NMT has bahdanau and luong)",
                           "use a model trained with bahdanau or luong attention"))
    for name, d in (("encoder", enc), ("decoder", dec)):
        if d.get("activation", "tanh") != "tanh":
            out.append(Problem(f"model.{name}.activation {d.get('activation')!r} is not supported (Joey NMT 2.3's "
                               "recurrent decoder only runs with tanh)", "use a model trained with activation tanh"))
    if not enc.get("bidirectional", True):
        out.append(Problem("a unidirectional recurrent encoder (bidirectional: false) is not supported "
                           "(Joey NMT 2.3's RecurrentEncoder fails on it too)", "use a bidirectional encoder"))
    return out


def architecture(cfg: dict[str, Any], src_size: int, tgt_size: int) -> Any:
    """``JoeyArch`` from the config's model section; sizes cross-checked with the tensors later."""
    from ..models.joeynmt import JoeyArch

    m = cfg["model"]
    enc, dec = _section(m, "encoder"), _section(m, "decoder")
    src_e = _section(enc, "embeddings")
    tgt_e = src_e if m.get("tied_embeddings", False) else _section(dec, "embeddings")
    try:
        return JoeyArch(
            src_vocab_size=src_size, tgt_vocab_size=tgt_size,
            src_emb=int(src_e.get("embedding_dim", 64)), tgt_emb=int(tgt_e.get("embedding_dim", 64)),
            src_scale=bool(src_e.get("scale", False)), tgt_scale=bool(tgt_e.get("scale", False)),
            enc_cell="gru" if enc.get("rnn_type", "gru") == "gru" else "lstm",
            enc_hidden=int(enc.get("hidden_size", 1)), enc_layers=int(enc.get("num_layers", 1)),
            bidirectional=bool(enc.get("bidirectional", True)),
            dec_cell="gru" if dec.get("rnn_type", "gru") == "gru" else "lstm",
            dec_hidden=int(dec.get("hidden_size", 0)), dec_layers=int(dec.get("num_layers", 1)),
            attention=str(dec.get("attention", "bahdanau")), input_feeding=bool(dec.get("input_feeding", True)),
            init_hidden={"bridge": "bridge", "last": "last"}.get(dec.get("init_hidden", "bridge"), "zero"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config.yaml has a malformed model section ({one_line(exc, 120)})",
                              "restore the config.yaml Joey NMT wrote") from None


def check_vocab_rows(state: dict[str, Any], src_size: int, tgt_size: int) -> list[Problem]:
    """Joey's checkpoint has no vocabulary: the files must have as many tokens as the embedding
    and output-layer rows."""
    out = []
    fix = "use the src_vocab.txt and trg_vocab.txt written with this checkpoint"
    for key, size, name in (("src_embed.lut.weight", src_size, SRC_VOCAB),
                            ("trg_embed.lut.weight", tgt_size, TGT_VOCAB),
                            ("decoder.output_layer.weight", tgt_size, TGT_VOCAB)):
        t: Any = state.get(key)
        rows = int(t.shape[0]) if hasattr(t, "shape") and len(t.shape) == 2 else None
        if rows is not None and rows != size:
            out.append(Problem(f"{name} has {size} tokens but the checkpoint's {key} has {rows} rows", fix))
    return out


# ---------------------------------------------------------------------- conventions
def search_defaults(cfg: dict[str, Any], tgt: Specials, blocked: list[int], warnings: list[str]) -> SearchDefaults:
    """Joey's ``testing`` section (config.py ``parse_test_args`` defaults) as ``SearchDefaults``."""
    t = _section(cfg, "testing")
    alpha = float(t.get("alpha", t.get("beam_alpha", -1)))
    max_len = int(t.get("max_output_length", -1))
    if max_len == 0:
        raise CheckpointError("config.yaml testing.max_output_length is 0: Joey NMT would decode nothing",
                              "set it to a positive length, or remove it (1.5 x the longest source)")
    never = [tgt.bos, tgt.pad] + blocked + ([] if t.get("generate_unk", True) else [tgt.unk])
    if t.get("min_output_length", 1) != 1:
        warnings.append(f"config.yaml testing.min_output_length {t['min_output_length']} is ignored, as Joey NMT "
                        "2.3 ignores it (prediction.py does not pass it to the search): EOS is blocked at the first "
                        "step only")
    for key, active in (("no_repeat_ngram_size", 0), ("repetition_penalty", 1)):  # search.py: on above these
        if isinstance(t.get(key), (int, float)) and t[key] > active:
            warnings.append(f"config.yaml testing.{key} {t[key]} is not reproduced: outputs may differ from Joey NMT's")
    try:
        return SearchDefaults(
            style="joeynmt", beam_size=int(t.get("beam_size", 1)), n_best=int(t.get("n_best", 1)),
            length_penalty="gnmt" if alpha > 0 else "none", alpha=alpha if alpha > 0 else 0.0,
            min_length=1,  # Joey 2.3's predict() never passes min_output_length on: search's default 1
            max_length=max_len if max_len > 0 else SearchDefaults().max_length,
            max_length_batch_factor=None if max_len > 0 else 1.5,
            never_generate=tuple(sorted({i for i in never if i is not None})),
            batch_size=int(t.get("batch_size", 64)),  # Joey's test batches: its length rule depends on them
            batch_type="token" if str(t.get("batch_type", "sentence")).lower() == "token" else "sentence")
    except ValueError as exc:
        raise CheckpointError(f"config.yaml has an invalid testing section ({one_line(exc, 160)})",
                              "fix beam_size/n_best/min_output_length there") from None


def text_of(cfg: dict[str, Any], model_dir: Path, warnings: list[str]
            ) -> tuple[Text, dict[str, Path | bytes], dict[str, Any]]:
    """The bundle's text processing for the config's ``data.src/trg`` (joeynmt 2.3
    tokenizers.py): ``level: char`` is every character with a space as the token ``▁``
    (``BasicTokenizer.SPACE_ESCAPE``), ``word`` splits at spaces, ``bpe`` is the SentencePiece
    model (``tokenizer_type: sentencepiece``, ``tokenizer_cfg.model_file``) or the subword-nmt
    codes (``tokenizer_cfg.codes``, ``separator``), looked for in the model directory (where Joey
    copies it) when the config's path does not exist; ``lowercase`` is applied. Returns the
    text, the tokenizer files to copy into the bundle, and what the config says (for the
    manifest). ``CheckpointError`` when a subword file is missing."""
    data = _section(cfg, "data")
    sides: dict[str, TextSide] = {}
    files: dict[str, Path | bytes] = {}
    info: dict[str, Any] = {}
    for side, ours in (("src", "src"), ("trg", "tgt")):
        d = _section(data, side)
        level = str(d.get("level", "word"))
        tcfg = _section(d, "tokenizer_cfg")
        info[side] = {k: d[k] for k in ("level", "lowercase", "normalize", "tokenizer_type", "tokenizer_cfg")
                      if k in d}
        lowercase = bool(d.get("lowercase", False))
        if level == "char":
            sides[ours] = TextSide(kind="char", space=SPACE, lowercase=lowercase)
        elif level == "bpe":
            # tokenizers.py _build_tokenizer: tokenizer_type, else bpe_type, else sentencepiece
            kind = "sentencepiece" if d.get("tokenizer_type", d.get("bpe_type", "sentencepiece")) == "sentencepiece" \
                else "bpe"
            key = "model_file" if kind == "sentencepiece" else "codes"
            path = _find_file(tcfg.get(key), model_dir, f"data.{side}.tokenizer_cfg.{key}")
            name = bundle_name(ours, kind, path)
            files[name] = path
            sides[ours] = TextSide(kind=kind, file=name, lowercase=lowercase,  # type: ignore[arg-type]
                                   joiner=str(tcfg.get("separator", "@@")) if kind == "bpe" else None)
        else:
            sides[ours] = TextSide(kind="word", lowercase=lowercase)
        if d.get("normalize") or tcfg.get("pretokenizer", "none") != "none":
            warnings.append(f"data.{side} normalises or pre-tokenizes (moses) in Joey NMT: the bundle does not")
    return Text(src=sides["src"], tgt=sides["tgt"]), files, info


def _find_file(configured: Any, model_dir: Path, key: str) -> Path:
    """A tokenizer file named in the config: as configured, else its name in the model directory."""
    if not configured:
        raise CheckpointError(f"config.yaml names no {key}", "add the subword model's path to config.yaml")
    path = Path(str(configured))
    for candidate in (path, model_dir / path.name):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{key} {path} does not exist, nor {path.name} in {model_dir}",
                          "copy the subword model into the model directory")


# ---------------------------------------------------------------------- entry points
def load(path: Path, trust_pickle: bool = False) -> ImportedModel:
    """The model of a Joey NMT 2.3 directory or ``.ckpt`` (``trust_pickle`` is ignored: a Joey
    checkpoint needs no pickled objects). ``CheckpointError`` names every refused feature."""
    from ..models.joeynmt import JoeyRecurrent, load_joey_state

    model_dir, ckpt = _paths(Path(path))
    cfg = read_config(model_dir)
    problems = unsupported(cfg)
    if problems:
        raise CheckpointError(problems)
    src_tokens, src_sp, _ = read_vocab(model_dir / SRC_VOCAB, cfg)
    tgt_tokens, tgt_sp, blocked = read_vocab(model_dir / TGT_VOCAB, cfg)
    state = read_checkpoint(ckpt)
    problems = check_vocab_rows(state, len(src_tokens), len(tgt_tokens))
    if problems:
        raise CheckpointError(problems)
    arch = architecture(cfg, len(src_tokens), len(tgt_tokens))
    model = JoeyRecurrent(arch)
    bad = load_joey_state(model, state)
    if bad:
        raise CheckpointError([Problem(f"{ckpt.name}: {b}", "use the config.yaml written with this checkpoint")
                               for b in bad])
    for side, sp in (("src", src_sp), ("tgt", tgt_sp)):
        for name, value in sp.as_dict().items():
            setattr(model, f"{side}_{name}_id", value)
    warnings: list[str] = []
    search = search_defaults(cfg, tgt_sp, blocked, warnings)
    text, text_files, tok_info = text_of(cfg, model_dir, warnings)
    testing = _section(cfg, "testing")
    model_config = {"format": FORMAT, "joeynmt_version": str(cfg.get("joeynmt_version", "")),
                    "checkpoint": ckpt.resolve().name, "architecture": model.config, "tokenizers": tok_info,
                    # Joey decodes consecutive lines in batches of this size; with max_output_length
                    # unset the length limit depends on the batch (max_length_batch_factor)
                    "batch": {"batch_size": testing.get("batch_size", 64),
                              "batch_type": testing.get("batch_type", "sentence")}}
    return ImportedModel(model=model.eval(), src_vocab=src_tokens, tgt_vocab=tgt_tokens, tokenizer=text.tokenizer,
                         text=text, text_files=text_files,
                         framing=Framing(prepend_bos=False, append_eos=True, decoder_start=tgt_sp.bos),
                         search=search, model_config=model_config, format=FORMAT, warnings=warnings)


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def describe(path: Path) -> dict[str, Any]:
    """What a Joey model directory holds, from its config and vocabularies (no tensors loaded)."""
    model_dir, ckpt = _paths(Path(path))
    cfg = read_config(model_dir)
    m = cfg["model"]
    enc, dec = _section(m, "encoder"), _section(m, "decoder")
    arch = (f"{enc.get('type', 'recurrent')} {enc.get('rnn_type', 'gru')} encoder "
            f"({_count(enc.get('num_layers', 1), 'layer')}, {enc.get('hidden_size')} units, "
            f"{'bidirectional' if enc.get('bidirectional', True) else 'unidirectional'}), "
            f"{dec.get('type', 'transformer')} {dec.get('rnn_type', 'gru')} decoder "
            f"({_count(dec.get('num_layers', 1), 'layer')}, "
            f"{dec.get('hidden_size')} units, {dec.get('attention', 'bahdanau')} attention, input feeding "
            f"{'on' if dec.get('input_feeding', True) else 'off'}, init_hidden {dec.get('init_hidden', 'bridge')})")
    sizes: dict[str, int | str] = {}
    for name in (SRC_VOCAB, TGT_VOCAB):
        try:
            sizes[name] = len(read_vocab(model_dir / name, cfg)[0])
        except CheckpointError as exc:
            sizes[name] = str(exc)
    return {"format": FORMAT, "architecture": arch, "checkpoint": str(ckpt), "vocab_sizes": sizes,
            "tied_embeddings": bool(m.get("tied_embeddings", False)),
            "tied_softmax": bool(m.get("tied_softmax", False)),
            "testing": cfg.get("testing", {}), "unsupported": [str(p) for p in unsupported(cfg)]}


__all__ = ["FORMAT", "describe", "detect", "load"]
