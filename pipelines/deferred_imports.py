"""Defer importing a heavy module until something uses it, for the CLI's start-up.

Beam 2.77's ``apache_beam.ml.inference.model_manager`` (imported by every RunInference
and MLTransform pipeline) runs ``import torch`` at import time, and only touches it
to free CUDA memory. Importing torch costs ~2.3 s of CPU on these machines, paid by
every ``beam-rag`` command, including the ONNX builds and an unchanged rebuild that
never runs a model (~10% of its wall time). :func:`defer_import` puts a stand-in in
``sys.modules``: ``import torch`` binds it, and the first attribute read (``torch.nn``,
``torch.cuda``, ``import torch.nn``) imports the real module and reads from it, so a
run that uses torch gets the same module, ~2 s later, and one that does not never
pays.

Only the console entry point calls this, never a library import: a process that
embeds ``pipelines`` keeps the interpreter's normal import behaviour.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["DeferredModule", "defer_import"]


class DeferredModule(types.ModuleType):
    """Stands in for a module in ``sys.modules`` until its first attribute read."""

    def __init__(self, name: str, spec: Any) -> None:
        super().__init__(name)
        self.__spec__ = spec  # `import name` reads spec._initializing: keep that read from loading
        self.__loader__ = spec.loader
        object.__setattr__(self, "_deferred_lock", threading.Lock())
        object.__setattr__(self, "_deferred_module", None)

    def _load(self) -> types.ModuleType:
        with object.__getattribute__(self, "_deferred_lock"):
            module = object.__getattribute__(self, "_deferred_module")
            if module is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                module = importlib.import_module(self.__name__)
                object.__setattr__(self, "_deferred_module", module)
            return module

    def __getattr__(self, attr: str) -> Any:  # only for names the stand-in does not hold
        return getattr(self._load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        # The import system sets a submodule on its parent (`torch.nn`): give it to the real one.
        if attr in ("__spec__", "__loader__"):
            super().__setattr__(attr, value)
        else:
            setattr(self._load(), attr, value)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    @property
    def loaded(self) -> bool:
        """Whether the real module has been imported (for tests and diagnostics)."""
        return object.__getattribute__(self, "_deferred_module") is not None


def defer_import(name: str) -> bool:
    """Put a :class:`DeferredModule` for top-level module ``name`` in ``sys.modules``.

    Returns False, changing nothing, when ``name`` is already imported, is not a
    top-level module, or is not installed (then ``import name`` fails as it would).
    """
    if "." in name or name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return False
    sys.modules[name] = DeferredModule(name, spec)
    return True
