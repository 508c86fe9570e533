"""beam-rag core: the embedding, storage, retrieval, prompt and generation parts
shared by the knowledge-base build and the batch question-answering pipelines.

Importing this package is cheap: heavy libraries (torch, transformers, Beam IO)
load only in the modules that need them.
"""

__version__ = "0.1.0"
