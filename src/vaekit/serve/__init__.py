"""`vaekit serve`: the latent explorer. explorer.py computes (decode, encode, sample, map) with
input checks, server.py puts HTTP routes over it, static/ holds the page.

Imports models, metrics, viz and loading; never training/: serving a run never loads the trainer.
"""
