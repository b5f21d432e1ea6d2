"""iacrun."""
