"""Every error drdrill raises on purpose, as one tree.

Three roots, because users must tell them apart at a glance (Allure: *failed* vs *broken*),
and because an interrupt must never be mistaken for an error a best-effort handler may swallow:

    DrillFailure (AssertionError)        a DR expectation was not met -> "failed"
    ├── NotConverged                     objects not ready at the revision by the deadline
    ├── ObjectFailed                     a Flux object is Stalled, suspended or terminally failed
    ├── RolloutFailed                    a workload in a Flux inventory did not roll out
    ├── RTOExceeded                      time-to-ready is over the --rto target
    └── ExpectationFailed                a scenario's expectation was not met (problems listed)

    HarnessError (Exception)             the harness, input or infrastructure broke -> "broken"
    ├── ConfigError                      a bad option (unknown provider, RTO not a number)
    │   ├── InventoryError               a lab inventory is invalid (file, host and field named)
    │   └── ForeignFileError             a CI file `drdrill init` did not write (or was edited)
    ├── CommandError                     an external program failed (argv, rc, stdout, stderr kept)
    ├── ToolError
    │   ├── ToolNotFoundError            a pinned binary is nowhere and cannot be built
    │   ├── ToolVersionError             a binary answered with another version than pinned
    │   ├── ToolBuildError               building a binary from the Go module proxy failed
    │   └── ToolDownloadError            a release download or OCI pull failed
    │       └── ChecksumMismatch         a downloaded file is not what the checksum file says
    ├── ImageBuildError                  building an image offline failed (debootstrap, import)
    ├── RepoError                        the repo under test is unusable (file + object named)
    │   ├── NotAGitRepoError
    │   ├── ManifestError                invalid YAML, or kustomize cannot render a path
    │   ├── MissingPathError             a Kustomization points at a path that does not exist
    │   ├── DependencyCycleError
    │   └── UnknownDependencyError       dependsOn names an object nothing defines
    ├── InputError                       a manual input (Secret/ConfigMap not in Git) is missing
    ├── ProviderError                    a cluster could not be created, reached or deleted
    │   ├── DisasterIncomplete           the disaster left parts of the cluster running (named)
    │   ├── ProcessExitedError           an embedded control-plane process died (log tail kept)
    │   ├── SSHError                     a lab host cannot be reached or refuses the login
    │   │   └── HostKeyError             a host presented a key the inventory does not trust
    │   └── DockerUnavailable            kind/k3d: no docker CLI or no engine answering
    ├── MirrorError                      the drill's registry mirror or an upstream registry
    │   ├── RegistryUnreachable          no answer (connection refused, DNS, TLS, timeout)
    │   ├── RegistryAuthError            401/403: the registry wants credentials drdrill lacks
    │   ├── RegistryRateLimited          429: the registry's pull limit (Retry-After kept)
    │   ├── ArtifactNotFound             404: no such image, chart, tag or blob
    │   └── PullRefused                  a pod's image is neither in the mirror nor allowed by
    │                                    the egress policy (pod, image and policy named)
    ├── GitServerError
    ├── DrillEnvironmentError            a Flux object failed for a cause in the drill itself: a
    │                                    controller, flag or feature gate not provided, a remote
    │                                    it cannot reach, a kind or webhook it cannot run (named)
    ├── WaitTimeout                      a wait ran out of time (the last observation kept)
    ├── TeardownIncomplete               something the run made could not be released (named,
    │                                    with `drdrill gc --run-id` as the fix)
    ├── OutputLost                       the console closed or a phase listener raised; the
    │                                    drill went on, but its output is incomplete (named)
    └── ReportError                      a report could not be written (e.g. disk full)

    DrillInterrupted (BaseException)     SIGINT, SIGTERM or SIGHUP arrived -> "broken"; no
                                         `except Exception` can swallow it

Every error builds its message from structured fields, so reports can show both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class HarnessError(Exception):
    """The harness or its infrastructure broke; the drill's verdict is *broken*."""

    fix: str | None = None

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.fix = fix
        self.message = message
        super().__init__(f"{message}\n  fix: {fix}" if fix else message)


class ConfigError(HarnessError):
    """An option, environment variable or setting is invalid."""


class CommandError(HarnessError):
    """An external program exited non-zero (or could not be started)."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        fix: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout).strip().splitlines()[-15:]
        detail = "\n    ".join(tail) if tail else "(no output)"
        status = "could not be started" if returncode is None else f"exited with {returncode}"
        super().__init__(f"command {self.argv[0]!r} {status}: {' '.join(self.argv)}\n    {detail}",
                         fix=fix)


class ToolError(HarnessError):
    """A pinned binary is missing, wrong or cannot be built."""

    def __init__(self, message: str, *, tool: str, version: str, fix: str | None = None) -> None:
        self.tool = tool
        self.version = version
        super().__init__(message, fix=fix)


class ToolNotFoundError(ToolError):
    """No usable binary was found and none could be built."""


class ToolVersionError(ToolError):
    """A binary was found but reports another version than the manifest pins."""


class ToolBuildError(ToolError):
    """`go build` of a pinned tool failed."""


class ToolDownloadError(ToolError):
    """Fetching a pinned tool from its release site or OCI registry failed (URL named)."""


class ChecksumMismatch(ToolDownloadError):
    """A downloaded file's sha256 is not the one its release (or image manifest) states."""


