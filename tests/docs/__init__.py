"""Tests of the documentation: the README and ``docs/``."""
