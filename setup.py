"""Shim for Beam's ``--setup_file ./setup.py`` (Dataflow workers without the beam-rag image).

Beam builds the sdist it ships to workers with ``python -m build`` when the ``build``
package is installed, and with ``python setup.py sdist`` otherwise; this file makes the
second path work. Everything about the package is declared in pyproject.toml.
"""

from setuptools import setup

setup()
