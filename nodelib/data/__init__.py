"""Data sets of the book: 2D toy densities generated in code (:mod:`nodelib.data.toy2d`) and
image data that ships inside packages or downloads where a network exists (:mod:`nodelib.data.images`).

This package is never imported by the core (adjoint, traces, CNF)."""
