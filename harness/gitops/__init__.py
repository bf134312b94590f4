"""The repository under test, offline: kinds, rendering, model, inputs, bootstrap. Imports
neither the Kubernetes client nor any provider, so `drdrill preflight` loads no cluster code."""
