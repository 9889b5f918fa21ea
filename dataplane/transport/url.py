"""Channel URLs: ``shm://NAME``, ``rdma://HOST:PORT``, ``tcp://HOST:PORT``,
``ipc://PATH`` and ``auto://HOST:PORT``, each with optional ``?key=value``
options (``shm://jobs?capacity=4194304``, ``rdma://10.0.0.2:7471?device=rxe_lo``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

SCHEMES = ("shm", "rdma", "tcp", "ipc", "auto")


@dataclass(frozen=True)
class Endpoint:
    """A parsed channel URL."""

    scheme: str
    #: shm: the channel name; ipc: the socket path; otherwise empty
    name: str = ""
    host: str = ""
    port: int = 0
    options: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``HOST:PORT`` (IPv6 hosts in brackets), the name, or the path."""
        if self.scheme in ("shm", "ipc"):
            return self.name
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def zmq_address(self) -> str:
        """The address as libzmq spells it."""
        if self.scheme == "ipc":
            return "ipc://" + self.name
        if self.scheme in ("tcp", "auto"):
            return "tcp://" + self.address
        raise ValueError(f"{self.scheme}:// is not a ZeroMQ transport")

    def with_scheme(self, scheme: str) -> Endpoint:
        return Endpoint(scheme, self.name, self.host, self.port, dict(self.options))

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.scheme}://{self.address}" + (f"?{query}" if query else "")


def parse(url: str) -> Endpoint:
    """Split a channel URL; raises ValueError with the reason when malformed."""
    if not isinstance(url, str):
        raise TypeError(f"channel URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"bad channel URL {url!r}: expected one of " + ", ".join(f"{s}://" for s in SCHEMES))
    rest, _, query = rest.partition("?")
    options: dict[str, str] = {}
    if query and any("=" not in field for field in query.split("&")):
        raise ValueError(f"bad channel URL {url!r}: options are key=value pairs joined by '&'")
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key in options:
            raise ValueError(f"bad channel URL {url!r}: option {key!r} given twice")
        options[key] = value
    if scheme == "shm":
        if not rest or "/" in rest or rest in (".", "..") or "\0" in rest or len(rest) > 170:
            raise ValueError(f"bad channel URL {url!r}: shm://NAME needs a name of 1-170 characters without '/'")
        return Endpoint(scheme, name=rest, options=options)
    if scheme == "ipc":
        if not rest or "\0" in rest:
            raise ValueError(f"bad channel URL {url!r}: ipc://PATH needs a path")
        return Endpoint(scheme, name=rest, options=options)
    host, port = _host_port(url, rest)
    return Endpoint(scheme, host=host, port=port, options=options)


def _host_port(url: str, rest: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not tail.startswith(":"):
            raise ValueError(f"bad channel URL {url!r}: expected [IPV6]:PORT")
        port_s = tail[1:]
    else:
        host, sep, port_s = rest.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bad channel URL {url!r}: expected HOST:PORT (IPv6 hosts in brackets)")
    if not host:
        raise ValueError(f"bad channel URL {url!r}: empty host")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad channel URL {url!r}: port must be 0-65535")
    return host, int(port_s)


# -------------------------------------------------------- option values --

def pop_int(options: dict[str, object], key: str, default: int | None) -> int | None:
    value = options.pop(key, None)
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"option {key} must be an integer, not {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        raise ValueError(f"option {key} must be an integer, not {value!r}") from None


def pop_float(options: dict[str, object], key: str, default: float | None) -> float | None:
    value = options.pop(key, None)
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("none", "inf", "forever"):
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"option {key} must be a number of seconds, not {value!r}") from None
    if not out >= 0:
        raise ValueError(f"option {key} must be >= 0, not {value!r}")
    return out


def pop_bool(options: dict[str, object], key: str, default: bool) -> bool:
    value = options.pop(key, None)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    s = str(value).lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"option {key} must be a boolean, not {value!r}")


def reject_unknown(options: dict[str, object], url: str) -> None:
    if options:
        raise ValueError(f"{url}: unknown option(s) " + ", ".join(sorted(options)))
