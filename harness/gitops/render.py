"""Render Kustomization paths exactly as kustomize-controller does: from the source artifact
(`.sourceignore` applied), with the kustomization.yaml Flux generates where a folder has none,
the Kustomization's own overlay (targetNamespace, namePrefix/Suffix, patches, images,
components), `kustomize build` (only its output is parsed) and postBuild substitution.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.command import Command, run
from harness.errors import CommandError, ManifestError, RepoError
from harness.gitops import yamlgo
from harness.gitops.sourceignore import source_files

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
BATCH = 48
BATCH_KEY = "drdrill.internal/build"
BATCH_PREFIX = "drdrillb"
"""Each build of a batch gets its own namePrefix, so builds that render the same object do
not collide in the one kustomize run; the prefix is taken off again."""


def _unprefix(node: Any, prefix: str) -> Any:
    """Take the batch prefix off everywhere: kustomize also writes it into name references
    (configMapRef, valuesFrom with a nameReference config, ...)."""
    if isinstance(node, str):
        return node.replace(prefix, "") if prefix in node else node
    if isinstance(node, dict):
        for k, v in node.items():
            node[k] = _unprefix(v, prefix)
    elif isinstance(node, list):
        node[:] = [_unprefix(v, prefix) for v in node]
    return node
SUBSTITUTE_DISABLED = "kustomize.toolkit.fluxcd.io/substitute"
_Dumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def kustomization_file(d: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (d / name).is_file():
            return d / name
    return None


# -- postBuild substitution (drone/envsubst, as kustomize-controller uses it) ---------------

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")


@dataclass(frozen=True)
class Substitution:
    variables: Mapping[str, str]
    complete: bool
    """False when a substituteFrom source is unknown offline (a manual input, or SOPS):
    unset variables are then left as written instead of becoming empty."""
    strict: bool = False
    """kustomize-controller's StrictPostBuildSubstitutions gate (off in the pinned release)."""


@dataclass
class SubstResult:
    text: str
    unset: set[str] = field(default_factory=set)


def envsubst(text: str, sub: Substitution) -> SubstResult:
    """`${VAR}`, `$VAR`, `${VAR:=default}`, `${VAR:-default}`, `${VAR=default}`, `${VAR-d}`,
    defaults that hold variables themselves (`${A:=${B}}`); `$$` is a literal `$`."""
    unset: set[str] = set()
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < n and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            body = text[i + 2:j - 1] if depth == 0 else None
            m = _NAME.match(body) if body is not None else None
            if body is None or m is None:
                out.append(text[i:j])
                i = j
                continue
            name, rest = m.group(0), body[m.end():]
            value = sub.variables.get(name)
            if rest == "":
                if value is None:
                    unset.add(name)
                    out.append("" if sub.complete else text[i:j])
                else:
                    out.append(value)
            elif rest[:2] in (":=", ":-") or rest[:1] in ("=", "-"):
                op_len = 2 if rest[0] == ":" else 1
                use_default = value is None or (op_len == 2 and value == "")
                if use_default:
                    inner = envsubst(rest[op_len:], sub)
                    unset |= inner.unset
                    out.append(inner.text)
                else:
                    out.append(str(value))
            else:
                out.append(text[i:j])  # an operator Flux's envsubst has and drills never need
            i = j
        else:
            m = _NAME.match(text, i + 1)
            if m is None:
                out.append(c)
                i += 1
                continue
            name = m.group(0)
            value = sub.variables.get(name)
            if value is None:
                unset.add(name)
                out.append("" if sub.complete else text[i:m.end()])
            else:
                out.append(value)
            i = m.end()
    return SubstResult("".join(out), unset)


def substitute(docs: list[dict[str, Any]], sub: Substitution, *, owner: str,
               file: str) -> tuple[list[dict[str, Any]], set[str]]:
    out: list[dict[str, Any]] = []
    unset: set[str] = set()
    for doc in docs:
        meta = doc.get("metadata") or {}
        flags = {**(meta.get("labels") or {}), **(meta.get("annotations") or {})}
        if "$" not in json.dumps(doc, default=str) or \
                str(flags.get(SUBSTITUTE_DISABLED, "")).lower() == "disabled":
            out.append(doc)  # nothing to substitute (json is the cheap check)
            continue
        text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False)
        res = envsubst(text, sub)
        unset |= res.unset
        try:
            out.extend(yamlgo.manifests(yamlgo.parse_all(res.text)))
        except yaml.YAMLError as exc:
            raise ManifestError(f"postBuild substitution made invalid YAML of "
                                f"{doc.get('kind')}/{meta.get('name')}: {yamlgo.problem(exc)}",
                                file=file, obj=owner,
                                fix="quote the substituted value, or escape `$` as `$$`"
                                ) from exc
    if sub.strict and unset:
        raise ManifestError(f"variables not set for substitution: {', '.join(sorted(unset))}",
                            file=file, obj=owner,
                            fix="set them in postBuild.substitute(From) or give defaults "
                                "(${VAR:=default})")
    return out, unset


