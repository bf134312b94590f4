# ruff: noqa: E501 - shell scripts and unit files, kept as their own tools format them
"""The files drdrill writes into its kind node image: entrypoint, systemd units, containerd
config, the pod-network agent and the manifests kind applies. Plain data, no I/O.

kind drives a node through a few paths (`/kind/version`, `/kind/manifests/*.yaml`,
`/etc/containerd/config.toml`, `kubeadm` and `kubectl` on PATH, systemd for kubelet); the
rest is ours.
"""

from __future__ import annotations

from string import Template

POD_SUBNET = "10.244.0.0/16"
"""The pod network of drdrill's kind clusters (kind's default, set explicitly in the config so
the node's egress lock and kubeadm agree)."""
SERVICE_SUBNET = "10.96.0.0/16"

ENTRYPOINT = r"""#!/bin/bash
# drdrill kind node: prepare this privileged container for systemd and kubelet, then exec init.
set -euo pipefail
info() { echo "INFO: $*" >&2; }

# kubelet and containerd mount volumes with shared propagation.
mount --make-rshared /

# kubelet sets kernel tunables that are not namespaced (vm.overcommit_memory, kernel.panic,
# ...): a write would change the host. Bind node-local files holding the values kubelet wants
# over them, so kubelet finds them set and the host keeps its own.
shield() {
    local key=$1 value=$2 path=/proc/sys/${1//.//}
    [[ -e $path ]] || return 0
    mkdir -p /run/drdrill-sysctl
    printf '%s\n' "$value" >"/run/drdrill-sysctl/$key"
    mount --bind "/run/drdrill-sysctl/$key" "$path"
}
shield vm.overcommit_memory 1
shield vm.panic_on_oom 0
shield kernel.panic 10
shield kernel.panic_on_oops 1
shield kernel.keys.root_maxkeys 1000000
shield kernel.keys.root_maxbytes 25000000

# Network tunables are per network namespace: these change this node only.
sysctl_ns() { [[ -e /proc/sys/${1//.//} ]] && echo "$2" >"/proc/sys/${1//.//}" || true; }
sysctl_ns net.ipv4.ip_forward 1
sysctl_ns net.ipv4.conf.all.route_localnet 1
sysctl_ns net.bridge.bridge-nf-call-iptables 1
sysctl_ns net.bridge.bridge-nf-call-ip6tables 1

# Docker's embedded DNS (127.0.0.11) answers on this node's loopback only, so a pod that uses
# the node's resolv.conf (coredns) would query itself. Offer it on the node's own address too
# (DNAT in this node's namespace) and name that address in resolv.conf.
if grep -q '^nameserver 127.0.0.11' /etc/resolv.conf; then
    node_ip=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 | head -n1)
    if [[ -n $node_ip ]]; then
        iptables-save -t nat \
            | sed -e "s/-d 127.0.0.11/-d $node_ip/g" \
                  -e "s/^-A OUTPUT \(.*\) -j DOCKER_OUTPUT$/&\n-A PREROUTING \1 -j DOCKER_OUTPUT/" \
                  -e "s/--to-source :53/--to-source $node_ip:53/g" \
            | iptables-restore
        resolv=$(sed "s/127.0.0.11/$node_ip/" /etc/resolv.conf)
        printf '%s\n' "$resolv" >/etc/resolv.conf  # bind-mounted by Docker: rewrite in place
    fi
fi

# Egress lock: traffic leaves this node only for the kind network it sits on (the other nodes,
# the host's Git relay at the gateway) and the pod network. Anything else -- a pod's request to
# a Service address before kube-proxy has written its rules, a registry, any address outside
# the run -- is refused here instead of being routed out through the host's NAT.
lock_egress() {
    local tables=$1 family=$2 chain=DRDRILL-EGRESS subnet
    command -v "$tables" >/dev/null || return 0
    "$tables" -N "$chain" 2>/dev/null || "$tables" -F "$chain"
    for subnet in $(ip "-$family" -o addr show dev eth0 scope global | awk '{print $4}'); do
        "$tables" -A "$chain" -d "$subnet" -j RETURN
    done
    if [[ $family == 4 ]]; then
        "$tables" -A "$chain" -d @POD_SUBNET@ -j RETURN
    else  # neighbour discovery and router solicitation stay on the link
        "$tables" -A "$chain" -d fe80::/10 -j RETURN
        "$tables" -A "$chain" -d ff00::/8 -j RETURN
    fi
    "$tables" -A "$chain" -j REJECT 2>/dev/null || "$tables" -A "$chain" -j DROP
    "$tables" -C OUTPUT -o eth0 -j "$chain" 2>/dev/null || "$tables" -I OUTPUT 1 -o eth0 -j "$chain"
    "$tables" -C FORWARD -o eth0 -j "$chain" 2>/dev/null || "$tables" -I FORWARD 1 -o eth0 -j "$chain"
}
lock_egress iptables 4
lock_egress ip6tables 6

# A fresh machine id per node (kubelet reports it; systemd would otherwise share the image's).
: >/etc/machine-id

if [[ ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
    info "detected cgroup v1"
    # kubelet (cgroupRoot /kubelet) expects its root in the named systemd hierarchy.
    mkdir -p /sys/fs/cgroup/systemd/kubelet
fi
info "starting init"
exec "$@"
"""

