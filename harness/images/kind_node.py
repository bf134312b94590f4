"""drdrill's kind node image, built here with no registry, cached by the hash of its inputs.

A Debian rootfs (debootstrap: systemd, containerd, runc, the CNI plugins from Debian's
packages) plus kubelet, kubeadm, kubectl and crictl built from the pinned modules, our own
entrypoint and units (`node_files`), and the images kubeadm deploys — kube-apiserver,
-controller-manager, -scheduler, kube-proxy, etcd, pause, coredns — plus local-path-provisioner
and a busybox for helpers and workloads, written as docker-archive tarballs from the same
binaries and imported into the node's containerd when it boots. The image tag is
`drdrill/kind-node:<kubernetes version>-<input hash>`: change a pin, a package or a file and a
new image is built; otherwise the cached one is used. Logs: <cache>/images/logs/.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import Config
from harness.errors import ImageBuildError
from harness.images import node_files as nf
from harness.images.rootfs import (
    Debootstrap,
    copy_packages,
    debootstrap_rootfs,
    digest,
    docker_import,
    file_lock,
    image_exists,
    package_closure,
    write_docker_archive,
    write_files,
)
from harness.tools import ResolvedTool, ensure_tools, load_manifest

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

RECIPE_VERSION = 1
IMAGE_REPO = "drdrill/kind-node"
REGISTRY = "registry.k8s.io"
PAUSE_VERSION = "3.10.1"
"""kubeadm v1.35's pause (cmd/kubeadm/app/constants: PauseVersion), built from its C source."""
BUSYBOX_IMAGE = "localhost/drdrill/busybox:1.35.0"
"""Debian's busybox-static from the node rootfs: local-path helper pods and test workloads."""

NODE_ROOTFS = Debootstrap(
    suite="bookworm", variant="minbase",
    packages=("systemd", "systemd-sysv", "dbus", "containerd", "runc",
              "containernetworking-plugins", "iptables", "conntrack", "iproute2", "ethtool",
              "util-linux", "mount", "kmod", "procps", "ca-certificates", "libseccomp2",
              "socat", "busybox-static", "nftables"))

NODE_BINARIES = ("kubelet", "kubeadm", "kubectl", "crictl")
"""Pinned tools copied into the node's /usr/local/bin."""


@dataclass(frozen=True)
class Component:
    """One image the node carries: a binary on a minimal rootfs of Debian packages."""

    image: str
    binary: str
    """A pinned tool name, "pause" (built from C) or "busybox" (from the rootfs)."""
    path: str = ""
    """Where the binary goes in the image (default /usr/local/bin/<name>)."""
    entrypoint: tuple[str, ...] = ()
    packages: tuple[str, ...] = ("libc6",)
    """Debian packages from the node rootfs (closure added): the Go builds link libc."""
    user: str = ""
    """The image's USER ("65534:65534" for the Flux controllers, which run as non-root)."""

    def dest(self) -> str:
        return self.path or f"usr/local/bin/{self.binary}"


def kube_version() -> str:
    return load_manifest().tools["kubelet"].version


def components() -> tuple[Component, ...]:
    manifest = load_manifest().tools
    kube = kube_version()

    def k8s(name: str, **kw: object) -> Component:
        return Component(f"{REGISTRY}/{name}:{kube}", name, **kw)  # type: ignore[arg-type]

    return (
        k8s("kube-apiserver"), k8s("kube-controller-manager"), k8s("kube-scheduler"),
        # kube-proxy runs iptables-restore and conntrack from its own image.
        k8s("kube-proxy", packages=("libc6", "iptables", "conntrack")),
        Component(f"{REGISTRY}/etcd:{manifest['etcd'].version}", "etcd"),
        Component(f"{REGISTRY}/pause:{PAUSE_VERSION}", "pause", path="pause",
                  entrypoint=("/pause",), packages=()),
        Component(f"{REGISTRY}/coredns/coredns:{manifest['coredns'].version}", "coredns",
                  path="coredns", entrypoint=("/coredns",)),
        Component(f"localhost/drdrill/local-path-provisioner:"
                  f"{manifest['local-path-provisioner'].version}", "local-path-provisioner"),
        Component(BUSYBOX_IMAGE, "busybox", path="bin/busybox", packages=()),
    )