# -- source-watcher's copy rules ---------------------------------------------------------------

def copy_into(src_root: Path, pattern: str, dst_root: Path, dest: str) -> None:
    """One ArtifactGenerator `copy` operation: `@src/<pattern>` to `@artifact/<dest>`. A glob
    keeps the paths below its fixed prefix; a folder copies its contents; a file keeps its
    name when `dest` ends with `/`."""
    dest_dir = dst_root / dest
    if any(c in pattern for c in "*?["):
        parts = pattern.split("/")
        fixed = []
        for part in parts:
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        base = src_root.joinpath(*fixed)
        # pathlib's trailing `**` matches folders only; source-watcher's means every file.
        glob = pattern + "/*" if pattern.endswith("**") else pattern
        for f in sorted(src_root.glob(glob)):
            if f.is_file():
                target = dest_dir / f.relative_to(base)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
        return
    src = src_root / pattern.rstrip("/")
    if src.is_dir():
        shutil.copytree(src, dest_dir, dirs_exist_ok=True)
    elif src.is_file():
        target = dest_dir / src.name if dest.endswith("/") or not dest else dst_root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


# -- the artifact and its builds -------------------------------------------------------------

@dataclass(frozen=True)
class Build:
    """One Kustomization's build: what kustomize-controller takes from its spec."""

    owner: str
    path: str
    """Repo-relative folder (spec.path)."""
    target_namespace: str | None = None
    name_prefix: str | None = None
    name_suffix: str | None = None
    overlay: str = "{}"
    """JSON of spec.patches / images / components (hashable, so builds are shared)."""

    @classmethod
    def of(cls, owner: str, path: str, spec: Mapping[str, Any]) -> Build:
        overlay = {k: spec[k] for k in ("patches", "images", "components") if spec.get(k)}
        return cls(owner, path, spec.get("targetNamespace") or None,
                   spec.get("namePrefix") or None, spec.get("nameSuffix") or None,
                   json.dumps(overlay, sort_keys=True, default=str))

    @property
    def key(self) -> tuple[str, str | None, str | None, str | None, str]:
        return (self.path, self.target_namespace, self.name_prefix, self.name_suffix,
                self.overlay)


@dataclass
class Rendered:
    docs: list[dict[str, Any]]
    error: RepoError | None = None
    remote: bool = False
    """The build needs a remote base, which preflight (offline) does not fetch."""


REMOTE = re.compile(r"^(https?://|git@|ssh://|github\.com/|gitlab\.com/|bitbucket\.org/)|"
                    r"\?ref=|\.git(//|$)")


