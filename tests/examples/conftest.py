"""Fixtures of the examples' tests."""

from tests.examples.process_urls import process_store_url

__all__ = ["process_store_url"]