def node_tools() -> tuple[str, ...]:
    """Every pinned tool the node image is made of."""
    named = {c.binary for c in components()} - {"pause", "busybox"}
    return tuple(dict.fromkeys((*NODE_BINARIES, *sorted(named))))


def kubeadm_etcd_tag() -> str:
    """The etcd tag to give kubeadm (ClusterConfiguration etcd.local.imageTag)."""
    return load_manifest().tools["etcd"].version


# --- the recipe and its hash -----------------------------------------------------------------

def node_files(components_: tuple[Component, ...]) -> dict[str, tuple[str, int]]:
    pause = next(c.image for c in components_ if c.binary == "pause")
    provisioner = next(c.image for c in components_ if c.binary == "local-path-provisioner")
    files: dict[str, tuple[str, int]] = {
        "usr/local/bin/entrypoint": (nf.ENTRYPOINT.replace("@POD_SUBNET@", nf.POD_SUBNET),
                                     0o755),
        "usr/local/bin/drdrill-preload": (nf.PRELOAD, 0o755),
        "usr/local/bin/drdrill-podnet": (nf.PODNET, 0o755),
        "usr/local/bin/drdrill-kubelet-cgroups": (nf.KUBELET_CGROUPS, 0o755),
        "etc/systemd/system/kubelet.service": (nf.KUBELET_SERVICE, 0o644),
        "etc/systemd/system/kubelet.slice": (nf.KUBELET_SLICE, 0o644),
        "etc/systemd/system/drdrill-preload.service": (nf.PRELOAD_SERVICE, 0o644),
        "etc/systemd/system/drdrill-podnet.service": (nf.PODNET_SERVICE, 0o644),
        "etc/default/kubelet": (nf.KUBELET_DEFAULTS, 0o644),
        "etc/containerd/config.toml": (nf.CONTAINERD_CONFIG.substitute(pause_image=pause),
                                       0o644),
        "etc/crictl.yaml": (nf.CRICTL_YAML, 0o644),
        "kind/version": (kube_version() + "\n", 0o644),
        "kind/manifests/default-cni.yaml": (nf.CNI_MANIFEST, 0o644),
        "kind/manifests/default-storage.yaml": (nf.STORAGE_MANIFEST.substitute(
            provisioner_image=provisioner, helper_image=BUSYBOX_IMAGE), 0o644),
        "etc/machine-id": ("", 0o444),
    }
    return files


@dataclass(frozen=True)
class Inputs:
    """Everything that decides the node image; its digest names the image."""

    binaries: Mapping[str, Path]
    shas: Mapping[str, str]
    components: tuple[Component, ...] = field(default_factory=components)

    def recipe(self) -> dict[str, object]:
        return {
            "version": RECIPE_VERSION,
            "rootfs": {"suite": NODE_ROOTFS.suite, "variant": NODE_ROOTFS.variant,
                       "packages": sorted(NODE_ROOTFS.packages)},
            "files": {k: [v[0], v[1]] for k, v in sorted(node_files(self.components).items())},
            "masked": list(nf.MASKED_UNITS), "enabled": list(nf.ENABLED_UNITS),
            "components": [[c.image, c.binary, c.dest(), list(c.entrypoint), list(c.packages)]
                           for c in self.components],
            "binaries": dict(sorted(self.shas.items())),
        }

    def tag(self) -> str:
        return f"{IMAGE_REPO}:{kube_version()}-{digest(self.recipe())}"