class Artifact:
    """A private copy of the files source-controller would ship, where builds may write the
    generated kustomization.yaml files as kustomize-controller does."""

    def __init__(self, top: Path, kustomize: Path | None, *, ignore: Sequence[str] = ()) -> None:
        self.top = top
        self.kustomize = kustomize
        self.dir = Path(tempfile.mkdtemp(prefix="drdrill-artifact-"))
        try:  # an interrupt while copying must not leave the copy behind
            self.files = set(source_files(top, ignore))
            for rel in self.files:
                src, dst = top / rel, self.dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_symlink() or not src.is_file():
                    continue
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
        except BaseException:
            self.close()
            raise
        self._cache: dict[tuple[Any, ...], Rendered] = {}
        self._used: dict[str, tuple[Any, ...]] = {}
        """Folder -> the build whose kustomization file it now holds."""

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Artifact:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, rel: str) -> bool:
        return (self.dir / rel).is_dir()

    def render_all(self, builds: Sequence[Build], *, jobs: int = 4) -> list[Rendered]:
        todo = [b for b in dict.fromkeys(builds) if b.key not in self._cache]
        pairs = self._prepare_all(todo)
        # One kustomize run per worker (its start-up dominates small builds), at most BATCH
        # builds each, so a failing build costs a few halvings, not the whole level.
        size = max(2, min(BATCH, -(-len(pairs) // max(1, jobs))))
        chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for chunk, results in zip(chunks, pool.map(self._build_group,
                                                       [[p for _, p in c] for c in chunks]),
                                      strict=True):
                for (b, _), r in zip(chunk, results, strict=True):
                    self._cache[b.key] = r
        return [self._cache[b.key] for b in builds]

    def _build_group(self, builds: Sequence[Build]) -> list[Rendered]:
        """One kustomize run for the group; halves of it where builds collide or fail."""
        if len(builds) == 1:
            return [self._build(builds[0])]
        results, culprit = self._build_batch(builds)
        if results is not None:
            return results
        if culprit is not None:  # kustomize named the failing build: the rest stay batched
            rest = [b for i, b in enumerate(builds) if i != culprit]
            rendered = self._build_group(rest)
            rendered.insert(culprit, self._build(builds[culprit]))
            return rendered
        half = len(builds) // 2
        return [*self._build_group(builds[:half]), *self._build_group(builds[half:])]

    def _build_batch(self, builds: Sequence[Build]) -> tuple[list[Rendered] | None, int | None]:
        """Many builds in one kustomize run (its start-up dominates small builds): each build
        is wrapped so its objects carry its index. (None, index of the failing build if
        kustomize names it) when the batch fails."""
        if self.kustomize is None or len(builds) < 2:
            return None, None
        wrap = Path(tempfile.mkdtemp(prefix="drdrill-batch-"))
        try:
            for i, b in enumerate(builds):
                (wrap / f"b{i}").mkdir()
                (wrap / f"b{i}" / "kustomization.yaml").write_text(yaml.safe_dump({
                    "resources": [os.path.relpath(self.dir / b.path, wrap / f"b{i}")],
                    "namePrefix": f"{BATCH_PREFIX}{i}-", "commonAnnotations": {BATCH_KEY: str(i)},
                }), encoding="utf-8")
            (wrap / "kustomization.yaml").write_text(yaml.safe_dump(
                {"resources": [f"b{i}" for i in range(len(builds))]}), encoding="utf-8")
            try:
                out = run(Command.of(str(self.kustomize), "build", "--load-restrictor",
                                     "LoadRestrictionsNone", str(wrap)).with_timeout(120)).stdout
            except CommandError as exc:
                m = re.search(r"accumulating resources from 'b(\d+)'", exc.stderr or "")
                culprit = int(m.group(1)) if m and int(m.group(1)) < len(builds) else None
                return None, culprit
        finally:
            shutil.rmtree(wrap, ignore_errors=True)
        results: list[Rendered] = [Rendered([]) for _ in builds]
        for doc in yamlgo.manifests(yamlgo.parse_all(out)):
            ann = (doc.get("metadata") or {}).get("annotations") or {}
            idx = ann.pop(BATCH_KEY, None)
            if not ann:
                doc["metadata"].pop("annotations", None)
            if idx is None:
                return None, None
            _unprefix(doc, f"{BATCH_PREFIX}{idx}-")
            results[int(idx)].docs.append(doc)
        return results, None

    # -- one build -------------------------------------------------------------------------
    def _prepare_all(self, builds: Sequence[Build]) -> list[tuple[Build, Build]]:
        """Write generated/overlaid kustomization files; builds sharing a folder but not an
        overlay get their own copy of the folder (a sibling, so relative paths still hold)."""
        ready: list[tuple[Build, Build]] = []
        for b in builds:
            try:
                rel = b.path
                if self._used.get(rel, b.key) != b.key:
                    rel = self._clone_dir(b)
                self._used[rel] = b.key
                self._prepare(b, rel)
                ready.append((b, Build(b.owner, rel, b.target_namespace, b.name_prefix,
                                       b.name_suffix, b.overlay)))
            except RepoError as exc:
                self._cache[b.key] = Rendered([], exc)
        return ready

    def _clone_dir(self, b: Build) -> str:
        src = self.dir / b.path
        n = 1
        while (dst := src.with_name(f"{src.name}.drdrill{n}")).exists():
            n += 1
        shutil.copytree(src, dst, copy_function=shutil.copy2)
        for name in KUSTOMIZATION_FILES:  # back to what the repo has, before any overlay
            if (dst / name).exists():
                (dst / name).unlink()
                if (self.top / b.path / name).is_file():
                    shutil.copy2(self.top / b.path / name, dst / name)
        return os.path.relpath(dst, self.dir)

    def _prepare(self, b: Build, rel: str) -> None:
        d = self.dir / rel
        kfile = kustomization_file(d)
        if kfile is None:
            data: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                    "kind": "Kustomization", "resources": self._scan(d, b)}
            kfile = d / "kustomization.yaml"
        else:
            try:
                loaded = yamlgo.parse_all(kfile.read_text(encoding="utf-8", errors="replace"))
            except yaml.YAMLError as exc:
                raise ManifestError(yamlgo.problem(exc), file=self._rel(kfile), obj=b.owner,
                                    fix="fix the YAML syntax of the kustomization file") from exc
            data = loaded[0] if loaded and isinstance(loaded[0], dict) else {}
        overlay = json.loads(b.overlay)
        if not (overlay or b.target_namespace or b.name_prefix or b.name_suffix) and \
                kfile.exists():
            return
        if b.target_namespace:
            data["namespace"] = b.target_namespace
        if b.name_prefix:
            data["namePrefix"] = b.name_prefix
        if b.name_suffix:
            data["nameSuffix"] = b.name_suffix
        for key in ("patches", "images", "components"):
            if overlay.get(key):
                data[key] = [*(data.get(key) or []), *overlay[key]]
        if kfile.exists():
            kfile.unlink()  # a hard link to the user's checkout: never write through it
        kfile.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def _scan(self, d: Path, b: Build) -> list[str]:
        """fluxcd/pkg/kustomize's generator: every manifest below `d`; a sub-folder with its
        own kustomization file is one resource and is not descended into."""
        found: list[str] = []
        for root, dirs, files in os.walk(d):
            here = Path(root)
            if here != d and kustomization_file(here) is not None:
                found.append(os.path.relpath(here, d))
                dirs[:] = []
                continue
            dirs.sort()
            for f in sorted(files):
                if not f.endswith((".yaml", ".yml")):
                    continue
                p = here / f
                try:
                    docs = yamlgo.load_file(p)
                except yaml.YAMLError as exc:
                    raise ManifestError(f"failed to decode Kubernetes YAML: "
                                        f"{yamlgo.problem(exc)}", file=self._rel(p), obj=b.owner,
                                        fix="fix the YAML syntax (check indentation and "
                                            "brackets)") from exc
                if any("kind" in x for x in docs):
                    found.append(os.path.relpath(p, d))
        return found

    def _rel(self, p: Path) -> str:
        return os.path.relpath(p, self.dir)

    def _remote_bases(self, d: Path, seen: set[Path] | None = None) -> list[str]:
        seen = seen if seen is not None else set()
        kfile = kustomization_file(d)
        if kfile is None or d in seen:
            return []
        seen.add(d)
        try:
            data = (yamlgo.parse_all(kfile.read_text(encoding="utf-8")) or [{}])[0] or {}
        except yaml.YAMLError:
            return []
        out: list[str] = []
        for key in ("resources", "bases", "components"):
            for entry in data.get(key) or []:
                if not isinstance(entry, str):
                    continue
                if REMOTE.search(entry):
                    out.append(entry)
                elif (d / entry).is_dir():
                    out.extend(self._remote_bases((d / entry).resolve(), seen))
        return out

    def _blame(self, d: Path, seen: set[Path]) -> tuple[str, str] | None:
        """The manifest (a resource or patch file, never a generator's input) that is not
        valid YAML, if that is why kustomize failed."""
        kfile = kustomization_file(d)
        if kfile is None or d in seen:
            return None
        seen.add(d)
        try:
            data = (yamlgo.parse_all(kfile.read_text(encoding="utf-8")) or [{}])[0] or {}
        except yaml.YAMLError as exc:
            return self._rel(kfile), yamlgo.problem(exc)
        entries = [e for key in ("resources", "bases", "components", "patchesStrategicMerge")
                   for e in data.get(key) or [] if isinstance(e, str)]
        entries += [p["path"] for p in data.get("patches") or []
                    if isinstance(p, Mapping) and isinstance(p.get("path"), str)]
        for entry in entries:
            target = (d / entry)
            if target.is_dir():
                found = self._blame(target.resolve(), seen)
                if found:
                    return found
            elif target.is_file():
                try:
                    yamlgo.parse_all(target.read_text(encoding="utf-8", errors="replace"))
                except yaml.YAMLError as exc:
                    return self._rel(target.resolve()), yamlgo.problem(exc)
        return None

    def remote_bases(self, rel: str) -> list[str]:
        return self._remote_bases((self.dir / rel).resolve())

    def _build(self, b: Build) -> Rendered:
        if self.kustomize is None:
            return Rendered([], RepoError("kustomize is needed to render this path", file=b.path,
                                          obj=b.owner, fix="run `drdrill tools ensure`"))
        d = self.dir / b.path
        try:
            out = run(Command.of(str(self.kustomize), "build", "--load-restrictor",
                                 "LoadRestrictionsNone", str(d)).with_timeout(60)).stdout
        except CommandError as exc:
            remote = self.remote_bases(b.path)
            lines = (exc.stderr or exc.stdout).strip().replace(str(self.dir) + "/", "")
            last = lines.splitlines()[-1] if lines else str(exc)
            blamed = self._blame(d, set())
            if blamed is not None:
                file, what = blamed
                return Rendered([], ManifestError(what, file=file, obj=b.owner,
                                                  fix="fix the YAML syntax (check indentation "
                                                      "and brackets)"))
            return Rendered([], ManifestError(
                f"kustomize cannot build {b.path}: {last}", file=b.path, obj=b.owner,
                fix="run `kustomize build` on that folder and fix what it says"), bool(remote))
        return Rendered(yamlgo.manifests(yamlgo.parse_all(out)))
