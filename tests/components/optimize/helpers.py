"""Helpers shared by the optimize tests."""
import os


def tree_bytes(root: str) -> dict[str, bytes]:
    """Relative path -> content of every file under root (to compare pass-through copies)."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files