# --- pause -----------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def kubernetes_source(version: str) -> Path:
    """The k8s.io/kubernetes module folder (Go's module cache; downloaded if missing)."""
    proc = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                          capture_output=True, text=True, check=False, timeout=900,
                          env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd=tempfile.gettempdir())
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Dir" not in info:
        raise ImageBuildError(f"go mod download k8s.io/kubernetes@{version} failed: "
                              f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return Path(info["Dir"])


def build_pause(cache_dir: Path, log_path: Path) -> Path:
    """pause, compiled statically from build/pause/linux/pause.c of the pinned k8s.io/kubernetes."""
    target = cache_dir / f"pause-{PAUSE_VERSION}-{kube_version()}" / "pause"
    if target.exists():
        return target
    source = kubernetes_source(kube_version()) / "build/pause/linux/pause.c"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name("pause.tmp")
    argv = ["cc", "-Os", "-Wall", "-Werror", "-static", f'-DVERSION=v{PAUSE_VERSION}',
            "-o", str(tmp), str(source)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    with log_path.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise ImageBuildError(f"compiling pause failed: {proc.stderr.strip()[-500:]}",
                              log=log_path, fix="apt-get install gcc libc6-dev")
    subprocess.run(["strip", str(tmp)], check=False, capture_output=True)
    tmp.replace(target)
    return target


# --- building --------------------------------------------------------------------------------

BASE_FILES: dict[str, tuple[str, int]] = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                   0o644),
    "etc/group": ("root:x:0:\nnogroup:x:65534:\n", 0o644),
    "etc/nsswitch.conf": ("hosts: files dns\n", 0o644),
}


def _component_root(rootfs: Path, comp: Component, binary: Path, work: Path) -> Path:
    root = work / comp.binary
    root.mkdir(parents=True)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    if comp.packages:
        copy_packages(rootfs, package_closure(rootfs, comp.packages), root)
    write_files(root, BASE_FILES)
    bundle = rootfs / "etc/ssl/certs/ca-certificates.crt"  # made by update-ca-certificates
    if "ca-certificates" in comp.packages and bundle.exists():
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle, root / "etc/ssl/certs/ca-certificates.crt")
    dest = root / comp.dest()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, dest)
    dest.chmod(0o755)
    if comp.binary == "busybox":
        applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            link = root / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
    return root


def write_component(comp: Component, binary: Path, rootfs: Path, dest: Path,
                    work: Path) -> Path:
    """One component as a docker-archive tarball at `dest`."""
    root = _component_root(rootfs, comp, binary, work)
    try:
        write_docker_archive(
            root, dest, tags=[comp.image], entrypoint=comp.entrypoint or None,
            cmd=("sh",) if comp.binary == "busybox" else None, user=comp.user,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
            labels={"org.opencontainers.image.description": f"drdrill {comp.binary}"})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return dest


def build_components(inputs: Inputs, rootfs: Path, out_dir: Path, work: Path) -> list[Path]:
    """One docker-archive tarball per component under `out_dir`."""
    return [write_component(comp, rootfs / "bin/busybox" if comp.binary == "busybox"
                            else inputs.binaries[comp.binary], rootfs,
                            out_dir / f"{comp.binary}.tar", work)
            for comp in inputs.components]


FLUX_IMAGE_REGISTRY = "ghcr.io/fluxcd"


def flux_image(name: str, version: str, registry: str = FLUX_IMAGE_REGISTRY) -> str:
    """The image of one Flux controller, tagged with its own pinned version."""
    return f"{registry}/{name}:{version}"


def flux_archives(config: Config, tools: Mapping[str, ResolvedTool], *,
                  registry: str = FLUX_IMAGE_REGISTRY,
                  progress: Progress | None = None) -> dict[str, tuple[str, Path]]:
    """Images of the given Flux controllers made from their pinned binaries (non-root, libc and
    CA certificates from the node rootfs); name -> (image, docker-archive tarball).

    Cached under <cache>/images/flux/ by controller, version and binary hash."""
    say: Progress = progress or (lambda line: log.info("%s", line))
    images = config.cache_dir / "images"
    out: dict[str, tuple[str, Path]] = {}
    rootfs: Path | None = None
    for name, tool in tools.items():
        sha = (tool.sha256 or _sha256(tool.path))[:12]
        image = flux_image(name, tool.version, registry)
        key = digest({"image": image, "sha": sha, "recipe": RECIPE_VERSION,
                      "rootfs": NODE_ROOTFS.key()})
        dest = images / "flux" / f"{name}-{tool.version}-{key}.tar"
        if not dest.exists():
            with file_lock(images / "locks" / f"{dest.name}.lock"):
                if not dest.exists():
                    rootfs = rootfs or debootstrap_rootfs(NODE_ROOTFS, images,
                                                          images / "logs" / "flux-images.log")
                    comp = Component(image, name, packages=("libc6", "ca-certificates"),
                                     entrypoint=(f"/usr/local/bin/{name}",),
                                     user="65534:65534")
                    with tempfile.TemporaryDirectory(prefix="flux-", dir=images) as tmp:
                        write_component(comp, tool.path, rootfs, dest, Path(tmp))
                    say(f"wrote image {image} ({dest.stat().st_size >> 20} MiB)")
        out[name] = (image, dest)
    return out


