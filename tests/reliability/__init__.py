"""Hostile input, faults and load against Glimpse's real entry points (issue #7)."""
