"""Durability: the write-ahead journal of what the actors processed, snapshots, and recovery by replay."""
