"""Which addresses a set of processes listens on, read from /proc (no psutil needed).

A socket belongs to a process when one of its file descriptors links to ``socket:[inode]``;
the kernel's tables (/proc/net/tcp, tcp6, udp, udp6) give each inode's local address. TCP
sockets count when listening; UDP sockets when bound, since a bound UDP socket receives.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

_TCP_LISTEN = "0A"
_TABLES = {"tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp"}


@dataclass(frozen=True, slots=True)
class Listener:
    proto: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    pid: int

    @property
    def loopback(self) -> bool:
        address = self.address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order.
    return ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (children, grandchildren...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents[int(entry.name)] = ppid
    found = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in found and child not in found:
                found.add(child)
                grew = True
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listeners(pids: set[int]) -> list[Listener]:
    """Every listening TCP and bound UDP socket held by ``pids``."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found: list[Listener] = []
    for pid in pids:
        for table, proto in _TABLES.items():
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if owner.get(inode) != pid:
                    continue
                if proto == "tcp" and state != _TCP_LISTEN:
                    continue
                hex_addr, hex_port = local.split(":")
                port = int(hex_port, 16)
                if proto == "udp" and port == 0:
                    continue
                found.append(Listener(proto, _address(hex_addr), port, pid))
    return sorted(set(found), key=lambda x: (x.pid, x.proto, x.port))
