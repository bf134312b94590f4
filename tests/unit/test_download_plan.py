"""Pure parts of downloads (checksum files, mirrors) and of init's plan (providers, secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.ci.plan import build_plan, providers_for
from harness.config import Config
from harness.errors import ConfigError
from harness.tools import load_manifest
from harness.tools.download import downloadable, expected_sha256, mirrored_url, registry_url

pytestmark = pytest.mark.unit

HEX = "a" * 64


@pytest.mark.parametrize(("text", "name", "want"), [
    (f"{HEX}\n", "kube-apiserver", HEX),                               # dl.k8s.io .sha256
    (f"{'b' * 64}  other.tar.gz\n{HEX}  etcd-v3.6.16-linux-amd64.tar.gz\n",
     "etcd-v3.6.16-linux-amd64.tar.gz", HEX),                          # SHA256SUMS
    (f"{HEX} *kind-linux-amd64\n", "kind-linux-amd64", HEX),           # binary-mode marker
    (f"{HEX}  dist/sops-v3.13.2.linux.amd64\n", "sops-v3.13.2.linux.amd64", HEX),
    (f"{'b' * 64}  other\n", "etcd.tar.gz", None),                     # not listed
    ("not a checksum\n", "x", None),
])
def test_checksum_files_in_the_forms_releases_publish(text, name, want):
    assert expected_sha256(text, name) == want


def test_mirrors_stand_in_for_release_sites_and_registries():
    cfg = Config(release_mirror="http://127.0.0.1:8080/", oci_mirror="ghcr.io=http://127.0.0.1:5000")
    assert mirrored_url(cfg, "https://dl.k8s.io/release/v1/bin/kubectl") == \
        "http://127.0.0.1:8080/dl.k8s.io/release/v1/bin/kubectl"
    assert registry_url(cfg, "ghcr.io") == "http://127.0.0.1:5000"
    assert registry_url(cfg, "quay.io") == "https://quay.io"
    tools = load_manifest().tools
    # Off by default: drdrill contacts no host the user did not choose.
    assert not downloadable(Config(), tools["etcd"])
    assert not downloadable(Config(), tools["source-controller"])
    assert downloadable(Config(allow_download=True), tools["etcd"])
    assert downloadable(cfg, tools["etcd"]) and downloadable(cfg, tools["source-controller"])
    assert not downloadable(Config(oci_mirror="ghcr.io=http://x"), tools["etcd"])
    assert not downloadable(Config(allow_download=True), tools["actionlint"])  # build only


def test_every_release_and_image_entry_names_this_tools_version():
    for spec in load_manifest().tools.values():
        for template in ((spec.release.url, spec.release.checksums) if spec.release else ()) + \
                ((spec.image.ref,) if spec.image else ()):
            assert "{version}" in template, (spec.name, template)


def test_providers_follow_embedded_limits_and_preflights_own_fix():
    assert providers_for({"embedded_limits": []}) == ("embedded",)
    assert providers_for({"embedded_limits": [{"providers": ["kind", "k3d", "lab"]},
                                              {"providers": ["k3d", "lab"]}]}) == ("k3d",)
    unsupported = {"severity": "unsupported", "fix": "drill this cluster with --provider kind"}
    assert providers_for({"problems": [unsupported]}) == ("kind",)
    assert providers_for({"problems": [{"severity": "invalid", "fix": "--provider k3d"}]}) == \
        ("embedded",)


def test_a_plan_names_one_secret_per_input_and_refuses_a_repo_without_clusters():
    data = {"verdict": "clean", "manual_inputs": [
        {"kind": "Secret", "namespace": "flux-system", "name": "sops-age", "status": "missing"},
        {"kind": "Secret", "namespace": "flux-system", "name": "flux-system",
         "status": "missing", "replaced_in_drill": True},
        {"kind": "Secret", "namespace": "apps", "name": "opt", "status": "optional"}]}
    plan = build_plan(Path("/r/fleet"), ["clusters/a", "clusters/b"], lambda c: data)
    assert [i.secret for i in plan.inputs] == ["DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE"]
    assert [(c.cluster, c.slug, c.inputs) for c in plan.cells] == [
        ("clusters/a", "clusters-a-embedded", ("DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE",)),
        ("clusters/b", "clusters-b-embedded", ("DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE",))]
    with pytest.raises(ConfigError, match="syncs no cluster folder"):
        build_plan(Path("/r/empty"), [], lambda c: data)
