"""Bundled data sets and pretrained default runs, found with importlib.resources."""
