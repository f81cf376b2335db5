"""Making working sets: `init`, `dev`, operator/account JWTs, creds files."""
