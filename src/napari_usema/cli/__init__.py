"""The ``usema`` command line."""
