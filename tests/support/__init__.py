"""Test-support code for ``medimeta-cli``.

* :mod:`tests.support.archives` builds small but real MedIMeta dataset folders and
  ``<id>.zip`` archives in the exact upstream layout (plus deliberately bad archives).
* :mod:`tests.support.zenodo_server` runs a local, Zenodo-compatible HTTP server with
  range support, rate-limit headers, a request log and on-demand fault injection.

This package deliberately does not import ``medimeta_cli`` and imports nothing heavy
on its own, so ``python -m tests.support.zenodo_server`` needs only the standard library.
"""