KUBELET_SERVICE = """[Unit]
Description=kubelet: The Kubernetes Node Agent (drdrill kind node)
ConditionPathExists=/var/lib/kubelet/config.yaml
After=containerd.service drdrill-preload.service
Wants=containerd.service

[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStartPre=/usr/local/bin/drdrill-kubelet-cgroups
# The component images must be in containerd before the static pods start.
ExecStartPre=/bin/sh -c 'until [ -e /run/drdrill-preload.done ]; do sleep 0.5; done'
TimeoutStartSec=600
ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
Restart=always
StartLimitInterval=0
RestartSec=1s
CPUAccounting=true
MemoryAccounting=true
Slice=kubelet.slice
KillMode=process

[Install]
WantedBy=multi-user.target
"""

KUBELET_SLICE = """[Unit]
Description=The slice kubelet and its pods run in
Before=slices.target

[Slice]
MemoryAccounting=true
CPUAccounting=true
"""

KUBELET_DEFAULTS = "KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service\n"

KUBELET_CGROUPS = r"""#!/bin/sh
# cgroup v1 only: kubelet's root (cgroupRoot /kubelet, kubelet.slice with the systemd driver)
# must exist in every hierarchy, and systemd makes it only in those it manages (not cpuset,
# nor a separately mounted cpuacct). A new cpuset cgroup starts empty: give it the parent's.
[ -f /sys/fs/cgroup/cgroup.controllers ] && exit 0
for dir in /sys/fs/cgroup/*; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    [ "$(basename "$dir")" = unified ] && continue
    mkdir -p "$dir/kubelet.slice" "$dir/kubelet"
    if [ -f "$dir/cpuset.cpus" ]; then
        for sub in kubelet.slice kubelet; do
            for f in cpuset.cpus cpuset.mems; do
                [ -n "$(cat "$dir/$sub/$f")" ] || cat "$dir/$f" >"$dir/$sub/$f"
            done
        done
    fi
done
"""

PRELOAD_SERVICE = """[Unit]
Description=Import the component images baked into this node into containerd
After=containerd.service
Wants=containerd.service
Before=kubelet.service

[Service]
# Not oneshot: boot (multi-user.target, which kind waits for) must not wait for the imports;
# kubelet waits for /run/drdrill-preload.done instead.
Type=simple
RemainAfterExit=yes
ExecStart=/usr/local/bin/drdrill-preload

[Install]
WantedBy=multi-user.target
"""

PRELOAD = r"""#!/bin/bash
# Import /kind/images/*.tar (written by harness/images/kind_node.py) into containerd's k8s.io
# namespace, where kubelet looks: kubeadm's control plane, pause, coredns, storage.
set -euo pipefail
# kind restarts containerd once to apply its config patches: retry an import it cut short.
for tar in /kind/images/*.tar; do
    for attempt in $(seq 1 60); do
        ctr -n k8s.io images import "$tar" >/dev/null 2>&1 && break
        [ "$attempt" -lt 60 ] || { echo "drdrill-preload: cannot import $tar" >&2; exit 1; }
        sleep 1
    done
done
touch /run/drdrill-preload.done
echo "drdrill-preload: imported $(ls /kind/images/*.tar | wc -l) image archives"
"""

PODNET_SERVICE = """[Unit]
Description=drdrill pod network: this node's CNI config and routes to the other nodes' pods
After=containerd.service

[Service]
ExecStart=/usr/local/bin/drdrill-podnet
Restart=always
RestartSec=2s

[Install]
WantedBy=multi-user.target
"""

