"""The running process: the NATS worker, policy reload, the --workers supervisor."""
