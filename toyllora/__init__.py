"""toyllora: the claims of the ALLoRA paper (arXiv 2410.09692) put to a measured test on toy models.

Modules: ``conventions`` (shapes and the scale), ``config`` (LoraConfig), ``lora`` (the LoRA family),
``allora`` (ALLoRA's custom VJP and its family), ``mora`` (MoRA) and ``adalora`` (AdaLoRA, its rank
allocator) as further adapter kinds, ``optim`` (LoRA+, scaled GD), ``models``, ``data``, ``train`` (the compiled engine),
``registry`` (claims), ``cli``.
"""

__version__ = "0.1.0"

import os as _os

if _os.environ.get("TOYLLORA_COMPILE_CACHE") is not None:  # opt-in, see toyllora.compile_cache
    from toyllora import compile_cache as _compile_cache

    _compile_cache.from_environment()
