"""The offline repo model's pure parts: Go-compatible YAML, Flux's envsubst, .sourceignore,
the kinds table, and the inventory rules (secret stores, run-time producers, registries)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.converge import NEVER_SERVED, SOURCE_KINDS, WATCHER_KINDS, watched_kinds
from harness.gitops import kinds, yamlgo
from harness.gitops.inputs import Obj, needs, registry_of, runtime_producers
from harness.gitops.render import Substitution, envsubst
from harness.gitops.sourceignore import Ignore, source_files

pytestmark = pytest.mark.unit


def test_anchor_redefined_in_one_document_is_accepted_like_go():
    text = "a: &x 1\nb: *x\nc: &x 2\nd: *x\n"
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)  # PyYAML refuses; Go's YAML (and so Flux) does not
    assert yamlgo.parse_all(text) == [{"a": 1, "b": 1, "c": 2, "d": 2}]


def test_merge_keys_and_custom_tags():
    text = "base: &b {x: 1, y: 2}\nmerged:\n  <<: *b\n  y: 3\npw: !env_var DB_PASSWORD\n"
    assert yamlgo.parse_all(text) == [{"base": {"x": 1, "y": 2}, "merged": {"x": 1, "y": 3},
                                       "pw": "DB_PASSWORD"}]


def test_undefined_alias_is_still_an_error():
    with pytest.raises(yaml.YAMLError):
        yamlgo.parse_all("a: *nope\n")


@pytest.mark.parametrize(("text", "complete", "want"), [
    ("${A} $A", True, "1 1"),
    ("$${A} $$A", True, "${A} $A"),
    ("${MISSING}", True, ""),  # the pinned kustomize-controller: not strict, unset is empty
    ("${MISSING}", False, "${MISSING}"),  # a source unknown offline: left as written
    ("${MISSING:=d} ${MISSING:-e} ${MISSING=f}", True, "d e f"),
    ("${EMPTY:=d}|${EMPTY=d}|${EMPTY-d}", True, "d||"),
    ("${X:=${NESTED}}", True, "[]"),
    ("${A//1/2} $(cmd) $1", True, "${A//1/2} $(cmd) $1"),
])
def test_envsubst_as_flux(text, complete, want):
    sub = Substitution({"A": "1", "EMPTY": "", "NESTED": "[]"}, complete)
    assert envsubst(text, sub).text == want


def test_unset_variables_are_reported():
    assert envsubst("${A} ${B} $C", Substitution({"A": "x"}, True)).unset == {"B", "C"}


def test_sourceignore_rules(tmp_path):
    ignore = Ignore(["/docs/", "*.md", "!keep.md", "apps/**/secret*.yaml"])
    assert ignore.ignored("docs", is_dir=True) and not ignore.ignored("x/docs", is_dir=True)
    assert ignore.ignored("a/b.md", is_dir=False) and not ignore.ignored("keep.md", is_dir=False)
    assert ignore.ignored("apps/x/y/secret-db.yaml", is_dir=False)
    (tmp_path / "sub" / "junk").mkdir(parents=True)
    (tmp_path / "sub" / ".sourceignore").write_text("junk/\n")
    (tmp_path / "sub" / "junk" / "x.yaml").write_text("a: 1\n")
    (tmp_path / "sub" / "ok.yaml").write_text("a: 1\n")
    (tmp_path / ".sops.yaml").write_text("creation_rules: []\n")
    (tmp_path / "logo.png").write_bytes(b"")
    assert source_files(tmp_path) == ["sub/.sourceignore", "sub/ok.yaml"]
    assert "sub/junk/x.yaml" in source_files(tmp_path, sourceignore=False)


def test_one_kinds_table_drives_converge():
    served = {k.kind for k in kinds.KINDS if k.runnable}
    watched = {w.kind for w in watched_kinds(helm=True, watcher=True, notification=True,
                                             image=True)}
    assert watched == served
    assert {w.kind for w in SOURCE_KINDS} >= {"GitRepository", "OCIRepository", "HelmRepository",
                                              "HelmChart", "Bucket"}
    assert {w.kind for w in WATCHER_KINDS} == {"ExternalArtifact", "ArtifactGenerator"}
    assert {"FluxInstance", "ResourceSet", "ResourceSetInputProvider"} <= NEVER_SERVED
    assert not {"Alert", "Provider", "Receiver", "ImagePolicy"} & NEVER_SERVED
    assert kinds.lookup("helm.toolkit.fluxcd.io/v2beta1", "HelmRelease") is \
        kinds.by_kind("HelmRelease")
    for k in kinds.KINDS:
        assert k.plural.endswith("s") and k.plural == k.plural.lower()


def obj(kind, name, ns, spec=None, api="external-secrets.io/v1", **meta):
    return Obj({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns,
                                                             **meta}, "spec": spec or {}},
               ns, "Kustomization/flux-system/x", "f.yaml")


def test_secret_store_secret_zero_refs():
    vault = obj("SecretStore", "vault", "apps", {"provider": {"vault": {"auth": {
        "tokenSecretRef": {"name": "vault-token", "key": "t"},
        "kubernetes": {"serviceAccountRef": {"name": "sa"}}}}}})
    got = [(n.kind, n.namespace, n.name, n.field) for n in needs(vault)]
    assert got == [("Secret", "apps", "vault-token", "spec.provider.vault.auth.tokenSecretRef")]
    op = obj("ClusterSecretStore", "op", "", {"provider": {"onepassword": {"auth": {
        "secretRef": {"connectTokenSecretRef": {"name": "tok", "namespace": "eso"}}}}}})
    [need] = needs(op)
    assert (need.namespace, need.name) == ("eso", "tok") and need.why.startswith("secret-zero")


def test_runtime_producers():
    producers = runtime_producers([
        obj("ExternalSecret", "es", "apps", {"secretStoreRef": {"name": "vault"},
                                             "target": {"name": "made"}}),
        obj("Certificate", "c", "apps", {"secretName": "tls"}, api="cert-manager.io/v1"),
        obj("ClusterPolicy", "p", "", {"rules": [{"name": "r", "generate": {
            "kind": "Secret", "name": "copied", "namespace": "{{request.object.name}}"}}]},
            api="kyverno.io/v1"),
        obj("Secret", "shared", "default", None, api="v1", annotations={
            "replicator.v1.mittwald.de/replicate-to": "apps,other-*"}),
    ])
    assert "external-secrets" in producers[("Secret", "apps", "made")]
    assert "cert-manager" in producers[("Secret", "apps", "tls")]
    assert "Kyverno" in producers[("Secret", "*", "copied")]
    assert "replicator" in producers[("Secret", "apps", "shared")]
    assert ("Secret", "*", "shared") in producers


@pytest.mark.parametrize(("image", "registry"), [
    ("nginx", "docker.io"), ("library/nginx:1", "docker.io"), ("ghcr.io/a/b:1", "ghcr.io"),
    ("localhost:5000/x", "localhost:5000"), ("registry.k8s.io/pause@sha256:ab", "registry.k8s.io"),
])
def test_registry_of(image, registry):
    assert registry_of(image) == registry


def test_bootstrap_material_of_nested_repos_and_other_clusters_is_not_ours(tmp_path: Path) -> None:
    from harness.gitops import bootstrap
    for rel in ("clusters/home/ks.yaml", "bootstrap/instance.yaml",
                "tests/data/repos/x/clusters/main/flux-system/instance.yaml",
                "vendor/sub/.git/HEAD", "vendor/sub/flux.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("a: 1\n")
    files = ["clusters/home/ks.yaml", "bootstrap/instance.yaml",
             "tests/data/repos/x/clusters/main/flux-system/instance.yaml", "vendor/sub/flux.yaml"]
    assert bootstrap.own_files(tmp_path, files) == ["clusters/home/ks.yaml",
                                                    "bootstrap/instance.yaml"]
    # a folder with clusters/ that holds the cluster under test is this repo, not a nested one
    assert bootstrap.own_files(tmp_path, files, "tests/data/repos/x/clusters/main") == files[:3]
    inst = {"kind": "FluxInstance", "spec": {"sync": {"path": "./clusters/home/"}}}
    assert bootstrap.syncs_path(inst, "clusters/home")
    assert not bootstrap.syncs_path(inst, "clusters/staging")
    assert bootstrap.syncs_path(inst, "kubernetes/clusters/home")  # source root is a subfolder
    assert not bootstrap.syncs_path(inst, "kubernetes/otherclusters/home")
    assert bootstrap.syncs_path({"kind": "FluxInstance", "spec": {}}, "clusters/staging")


def test_secrets_named_in_helm_values_by_common_chart_conventions():
    from harness.gitops.inputs import values_secrets

    values = {
        "auth": {"existingSecret": "db-auth"},
        "ingress": {"tls": [{"secretName": "web-tls"}]},  # cert-manager makes TLS secrets
        "connect": {"credentials": {"existingSecretName": "op-creds"},
                    "credentialsName": "op-connect-credentials"},
        "controllers": {"main": {"containers": {"app": {
            "envFrom": [{"secretRef": {"name": "app-env"}}, {"secret": "app-env2"},
                        {"configMapRef": {"name": "cm"}}],
            "env": {"TOKEN": {"valueFrom": {"secretKeyRef": {"name": "tok", "key": "t"}}}}}}}},
        "templated": {"existingSecret": "{{ .Release.Name }}-x"},
        "unset": {"existingSecret": ""},
    }
    assert {name for _, name in values_secrets(values, "spec.values")} == {
        "db-auth", "op-creds", "op-connect-credentials", "app-env", "app-env2", "tok"}
