"""Backends turn token requests into scores and generations."""
