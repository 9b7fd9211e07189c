"""Serving: an HTTP service (`mlops-serve`) over a data directory that answers from the
registry's champion, scores the challenger in shadow or as a canary, and appends every request
and answer to a prediction log the graph reads back (assets/serving.py).

This package's root imports nothing heavy: the settings import its config from here."""
