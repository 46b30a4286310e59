"""Stand-in for bitbake's hashserv package, which the PyPI wheel of bitbake lacks.

``bb.siggen`` imports it at module level; layer parsing never talks to a hash server.
"""


def is_valid_unihash(unihash: str) -> bool:
    return bool(unihash)


def create_client(*args: object, **kwargs: object) -> None:
    raise RuntimeError("no hash server in layer parse tests")
