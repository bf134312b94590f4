"""The lab inventory: which hosts a lab drill may touch, how to reach them, and how their SSH
host keys are verified. Loading checks everything that can be checked without the network, so
a typo fails in milliseconds with the file, host and field named.

    # lab.yaml
    distribution: k3s            # k3s (default) | embedded (the harness's own control plane)
    trust_on_first_use: false    # pin unknown host keys into known_hosts (default: refuse)
    recover_to: spare            # rebuild round 2 on the spare pool (default: same host)
    defaults:                    # merged into every host below
      user: root
      key: ~/.ssh/lab_ed25519
      known_hosts: known_hosts   # relative to this file; default ~/.ssh/known_hosts
    hosts:                       # the cluster: one or more servers, any number of agents
      - name: node-a
        address: 192.168.1.10
        port: 22
        role: server             # server | agent
    spare:                       # the spare pool: hardware a recovery may move to
      - name: node-c
        address: 192.168.1.12
        host_key: ssh-ed25519 AAAAC3Nza...   # a pinned key instead of a known_hosts entry

A host key is never trusted blindly: each host needs a key in its `known_hosts` file or a
`host_key`, unless `trust_on_first_use` says to pin the key seen on first connect.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import InventoryError

Role = Literal["server", "agent"]
Pool = Literal["hosts", "spare"]
Distribution = Literal["k3s", "embedded"]

DISTRIBUTIONS: tuple[str, ...] = ("k3s", "embedded")
ROLES: tuple[str, ...] = ("server", "agent")
# On the lab host: survives reboots and any login user may write it; each run makes its own
# 0700 folder inside, named after the (random) run id.
DEFAULT_WORK_DIR = "/var/tmp/drdrill"  # noqa: S108 - a folder on the remote host (see above)
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

TOP_FIELDS = ("version", "distribution", "trust_on_first_use", "recover_to", "defaults", "hosts",
              "spare")
RECOVER_TO = ("same", "spare")
HOST_FIELDS = ("name", "address", "port", "user", "key", "role", "known_hosts", "host_key",
               "trust_on_first_use", "sudo", "work_dir")
DEFAULT_FIELDS = tuple(f for f in HOST_FIELDS if f not in ("name", "address", "host_key"))

HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "ssh-rsa")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class HostSpec:
    """One host as the inventory describes it (validated, paths absolute)."""

    name: str
    address: str
    port: int
    user: str
    key: Path
    role: Role
    pool: Pool
    known_hosts: Path
    """Where this host's key is looked up (and pinned, with trust_on_first_use)."""
    host_key: str | None
    """`type base64` from the inventory; when set it is the only key accepted."""
    trust_on_first_use: bool
    sudo: bool
    work_dir: str
    source: Path
    """The inventory file, for error messages."""

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in known_hosts: `addr`, or `[addr]:port` off port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "port": self.port,
                "user": self.user, "role": self.role, "pool": self.pool}


@dataclass(frozen=True)
class Inventory:
    path: Path
    distribution: Distribution
    hosts: tuple[HostSpec, ...]
    spare: tuple[HostSpec, ...]
    recover_to: str = "same"

    @property
    def servers(self) -> tuple[HostSpec, ...]:
        return tuple(h for h in self.hosts if h.role == "server")

    @property
    def agents(self) -> tuple[HostSpec, ...]:
        return tuple(h for h in self.hosts if h.role == "agent")

    @property
    def primary(self) -> HostSpec:
        """The first server: round 1 of a drill builds the cluster there."""
        return self.servers[0]

    def host(self, name: str) -> HostSpec:
        for h in (*self.hosts, *self.spare):
            if h.name == name:
                return h
        raise InventoryError(f"no host named {name!r}", file=self.path, field="hosts",
                             fix=f"use one of: {', '.join(h.name for h in self.all_hosts)}")

    @property
    def all_hosts(self) -> tuple[HostSpec, ...]:
        return (*self.hosts, *self.spare)


# -- loading ---------------------------------------------------------------------------------

