"""Tests of production files, sites and stages, and predicted ship dates."""
