"""Pictures: image grids with Pillow (grid.py), matplotlib figures from arrays (figures.py), the
pictures of a trained run (gallery.py) and the HTML report (report.py).

Imports models, metrics and loading; never training/. Importing this package loads no
matplotlib: only figures.py and gallery.py do.
"""
