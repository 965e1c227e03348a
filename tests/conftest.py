"""Test-wide setup. Its presence puts ``tests/`` on ``sys.path`` so that helper modules shared by
several test folders (``pg_helpers``) can be imported by name."""
