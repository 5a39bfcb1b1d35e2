"""Text in, text out, as the model was trained (torch-free).

``TextProcessor(side, bundle_dir)`` turns text into tokens and tokens back into text for one side
of a bundle, from its ``conventions.TextSide``: normalisation of input text (lowercase, Unicode
NFC/NFKC), then the side's tokenizer, one module each (the library its users already use, never
re-implemented; each imported only when a bundle uses it):

========================== ============================ ===================================
kind (CLI spec)            module                       library
========================== ============================ ===================================
``char``, ``word``,        ``simple.py``                (none)
``pretokenized``
``sentencepiece:FILE``     ``sentencepiece_tok.py``     ``sentencepiece``
``bpe:CODES``              ``bpe.py``                   ``subword-nmt`` (``@@ `` joiner)
``hf:FILE``                ``hf.py``                    ``tokenizers`` (Hugging Face)
========================== ============================ ===================================

``parse_spec`` reads a CLI spec (``--src-tokenizer``/``--tgt-tokenizer``).
"""

from .processor import TextProcessor, Tokenizer, load_tokenizer, normalize
from .spec import parse_spec, parse_normalize

__all__ = ["TextProcessor", "Tokenizer", "load_tokenizer", "normalize", "parse_normalize", "parse_spec"]