def load_inventory(path: Path | str) -> Inventory:
    """Read and validate an inventory; InventoryError names file, host and field on any fault."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError("the inventory file does not exist", file=path,
                             fix="pass --inventory (or DRDRILL_INVENTORY) the path of a YAML "
                                 "inventory; see harness/inventory.py for the format") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"the inventory cannot be read: {exc}", file=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InventoryError(f"invalid YAML{where}: {problem}", file=path) from None
    return parse_inventory(data, path.resolve())


def parse_inventory(data: Any, path: Path) -> Inventory:
    if not isinstance(data, Mapping):
        raise InventoryError("the inventory must be a YAML mapping with a `hosts` list",
                             file=path)
    _known_fields(data, TOP_FIELDS, path, host=None, what="top-level field")
    version = data.get("version", 1)
    if version != 1:
        raise InventoryError(f"unsupported inventory version {version!r}", file=path,
                             field="version", fix="use version: 1 (or leave it out)")
    distribution = data.get("distribution", "k3s")
    if distribution not in DISTRIBUTIONS:
        raise InventoryError(f"unknown distribution {distribution!r}", file=path,
                             field="distribution",
                             fix=f"use one of: {', '.join(DISTRIBUTIONS)}")
    tofu = _bool(data, "trust_on_first_use", False, path, host=None)
    recover_to = data.get("recover_to", "same")
    if recover_to not in RECOVER_TO:
        raise InventoryError(f"recover_to {recover_to!r} is neither same nor spare", file=path,
                             field="recover_to", fix="use same (rebuild on the lost host's "
                                                     "hardware) or spare")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise InventoryError("`defaults` must be a mapping of host fields", file=path,
                             field="defaults")
    _known_fields(defaults, DEFAULT_FIELDS, path, host=None, what="field in `defaults`")
    hosts = _host_list(data, "hosts", path, defaults, tofu, required=True)
    spare = _host_list(data, "spare", path, defaults, tofu, required=False)
    if not any(h.role == "server" for h in hosts):
        raise InventoryError("no host has role `server`; a cluster needs one", file=path,
                             field="role", fix="give the first host `role: server`")
    seen: dict[str, HostSpec] = {}
    where: dict[tuple[str, int], HostSpec] = {}
    for h in (*hosts, *spare):
        if h.name in seen:
            raise InventoryError("the host name is used twice", file=path, host=h.name,
                                 field="name", fix="give every host its own name")
        seen[h.name] = h
        other = where.get((h.address, h.port))
        if other is not None:
            raise InventoryError(f"{h.address}:{h.port} is also host {other.name!r}; a spare "
                                 "must be other hardware", file=path, host=h.name,
                                 field="address")
        where[(h.address, h.port)] = h
    if distribution == "embedded" and len(hosts) > 1:
        extra = ", ".join(h.name for h in hosts[1:])
        raise InventoryError(f"the embedded distribution runs on one host; also listed: {extra}",
                             file=path, field="hosts",
                             fix="list one host under `hosts` (others may go under `spare`)")
    if recover_to == "spare" and not spare:
        raise InventoryError("recover_to is spare, but the spare pool is empty", file=path,
                             field="spare", fix="list at least one host under `spare:`")
    return Inventory(path, distribution, hosts, spare, recover_to)


def _host_list(data: Mapping[str, Any], key: Pool, path: Path, defaults: Mapping[str, Any],
               tofu: bool, *, required: bool) -> tuple[HostSpec, ...]:
    raw = data.get(key)
    if raw is None:
        if required:
            raise InventoryError("the inventory lists no hosts", file=path, field=key,
                                 fix="add a `hosts:` list with at least one host")
        return ()
    if not isinstance(raw, list) or (required and not raw):
        raise InventoryError(f"`{key}` must be a non-empty list of hosts", file=path, field=key)
    out = []
    for i, item in enumerate(raw):
        label = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            raise InventoryError(f"{label} must be a mapping (name, address, ...)", file=path,
                                 field=key)
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InventoryError(f"{label} needs a `name` (letters, digits, . _ -)", file=path,
                                 host=label, field="name")
        out.append(_host(name, {**defaults, **item}, key, path, tofu))
    return tuple(out)


def _host(name: str, raw: Mapping[str, Any], pool: Pool, path: Path,
          tofu_default: bool) -> HostSpec:
    _known_fields(raw, HOST_FIELDS, path, host=name, what="host field")
    address = raw.get("address")
    if not isinstance(address, str) or not address.strip() or any(c.isspace() for c in address):
        raise InventoryError("`address` is missing or not a host name / IP address",
                             file=path, host=name, field="address")
    port = raw.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InventoryError(f"port {port!r} is not a number from 1 to 65535", file=path,
                             host=name, field="port")
    user = raw.get("user", "root")
    if not isinstance(user, str) or not user or any(c.isspace() for c in user):
        raise InventoryError(f"user {user!r} is not a user name", file=path, host=name,
                             field="user")
    role = raw.get("role", "server")
    if role not in ROLES:
        raise InventoryError(f"unknown role {role!r}", file=path, host=name, field="role",
                             fix=f"use one of: {', '.join(ROLES)}")
    key = _key_file(raw.get("key"), path, name)
    tofu = _bool(raw, "trust_on_first_use", tofu_default, path, host=name)
    host_key = raw.get("host_key")
    if host_key is not None:
        host_key = _host_key(host_key, path, name)
    kh_raw = raw.get("known_hosts", DEFAULT_KNOWN_HOSTS)
    if not isinstance(kh_raw, str) or not kh_raw:
        raise InventoryError("`known_hosts` must be a file path", file=path, host=name,
                             field="known_hosts")
    known_hosts = _relative(kh_raw, path)
    spec = HostSpec(
        name=name, address=address.strip(), port=port, user=user, key=key,
        role=role, pool=pool, known_hosts=known_hosts, host_key=host_key,
        trust_on_first_use=tofu, sudo=_bool(raw, "sudo", False, path, host=name),
        work_dir=str(raw.get("work_dir", DEFAULT_WORK_DIR)), source=path)
    if not spec.work_dir.startswith("/") or spec.work_dir.rstrip("/") in ("", "/"):
        raise InventoryError(f"work_dir {spec.work_dir!r} must be an absolute folder other "
                             "than /", file=path, host=name, field="work_dir")
    if host_key is None and not tofu:
        _require_known(spec)
    return spec


def _require_known(spec: HostSpec) -> None:
    """Fail now (not at connect time) when there is no key to verify the host against."""
    if not spec.known_hosts.is_file():
        raise InventoryError(
            f"the known_hosts file {spec.known_hosts} does not exist, so the host key of "
            f"{spec.known_hosts_name} cannot be verified", file=spec.source, host=spec.name,
            field="known_hosts",
            fix="point known_hosts at a file holding the host's key (ssh-keyscan it over a "
                "trusted network), set host_key, or set trust_on_first_use: true")
    if not known_keys(spec):
        raise InventoryError(
            f"{spec.known_hosts} has no key for {spec.known_hosts_name}", file=spec.source,
            host=spec.name, field="known_hosts",
            fix="add the host's key to that file (compare its fingerprint with the host's "
                "console), set host_key, or set trust_on_first_use: true")


def known_keys(spec: HostSpec) -> list[tuple[str, str]]:
    """(type, base64) keys the host may present: `host_key`, else its known_hosts entries."""
    if spec.host_key is not None:
        kind, b64 = spec.host_key.split()[:2]
        return [(kind, b64)]
    return read_known_hosts(spec.known_hosts, spec.known_hosts_name)


def read_known_hosts(path: Path, name: str) -> list[tuple[str, str]]:
    """Keys for `name` in an OpenSSH known_hosts file (plain and hashed names; revoked and
    @cert-authority lines are skipped, so they never make a host trusted)."""
    import hashlib
    import hmac

    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found: list[tuple[str, str]] = []
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith("#") or parts[0].startswith("@"):
            continue
        if len(parts) < 3:
            continue
        names, kind, b64 = parts[0], parts[1], parts[2]
        for pattern in names.split(","):
            if pattern.startswith("|1|"):
                try:
                    salt_b64, digest_b64 = pattern[3:].split("|", 1)
                    salt = base64.b64decode(salt_b64)
                    digest = base64.b64decode(digest_b64)
                except (ValueError, binascii.Error):
                    continue
                if hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(),
                                       digest):
                    found.append((kind, b64))
                    break
            elif pattern == name:
                found.append((kind, b64))
                break
    return found


def _key_file(raw: object, path: Path, host: str) -> Path:
    if raw is None:
        raise InventoryError("no SSH private key file (`key`)", file=path, host=host,
                             field="key", fix="set key: to the private key file, here or in "
                                              "`defaults`")
    if not isinstance(raw, str) or not raw:
        raise InventoryError("`key` must be a file path", file=path, host=host, field="key")
    key = _relative(raw, path)
    try:
        head = key.read_bytes()[:4096]
    except FileNotFoundError:
        raise InventoryError(f"the key file {key} does not exist", file=path, host=host,
                             field="key") from None
    except OSError as exc:
        raise InventoryError(f"the key file {key} cannot be read: {exc.strerror}", file=path,
                             host=host, field="key") from None
    if b"PRIVATE KEY-----" not in head:
        hint = " (that is a public key: name the file without .pub)" \
            if head.startswith((b"ssh-", b"ecdsa-")) else ""
        raise InventoryError(f"{key} is not an SSH private key{hint}", file=path, host=host,
                             field="key")
    return key


def _host_key(raw: object, path: Path, host: str) -> str:
    parts = raw.split() if isinstance(raw, str) else []
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        raise InventoryError(f"host_key must be `<type> <base64>` with a type of "
                             f"{', '.join(HOST_KEY_TYPES)}", file=path, host=host,
                             field="host_key",
                             fix="copy the line from the host's /etc/ssh/ssh_host_*_key.pub")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error):
        raise InventoryError("host_key is not valid base64", file=path, host=host,
                             field="host_key") from None
    # The blob starts with its own type name; a truncated paste fails here, not at connect.
    if len(blob) < 4 or blob[4:4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise InventoryError(f"host_key's data is not a {parts[0]} key (truncated paste?)",
                             file=path, host=host, field="host_key")
    return f"{parts[0]} {parts[1]}"


def _bool(raw: Mapping[str, Any], key: str, default: bool, path: Path,
          host: str | None) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise InventoryError(f"`{key}` must be true or false, got {value!r}", file=path,
                             host=host, field=key)
    return value


def _known_fields(raw: Mapping[str, Any], allowed: tuple[str, ...], path: Path,
                  host: str | None, what: str) -> None:
    for key in raw:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            raise InventoryError(
                f"unknown {what} {key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""),
                file=path, host=host, field=str(key),
                fix=f"use one of: {', '.join(allowed)}")


def _relative(raw: str, inventory: Path) -> Path:
    p = Path(raw).expanduser()
    return p if p.is_absolute() else (inventory.parent / p)
