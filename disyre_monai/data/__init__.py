"""Datasets, datalists and the embedded demo data."""
