"""Tests of the watch domain."""