def resolve_inputs(config: Config, log_path: Path, progress: Progress) -> Inputs:
    tools: dict[str, ResolvedTool] = ensure_tools(config, node_tools(), progress=progress)
    binaries = {name: t.path for name, t in tools.items()}
    shas = {name: t.sha256 or _sha256(t.path) for name, t in tools.items()}
    images = config.cache_dir / "images"
    binaries["pause"] = build_pause(images, log_path)
    shas["pause"] = _sha256(binaries["pause"])
    return Inputs(binaries=binaries, shas=shas)


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    built_s: float
    """0 when the cached image was used."""
    log: Path


def ensure_node_image(config: Config, *, progress: Progress | None = None,
                      force: bool = False) -> BuiltImage:
    """The node image for the pinned versions: the cached one, or built now (under a lock)."""
    say: Progress = progress or (lambda line: log.info("%s", line))
    images = config.cache_dir / "images"
    logs = images / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "kind-node.log"
    inputs = resolve_inputs(config, log_path, say)
    tag = inputs.tag()
    if not force and image_exists(tag):
        return BuiltImage(tag, 0.0, log_path)
    with file_lock(images / "locks" / f"{tag.replace('/', '_').replace(':', '_')}.lock"):
        if not force and image_exists(tag):
            return BuiltImage(tag, 0.0, log_path)
        started = time.monotonic()
        say(f"building kind node image {tag}; log: {log_path}")
        rootfs = debootstrap_rootfs(NODE_ROOTFS, images, log_path)
        say(f"node rootfs ready ({time.monotonic() - started:.0f}s)")
        work = Path(tempfile.mkdtemp(prefix="kind-node-", dir=images))
        try:
            node = work / "rootfs"
            subprocess.run(["cp", "-a", f"{rootfs}/.", str(node)], check=True)
            (node / ".complete").unlink(missing_ok=True)
            build_components(inputs, rootfs, node / "kind/images", work / "components")
            say(f"component images written ({time.monotonic() - started:.0f}s)")
            _assemble(node, inputs)
            docker_import(node, tag, log=log_path, changes=[
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "ENV container=docker",
                f"LABEL drdrill.dev/kind-node-inputs={tag.rsplit('-', 1)[1]}",
            ])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        took = time.monotonic() - started
        say(f"built kind node image {tag} in {took:.0f}s")
        _remove_stale(tag)
        return BuiltImage(tag, took, log_path)


def _remove_stale(current: str) -> None:
    """Older drdrill node images (other input hashes) go: only the current one is cached.
    An image a cluster still uses stays (docker refuses), which is what we want."""
    listing = subprocess.run(["docker", "image", "ls", IMAGE_REPO, "--format",
                              "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                             check=False).stdout.split()
    for tag in listing:
        if tag != current:
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def _assemble(node: Path, inputs: Inputs) -> None:
    write_files(node, node_files(inputs.components))
    for name in NODE_BINARIES:
        dest = node / "usr/local/bin" / name
        shutil.copy2(inputs.binaries[name], dest)
        dest.chmod(0o755)
    system = node / "etc/systemd/system"
    for unit in nf.MASKED_UNITS:
        link = system / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    wants = system / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in nf.ENABLED_UNITS:
        link = wants / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        target = (f"/etc/systemd/system/{unit}" if (system / unit).exists()
                  else f"/lib/systemd/system/{unit}")
        link.symlink_to(target)
    (node / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    (node / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
    # journald must not read the host's kernel log.
    journald = node / "etc/systemd/journald.conf"
    journald.write_text(journald.read_text() + "\nReadKMsg=no\n" if journald.exists()
                        else "[Journal]\nReadKMsg=no\n")
