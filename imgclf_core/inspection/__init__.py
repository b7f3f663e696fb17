"""Inspection: what a trained model says about images and what the user does about it.

Prediction and Grad-CAM, overlays, mistakes, the relabel journal, labeling suggestions and the
dataset audit. May import the root modules, ``data``, ``models`` and ``training``; never export.
"""