PODNET = r"""#!/bin/bash
# drdrill's pod network for kind nodes on one Docker network (kindnetd is not to be had here).
# Every node bridges its own pods (the CNI bridge + host-local plugins, on the podCIDR the
# controller-manager gave its Node) and routes every other node's podCIDR via that node's
# InternalIP. The Node objects are read with the kubelet's own credentials.
set -uo pipefail
kubeconfig=/etc/kubernetes/kubelet.conf
conf=/etc/cni/net.d/10-drdrill-podnet.conflist
self=$(hostname)
write_conf() {
    local body
    body=$(cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "drdrill-podnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$1"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
)
    if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$body" ]]; then
        mkdir -p "$(dirname "$conf")"
        printf '%s\n' "$body" >"$conf.tmp" && mv "$conf.tmp" "$conf"
        echo "drdrill-podnet: pods of $self on $1"
    fi
}
query='{range .items[*]}{.metadata.name}{" "}{.spec.podCIDR}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'
while :; do
    if [[ -s $kubeconfig ]] && nodes=$(kubectl --kubeconfig "$kubeconfig" get nodes -o jsonpath="$query" 2>/dev/null); then
        while read -r name cidr ip; do
            [[ -n ${cidr:-} && -n ${ip:-} ]] || continue
            if [[ $name == "$self" ]]; then
                write_conf "$cidr"
            else
                ip route replace "$cidr" via "$ip" 2>/dev/null || true
            fi
        done <<<"$nodes"
    fi
    sleep 2
done
"""

CONTAINERD_CONFIG = Template("""# drdrill kind node. kind's containerdConfigPatches are merged into this file.
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  tolerate_missing_hugepages_controller = true
  # drdrill's kind config sets this to true where root lacks CAP_SYS_RESOURCE.
  restrict_oom_score_adj = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "/etc/cni/net.d"
""")

CRICTL_YAML = "runtime-endpoint: unix:///run/containerd/containerd.sock\n"

CNI_MANIFEST = """# kind applies this file as the cluster's CNI. drdrill's pod network is a systemd unit on every
# node (drdrill-podnet), which reads the Node objects with the kubelet's credentials; the Node
# authorizer lets a kubelet read only its own Node, so this grants the nodes list/watch.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: drdrill-podnet
rules:
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: drdrill-podnet
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: drdrill-podnet
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:nodes
"""

STORAGE_MANIFEST = Template("""# local-path-provisioner (built from its Go module) and the default StorageClass "standard".
apiVersion: v1
kind: Namespace
metadata:
  name: local-path-storage
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: local-path-provisioner
rules:
  - apiGroups: [""]
    resources: [nodes, persistentvolumeclaims, configmaps, pods, pods/log]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [persistentvolumes, pods]
    verbs: [get, list, watch, create, patch, update, delete]
  - apiGroups: [""]
    resources: [events]
    verbs: [create, patch]
  - apiGroups: [storage.k8s.io]
    resources: [storageclasses]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: local-path-provisioner
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: local-path-provisioner
subjects:
  - kind: ServiceAccount
    name: local-path-provisioner
    namespace: local-path-storage
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: local-path-provisioner
subjects:
  - kind: ServiceAccount
    name: local-path-provisioner
    namespace: local-path-storage
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
spec:
  replicas: 1
  selector:
    matchLabels: {app: local-path-provisioner}
  template:
    metadata:
      labels: {app: local-path-provisioner}
    spec:
      serviceAccountName: local-path-provisioner
      tolerations:
        - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      nodeSelector:
        kubernetes.io/os: linux
      containers:
        - name: local-path-provisioner
          image: $provisioner_image
          imagePullPolicy: IfNotPresent
          command: [local-path-provisioner, --debug, start,
                    --helper-image, $helper_image,
                    --service-account-name, local-path-provisioner,
                    --config, /etc/config/config.json]
          env:
            - name: POD_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            - name: CONFIG_MOUNT_PATH
              value: /etc/config/
          volumeMounts:
            - {name: config-volume, mountPath: /etc/config/}
      volumes:
        - name: config-volume
          configMap: {name: local-path-config}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-path-config
  namespace: local-path-storage
data:
  config.json: |-
    {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES",
                      "paths": ["/var/local-path-provisioner"]}]}
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "$$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "$$VOL_DIR"
  helperPod.yaml: |-
    apiVersion: v1
    kind: Pod
    metadata:
      name: helper-pod
    spec:
      priorityClassName: system-node-critical
      tolerations:
        - {key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}
      containers:
        - name: helper-pod
          image: $helper_image
          imagePullPolicy: IfNotPresent
""")

# Units of Debian's systemd that would act on the host from a privileged container, or that
# have no business in a node: masked (linked to /dev/null).
MASKED_UNITS = (
    "systemd-sysctl.service",          # applies kernel.* tunables, which are not namespaced
    "systemd-binfmt.service",          # host-wide binfmt_misc
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-modules-load.service",    # no modules to load in a container
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "getty@tty1.service",
    "console-getty.service",
    "systemd-logind.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "dev-hugepages.mount",
)

ENABLED_UNITS = ("containerd.service", "kubelet.service", "drdrill-preload.service",
                 "drdrill-podnet.service")
