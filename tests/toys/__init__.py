"""Plug-ins written as a user would write them, outside the project's packages, registered by the ``plugins``
config key alone (tests/test_plugins.py): a 2D dataset, a 3D method and a task."""
