"""drdrill: disaster-recovery drills for GitOps (Flux) Kubernetes clusters."""
