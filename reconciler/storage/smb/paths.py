"""SMB path syntax: ``//server/share/folder`` and the folder inside a share."""

from __future__ import annotations


def parse_smb_path(path: str) -> tuple[str, str, str]:
    """Split ``//server/share/dir/sub`` or ``\\\\server\\share\\dir\\sub``.

    Returns (server, share, folder) where folder is '/'-separated, possibly
    empty. Raises ValueError naming the path when it is not of that form."""
    if not (path.startswith("//") or path.startswith("\\\\")):
        raise ValueError(
            f"the SMB path {path!r} must start with // or \\\\ (for example //server/share/folder)"
        )
    parts = path[2:].replace("\\", "/").rstrip("/").split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"the SMB path {path!r} must name a server and a share: //server/share")
    if any(p in ("", ".", "..") for p in parts[2:]):
        raise ValueError(f"the SMB path {path!r} has an empty, '.' or '..' folder name")
    return parts[0], parts[1], "/".join(parts[2:])


def split_folder(folder: str) -> list[str]:
    """The parts of a '/'- or '\\'-separated folder inside a share.

    Raises ValueError for '.' or '..' parts, which could leave the folder."""
    parts = [p for p in folder.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"the SMB folder {folder!r} must not contain '.' or '..'")
    return parts
