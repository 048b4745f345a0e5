"""Datasets: demonstrations for anchors (``demos``) and toy densities."""
