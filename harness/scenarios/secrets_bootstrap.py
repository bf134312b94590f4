"""secrets-bootstrap: the repo holds SOPS-encrypted Secrets (age). The recovery needs the age
key as a manual input: with it the drill converges and kustomize-controller decrypts (checked
against `sops --decrypt` of the file); without it, preflight stops and names the key and the
Kustomizations that need it (harness.repo.check_inputs)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.command import Command, run
from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ExpectationFailed, HarnessError
from harness.report.model import FigureItem, RecoveryFigure
from harness.scenarios._common import iter_yaml_docs

NAME = "secrets-bootstrap"
SOPS_MARK = "ENC[AES256_GCM"
AGE_KEY_FIELD = "age.agekey"


def sops_files(top: Path, path: str) -> list[tuple[Path, dict[str, Any]]]:
    """SOPS-encrypted Secret manifests under a Kustomization's path."""
    out = []
    base = (top / path.lstrip("./")).resolve()
    for file in sorted(base.rglob("*.y*ml")) if base.is_dir() else []:
        for _, doc in iter_yaml_docs(file):
            if doc.get("kind") == "Secret" and isinstance(doc.get("sops"), dict):
                out.append((file, doc))
    return out


def secret_values(doc: Mapping[str, Any]) -> dict[str, str]:
    """A Secret manifest's values as text (data decoded, stringData as is)."""
    values = {k: base64.b64decode(v).decode("utf-8", "replace")
              for k, v in (doc.get("data") or {}).items()}
    values.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    return values


def decryption_problems(ref: str, in_cluster: Mapping[str, str] | None,
                        plain: Mapping[str, str]) -> list[str]:
    """What is wrong with the Secret Flux applied, compared with the decrypted file (values are
    never put into the message)."""
    if in_cluster is None:
        return [f"{ref}: not in the cluster"]
    problems = [f"{ref}: key {k} still SOPS ciphertext" for k, v in sorted(in_cluster.items())
                if SOPS_MARK in v]
    problems += [f"{ref}: key {k} missing" for k in sorted(set(plain) - set(in_cluster))]
    problems += [f"{ref}: key {k} differs from `sops --decrypt` of the file"
                 for k in sorted(set(plain) & set(in_cluster))
                 if plain[k] != in_cluster[k] and SOPS_MARK not in in_cluster[k]]
    return problems


def age_keys(s: Any) -> dict[str, str]:
    """`namespace/name` -> the age key of each supplied decryption Secret (from --inputs)."""
    out = {}
    for doc in s.supplied.docs if s.supplied else ():
        meta = doc.get("metadata") or {}
        values = secret_values(doc) if doc.get("kind") == "Secret" else {}
        if AGE_KEY_FIELD in values:
            out[f"{meta.get('namespace') or 'default'}/{meta.get('name')}"] = values[AGE_KEY_FIELD]
    return out


def decrypt(s: Any, file: Path, key: str) -> dict[str, str]:
    sops = s.tools.get("sops")
    if sops is None:
        raise HarnessError("secrets-bootstrap needs the pinned sops", fix="drdrill tools ensure")
    # The key goes through the environment, never argv (argv is logged).
    out = run(Command.of(sops.path, "--decrypt", "--input-type", "yaml", "--output-type",
                         "yaml", file).with_env(SOPS_AGE_KEY=key)).stdout
    doc = yaml.safe_load(out)
    return secret_values(doc if isinstance(doc, dict) else {})


def check_decrypted(s: Any, rnd: int) -> None:
    from harness.scenarios._common import kustomizations

    core = _core(s)
    keys = age_keys(s)
    found: list[str] = []
    problems: list[str] = []
    for ks in kustomizations(s):
        spec = ks.get("spec") or {}
        dec = spec.get("decryption") or {}
        if dec.get("provider") != "sops" or not spec.get("path"):
            continue
        meta = ks.get("metadata") or {}
        key_ref = f"{meta.get('namespace')}/{(dec.get('secretRef') or {}).get('name')}"
        key = keys.get(key_ref)
        for file, doc in sops_files(s.rev.path, spec["path"]):
            dm = doc.get("metadata") or {}
            ns = dm.get("namespace") or spec.get("targetNamespace") or "default"
            ref = f"Secret/{ns}/{dm.get('name')}"
            found.append(ref)
            if key is None:
                problems.append(f"{ref}: no age key {key_ref} among the inputs to check it with")
                continue
            try:
                live = core.read_namespaced_secret(dm.get("name"), ns)
                in_cluster: dict[str, str] | None = {
                    k: base64.b64decode(v).decode("utf-8", "replace")
                    for k, v in (live.data or {}).items()}
            except Exception:  # noqa: BLE001 - reported as missing
                in_cluster = None
            problems += decryption_problems(ref, in_cluster, decrypt(s, file, key))
    s.scratch["secrets"] = found
    if not found:
        problems.append("no SOPS-encrypted Secret under any Kustomization with "
                        "spec.decryption.provider=sops: nothing was decrypted")
    if problems:
        raise ExpectationFailed(NAME, problems)


def _core(s: Any) -> Any:
    from kubernetes import client as k8s

    return k8s.CoreV1Api(s.api)


def figures(s: Any) -> Sequence[RecoveryFigure]:
    steps = [m for m in s.drill.manual_steps if "sops" in m.id or "age" in m.id]
    items = [FigureItem(f"decrypted {ref}", None) for ref in s.scratch.get("secrets", [])]
    items += [FigureItem(f"manual step {m.id}", m.duration_s, m.performed_by) for m in steps]
    return [RecoveryFigure(
        "time_to_ready_with_key_s", "time-to-ready with the age key",
        s.drill.time_to_ready(round=1),
        "Empty cluster until converged with every SOPS Secret decrypted by Flux, the age key "
        "supplied as a manual input.", items=tuple(items))]


SCENARIO = Scenario(
    name=NAME,
    summary="SOPS/age-encrypted Secrets: the age key is a manual input; Flux decrypts them",
    description="Bootstrap a repo with SOPS-encrypted Secrets (age) with the age key supplied "
                "as a manual input, and check kustomize-controller decrypted each Secret to "
                "what `sops --decrypt` gives; without the key preflight stops and names it.",
    phases=phases(BUILD),
    figure="time-to-ready with the age key",
    verify=check_decrypted,
    figures=figures,
    tools=("sops",),
)