class ImageBuildError(HarnessError):
    """An image built here (Debian rootfs, component or kind node image) could not be made."""

    def __init__(self, message: str, *, log: Path | None = None, fix: str | None = None) -> None:
        self.log = log
        super().__init__(f"{message}; full log: {log}" if log else message,
                         fix=fix or (f"read {log}" if log else None))


class RepoError(HarnessError):
    """The repository under test cannot be used; names the file and object at fault."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        obj: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.obj = obj
        where = ", ".join(p for p in (f"file {self.file}" if self.file else "",
                                       f"object {obj}" if obj else "") if p)
        super().__init__(f"{message} ({where})" if where else message, fix=fix)
        self.message = message


class NotAGitRepoError(RepoError):
    """The repo path is not a Git work tree or has no commit."""


class ManifestError(RepoError):
    """A manifest is not valid YAML or kustomize cannot build a path."""


class MissingPathError(RepoError):
    """A Kustomization's spec.path does not exist in the repository."""


class DependencyCycleError(RepoError):
    """Kustomizations depend on each other in a cycle."""

    def __init__(self, cycle: Sequence[str], *, file: Path | str | None = None) -> None:
        self.cycle = list(cycle)
        super().__init__(
            "dependsOn cycle: " + " -> ".join(self.cycle),
            file=file,
            obj=self.cycle[0] if self.cycle else None,
            fix="remove one of the dependsOn entries so the chain has an end",
        )


class UnknownDependencyError(RepoError):
    """A dependsOn entry names an object that the repository does not define."""


class InputError(HarnessError):
    """A manual input the repo needs (a Secret or ConfigMap not in Git) was not supplied."""


class ProviderError(HarnessError):
    """A cluster provider could not create, reach or delete a cluster."""


class ProcessExitedError(ProviderError):
    """A supervised process exited while it should have been running."""

    def __init__(self, name: str, returncode: int | None, log: Path, log_tail: str) -> None:
        self.name = name
        self.returncode = returncode
        self.log = log
        super().__init__(
            f"{name} exited with {returncode} (log: {log})\n    "
            + "\n    ".join(log_tail.strip().splitlines()[-12:])
        )


class MirrorError(HarnessError):
    """The drill's registry mirror, or a registry it copies from, failed."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None,
                 fix: str | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message, fix=fix)


class RegistryUnreachable(MirrorError):
    """A registry did not answer at all (refused, DNS, TLS, timeout)."""


class RegistryAuthError(MirrorError):
    """A registry answered 401/403: the content needs credentials drdrill was not given."""


class RegistryRateLimited(MirrorError):
    """A registry answered 429: its pull limit is reached (`retry_after_s` when it says)."""

    retry_after_s: float | None = None


class ArtifactNotFound(MirrorError):
    """A registry answered 404 for a manifest, tag, blob or chart version."""


class PullRefused(MirrorError):
    """A pod's image could not be pulled under the drill's egress policy (not in the mirror,
    no way out): the drill's environment, not the repo, so the verdict is *broken*."""

    def __init__(self, *, namespace: str, pod: str, owner: str, image: str, reason: str,
                 detail: str, policy: str) -> None:
        self.namespace, self.pod, self.owner = namespace, pod, owner
        self.image, self.reason, self.policy = image, reason, policy
        super().__init__(
            f"pod {namespace}/{pod} ({owner}) cannot pull {image}: {reason} under egress "
            f"policy {policy!r}, which lets the nodes reach only the drill's registry mirror, "
            f"and the mirror does not have it" + (f" ({detail})" if detail else ""),
            fix=f"`drdrill mirror prefetch --repo ...` (online) or `drdrill mirror import "
                f"--image {image}`, then drill again; or --egress open")


class GitServerError(HarnessError):
    """The local Git smart-HTTP server could not serve the repository."""


class DrillEnvironmentError(HarnessError):
    """A Flux object failed, and the cause is the drill's environment, not the repository."""

    def __init__(self, obj: str, reason: str, detail: str, cause: str, *,
                 fix: str | None = None) -> None:
        self.obj = obj
        self.reason = reason
        self.detail = detail
        self.cause = cause
        super().__init__(f"{obj} cannot converge in this drill: {cause} ({reason}: {detail})",
                         fix=fix)


class WaitTimeout(HarnessError):
    """A wait ran out of time; the message carries the last observation."""


class DisasterIncomplete(ProviderError):
    """The disaster's delete returned, but the real world says the cluster is not gone."""

    def __init__(self, cluster: str, leftovers: Sequence[str]) -> None:
        self.cluster = cluster
        self.leftovers = list(leftovers)
        super().__init__(f"the disaster did not take cluster {cluster} down; still there: "
                         + "; ".join(self.leftovers),
                         fix="the provider's delete() does not remove everything it made: "
                             "fix the provider (the drill cannot measure a rebuild otherwise)")


