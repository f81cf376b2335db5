"""Policy as code: tests for a policy, a diff of two, machine-readable checks."""
