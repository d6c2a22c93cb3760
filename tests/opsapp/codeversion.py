"""Rewritten by the ``rundramatiq --reload`` test (and restored): the code a fresh process loads."""

VERSION = "original"
