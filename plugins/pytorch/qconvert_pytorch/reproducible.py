"""Save an ExportedProgram so that the same program gives the same bytes.

``torch.export.save`` writes two things that change from run to run although the program
does not: each node's provenance (``meta["from_node"]``, which records ``graph_id``, the
Python ``id()`` of a graph object) and the archive's random ``.data/serialization_id``.
Provenance is dropped (it is debugging information, not part of the program), and the id
is replaced, in place and with the same length, by digits derived from the archive's
other contents, with both CRC-32 fields of that zip member updated. A rebuild from
``recipe.fallback.yaml`` (or any identical build) then writes a bit-identical ``model.pt2``.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from pathlib import Path

import torch

__all__ = ["save_reproducible"]

_LOCAL_HEADER_CRC = 14  # offset of crc-32 in a zip local file header
_CENTRAL_SIG = b"PK\x01\x02"


def save_reproducible(program: torch.export.ExportedProgram, path: Path) -> None:
    for node in program.graph.nodes:
        node.meta.pop("from_node", None)
    torch.export.save(program, path)
    _fix_serialization_id(path)


def _fix_serialization_id(path: Path) -> None:
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        member = next((i for i in infos if i.filename.endswith(".data/serialization_id")), None)
        if member is None or member.compress_type != zipfile.ZIP_STORED:
            return
        digest = hashlib.sha256()
        for info in infos:
            if info is not member:
                digest.update(info.filename.encode())
                digest.update(struct.pack("<I", info.CRC))
    name_len, extra_len = struct.unpack_from("<HH", data, member.header_offset + 26)
    start = member.header_offset + 30 + name_len + extra_len
    new = str(int(digest.hexdigest(), 16)).zfill(member.file_size)[: member.file_size].encode()
    data[start : start + member.file_size] = new
    crc = zlib.crc32(new) & 0xFFFFFFFF
    struct.pack_into("<I", data, member.header_offset + _LOCAL_HEADER_CRC, crc)
    central = data.find(_CENTRAL_SIG + b"", 0)
    while central != -1:  # the central directory entry of this member: crc-32 at offset 16
        clen = struct.unpack_from("<H", data, central + 28)[0]
        name = bytes(data[central + 46 : central + 46 + clen]).decode(errors="replace")
        if name == member.filename:
            struct.pack_into("<I", data, central + 16, crc)
            break
        central = data.find(_CENTRAL_SIG, central + 46)
    path.write_bytes(bytes(data))
