"""The ``medimeta`` command line: a thin layer over the library core."""
