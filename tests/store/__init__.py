"""Tests of the image store (hutch.store)."""
