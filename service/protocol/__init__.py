"""The wire: claims, nkeys and xkeys, JWTs, the request in and the response out."""