class TeardownIncomplete(HarnessError):
    """Teardown released what it could; these resources of the run are still there."""

    def __init__(self, run_id: str, failures: Sequence[str], leftovers: Sequence[str]) -> None:
        self.run_id = run_id
        self.failures = list(failures)
        self.leftovers = list(leftovers)
        parts = [f"teardown of run {run_id} is incomplete"]
        parts += [f"  release failed: {f}" for f in self.failures]
        parts += [f"  left behind: {item}" for item in self.leftovers]
        super().__init__("\n".join(parts), fix=f"drdrill gc --run-id {run_id}")


class OutputLost(HarnessError):
    """The drill's own output broke: the console closed (a `| head` that exited, a CI log
    stream that went away) or a phase listener raised. Never ends the drill; makes it broken."""

    def __init__(self, what: str, phase: str | None, cause: BaseException) -> None:
        self.what = what
        self.phase = phase
        self.exc = cause
        self.cause = f"{type(cause).__name__}: {cause}"
        where = f" during {phase}" if phase else ""
        super().__init__(f"{what}{where} ({self.cause}); the drill went on and wrote its "
                         "report, but its console output is incomplete",
                         fix="keep the reader of drdrill's output open until it exits (e.g. "
                             "`| tee log | head`), or read the report instead")


class DrillInterrupted(BaseException):
    """A signal (SIGINT, SIGTERM, SIGHUP) ended the drill; the verdict is *broken*.

    A BaseException, like KeyboardInterrupt, so that the best-effort `except Exception` blocks
    (diagnostics, descriptions, probes) cannot swallow it and let the drill carry on. Not a
    KeyboardInterrupt, so that pytest running a drill in-process does not end its session.
    """

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(f"drill interrupted by {signal_name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended (SIGINT
        130, SIGTERM 143, SIGHUP 129)."""
        import signal

        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


class ReportError(HarnessError):
    """A report file could not be written."""

    written: dict[str, Path]
    """Label -> file of the writers that did succeed (when several were tried)."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.written = {}
        super().__init__(message, fix=fix)


class DrillFailure(AssertionError):
    """A disaster-recovery expectation was not met; the drill's verdict is *failed*."""


class NotConverged(DrillFailure):
    """Flux objects did not become ready at the revision before the deadline."""

    def __init__(self, message: str, pending: dict[str, str]) -> None:
        self.pending = dict(pending)
        lines = [f"  {name}: {why}" for name, why in sorted(self.pending.items())]
        super().__init__(message + ("\n" + "\n".join(lines) if lines else ""))


class ObjectFailed(DrillFailure):
    """A Flux object reached a state it will not recover from on its own."""

    def __init__(self, obj: str, reason: str, message: str) -> None:
        self.obj = obj
        self.reason = reason
        self.detail = message
        super().__init__(f"{obj} failed ({reason}): {message}")


class RolloutFailed(DrillFailure):
    """Workloads listed in a Flux inventory are not rolled out."""


class RTOExceeded(DrillFailure):
    """Time-to-ready is over the recovery-time objective."""

    def __init__(self, ttr_s: float, rto_s: float) -> None:
        self.ttr_s = ttr_s
        self.rto_s = rto_s
        super().__init__(f"time-to-ready {ttr_s:.1f}s is over the RTO of {rto_s:.1f}s")


class ForeignFileError(ConfigError):
    """A CI file exists that `drdrill init` did not write, or that was edited since."""


class InventoryError(ConfigError):
    """A lab inventory cannot be used; names the file, the host and the field at fault."""

    def __init__(self, message: str, *, file: Path | str, host: str | None = None,
                 field: str | None = None, fix: str | None = None) -> None:
        self.file = str(file)
        self.host = host
        self.field = field
        where = ", ".join(p for p in (f"host {host}" if host else "",
                                       f"field {field}" if field else "") if p)
        super().__init__(f"inventory {self.file}: {where + ': ' if where else ''}{message}",
                         fix=fix)


class SSHError(ProviderError):
    """A lab host could not be reached, or refused the connection or the login."""

    def __init__(self, message: str, *, host: str, target: str, field: str | None = None,
                 fix: str | None = None) -> None:
        self.host = host
        self.target = target
        self.field = field
        hint = f" (inventory field {field})" if field else ""
        super().__init__(f"host {host} ({target}){hint}: {message}", fix=fix)


class HostKeyError(SSHError):
    """The host's SSH key is not the one the inventory trusts; nothing was sent to it."""

    def __init__(self, message: str, *, host: str, target: str, field: str, presented: str,
                 expected: Sequence[str], fix: str | None = None) -> None:
        self.presented = presented
        self.expected = list(expected)
        super().__init__(message, host=host, target=target, field=field, fix=fix)


class DockerUnavailable(ProviderError):
    """kind/k3d need Docker: the CLI is missing or no engine answers."""


class ExpectationFailed(DrillFailure):
    """A scenario's disaster-recovery expectation was not met; each problem names the object."""

    def __init__(self, scenario: str, problems: Sequence[str]) -> None:
        self.scenario = scenario
        self.problems = list(problems)
        super().__init__(f"{scenario}: expectation not met:\n  " + "\n  ".join(self.problems))
